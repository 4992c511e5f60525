import HeraldPostgres

extension HeraldMigrations {
  /// The sync service's schema (SPEC §5): jobs, field mappings, runs, record links, conflicts.
  package static let sync = MigrationSet(
    schema: "sync",
    migrations: [
      Migration(
        version: 1, name: "jobs and field mappings",
        sql: #"""
          CREATE TABLE jobs (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL UNIQUE CHECK (name <> ''),
            base_id text NOT NULL CHECK (base_id <> ''),
            table_id text NOT NULL CHECK (table_id <> ''),
            token_env text NOT NULL CHECK (token_env ~ '^[A-Z_][A-Z0-9_]*$'),
            direction text NOT NULL CHECK (direction IN ('pull', 'push', 'both')),
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (base_id, table_id)
          );
          CREATE TABLE field_mappings (
            job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            position integer NOT NULL CHECK (position >= 0),
            external_field text NOT NULL CHECK (external_field <> ''),
            subscriber_field text NOT NULL CHECK (subscriber_field <> ''),
            PRIMARY KEY (job_id, position),
            UNIQUE (job_id, external_field),
            UNIQUE (job_id, subscriber_field)
          );
          """#),
      Migration(
        version: 2, name: "runs, record links, conflicts",
        sql: #"""
          ALTER TABLE jobs
            ADD COLUMN modified_field text NOT NULL DEFAULT '',
            ADD COLUMN overlap_seconds integer NOT NULL DEFAULT 60 CHECK (overlap_seconds BETWEEN 0 AND 86400),
            ADD COLUMN default_policy text NOT NULL DEFAULT 'remote_wins'
              CHECK (default_policy IN ('local_wins', 'remote_wins', 'last_writer_wins', 'manual')),
            ADD COLUMN schedule_seconds integer NOT NULL DEFAULT 0 CHECK (schedule_seconds >= 0),
            ADD COLUMN reconcile_seconds integer NOT NULL DEFAULT 86400 CHECK (reconcile_seconds > 0),
            ADD COLUMN max_delete_percent integer NOT NULL DEFAULT 10 CHECK (max_delete_percent BETWEEN 0 AND 100),
            -- The last completed pull's high-water mark (remote last-modified time, ISO 8601).
            ADD COLUMN cursor text NOT NULL DEFAULT '',
            ADD COLUMN last_full_sync_at timestamptz;
          ALTER TABLE field_mappings ADD COLUMN conflict_policy text
            CHECK (conflict_policy IN ('local_wins', 'remote_wins', 'last_writer_wins', 'manual'));
          CREATE TABLE runs (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            status text NOT NULL DEFAULT 'running'
              CHECK (status IN ('running', 'succeeded', 'failed', 'aborted', 'interrupted')),
            phase text NOT NULL DEFAULT 'validating',
            dry_run boolean NOT NULL DEFAULT false,
            full_sync boolean NOT NULL DEFAULT false,
            -- A full run's sweep: records seen under it survive reconciliation. A resumed run
            -- carries on the sweep of the run it resumes.
            sweep_id uuid NOT NULL,
            resumed_from uuid REFERENCES runs (id),
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            cursor_before text NOT NULL DEFAULT '',
            -- The remote last-modified time up to which pages are applied (the checkpoint).
            checkpoint text NOT NULL DEFAULT '',
            cursor_after text NOT NULL DEFAULT '',
            counts jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(counts) = 'object'),
            planned jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(planned) = 'array'),
            error text NOT NULL DEFAULT '',
            CONSTRAINT runs_finished_check CHECK ((status = 'running') = (finished_at IS NULL))
          );
          -- One run at a time per table.
          CREATE UNIQUE INDEX runs_one_running_idx ON runs (job_id) WHERE status = 'running';
          CREATE INDEX runs_job_idx ON runs (job_id, started_at DESC);
          CREATE TABLE record_errors (
            run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            position integer NOT NULL,
            record_id text NOT NULL,
            field text NOT NULL DEFAULT '',
            message text NOT NULL,
            PRIMARY KEY (run_id, position)
          );
          -- A remote record and the subscriber it is synced with, and both sides' values (by
          -- subscriber field) as of the last sync: the base of the three-way comparison.
          CREATE TABLE records (
            job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            record_id text NOT NULL,
            subscriber_id uuid NOT NULL,
            remote_modified text NOT NULL DEFAULT '',
            remote_values jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(remote_values) = 'object'),
            local_values jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(local_values) = 'object'),
            last_seen_sweep uuid,
            synced_at timestamptz NOT NULL DEFAULT now(),
            deleted_at timestamptz,
            PRIMARY KEY (job_id, record_id),
            UNIQUE (job_id, subscriber_id)
          );
          CREATE TABLE conflicts (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            record_id text NOT NULL,
            subscriber_id uuid NOT NULL,
            subscriber_field text NOT NULL,
            base_value jsonb,
            local_value jsonb,
            remote_value jsonb,
            policy text NOT NULL CHECK (policy IN ('local_wins', 'remote_wins', 'last_writer_wins', 'manual')),
            resolution text NOT NULL CHECK (resolution IN ('local', 'remote', 'pending')),
            created_at timestamptz NOT NULL DEFAULT now(),
            resolved_at timestamptz,
            CONSTRAINT conflicts_resolved_check CHECK ((resolution = 'pending') = (resolved_at IS NULL))
          );
          -- At most one open conflict per field of a record.
          CREATE UNIQUE INDEX conflicts_pending_idx ON conflicts (job_id, record_id, subscriber_field)
            WHERE resolution = 'pending';
          CREATE INDEX conflicts_job_idx ON conflicts (job_id, created_at DESC);
          """#),
    ])
}
