import HeraldPostgres

extension HeraldMigrations {
  /// The verification service's schema (SPEC §6): reports, issues, repairs, their audit, alerts.
  package static let verification = MigrationSet(
    schema: "verification",
    migrations: [
      Migration(
        version: 1, name: "reports",
        sql: #"""
          CREATE TABLE reports (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            kind text NOT NULL CHECK (kind IN ('full', 'ledger', 'schema', 'data', 'health')),
            started_at timestamptz NOT NULL,
            finished_at timestamptz NOT NULL,
            overall_status text NOT NULL CHECK (overall_status IN ('ok', 'warning', 'critical')),
            body jsonb NOT NULL,
            CHECK (finished_at >= started_at)
          );
          CREATE INDEX reports_started_at_idx ON reports (started_at DESC);
          """#),
      Migration(
        version: 2, name: "issues, repairs, alerts",
        sql: #"""
          ALTER TABLE reports DROP CONSTRAINT reports_kind_check;
          ALTER TABLE reports ADD CONSTRAINT reports_kind_check
            CHECK (kind IN ('full', 'ledger', 'schema', 'data', 'sync', 'health'));
          -- Each issue by fingerprint, across reports.
          CREATE TABLE issues (
            fingerprint text PRIMARY KEY,
            component text NOT NULL,
            check_name text NOT NULL,
            severity text NOT NULL CHECK (severity IN ('CRITICAL', 'HIGH', 'MEDIUM', 'LOW')),
            first_seen_at timestamptz NOT NULL,
            last_seen_at timestamptz NOT NULL,
            occurrences bigint NOT NULL DEFAULT 1 CHECK (occurrences > 0),
            last_report_id uuid REFERENCES reports (id) ON DELETE SET NULL,
            open boolean NOT NULL DEFAULT true,
            resolved_at timestamptz,
            alerted_at timestamptz,
            body jsonb NOT NULL
          );
          CREATE INDEX issues_open_idx ON issues (component) WHERE open;
          CREATE TABLE repairs (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            fingerprint text NOT NULL REFERENCES issues (fingerprint),
            status text NOT NULL CHECK (status IN ('proposed', 'pending_review', 'approved', 'rejected', 'applied', 'rolled_back')),
            needs_review boolean NOT NULL,
            plan jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            requested_by text NOT NULL DEFAULT '',
            reviewed_by text,
            reviewed_at timestamptz,
            review_note text NOT NULL DEFAULT ''
          );
          -- At most one repair in flight per issue.
          CREATE UNIQUE INDEX repairs_open_idx ON repairs (fingerprint) WHERE status IN ('proposed', 'pending_review', 'approved');
          -- Every proposal, review and run: who, when, what, and the rollback id (backup table).
          CREATE TABLE repair_audit (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            repair_id uuid NOT NULL REFERENCES repairs (id),
            action text NOT NULL CHECK (action IN ('proposed', 'approved', 'rejected', 'dry_run', 'applied', 'rolled_back')),
            actor text NOT NULL DEFAULT '',
            at timestamptz NOT NULL DEFAULT now(),
            detail jsonb NOT NULL DEFAULT '{}'
          );
          CREATE INDEX repair_audit_repair_idx ON repair_audit (repair_id, id);
          CREATE TABLE alerts (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            fingerprint text NOT NULL,
            severity text NOT NULL,
            occurrences bigint NOT NULL,
            description text NOT NULL,
            sent_at timestamptz NOT NULL DEFAULT now(),
            delivered boolean NOT NULL,
            error text NOT NULL DEFAULT ''
          );
          CREATE INDEX alerts_sent_idx ON alerts (sent_at DESC);
          """#),
    ])
}
