import HeraldPostgres

/// Each schema's ordered migrations: the one source of truth for that schema (SPEC §1). A service
/// applies its own at start-up; verification applies them into scratch schemas to detect drift.
/// Never edit an applied migration: add a new one (a changed checksum stops the service).
package enum HeraldMigrations {
  package static let all: [MigrationSet] = [campaign, delivery, ratelimit, sync, verification, gateway]

  package static func set(forSchema schema: String) -> MigrationSet? {
    all.first { $0.schema == schema }
  }

  /// A UUIDv7 (RFC 9562: 48 bits of Unix milliseconds, then random bits) for PostgreSQL 15, which
  /// has no uuidv7() (18 has). Part of applied migrations (campaign 7, delivery 4): never edit it.
  static let uuidV7Function = """
    CREATE FUNCTION uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
      SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
        52, 1), 53, 1), 'hex')::uuid
    $$;
    """

  package static let campaign = MigrationSet(
    schema: "campaign",
    migrations: [
      Migration(
        version: 1, name: "subscribers",
        sql: #"""
          CREATE TABLE subscribers (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            email text UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
            phone text UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
            first_name text NOT NULL DEFAULT '',
            last_name text NOT NULL DEFAULT '',
            attributes jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
            email_subscribed boolean NOT NULL DEFAULT false,
            email_consent_source text,
            email_consented_at timestamptz,
            email_unsubscribed_at timestamptz,
            sms_subscribed boolean NOT NULL DEFAULT false,
            sms_consent_source text,
            sms_consented_at timestamptz,
            sms_unsubscribed_at timestamptz,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked', 'erased')),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT subscribers_contact_check CHECK (email IS NOT NULL OR phone IS NOT NULL OR status = 'erased'),
            CONSTRAINT subscribers_email_consent_check
              CHECK (NOT email_subscribed OR (email IS NOT NULL AND email_consent_source IS NOT NULL AND email_consented_at IS NOT NULL)),
            CONSTRAINT subscribers_sms_consent_check
              CHECK (NOT sms_subscribed OR (phone IS NOT NULL AND sms_consent_source IS NOT NULL AND sms_consented_at IS NOT NULL))
          );
          CREATE INDEX subscribers_created_at_idx ON subscribers (created_at, id);
          """#),
      Migration(
        version: 2, name: "consent history",
        sql: #"""
          CREATE TABLE consent_events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subscriber_id uuid NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            channel text NOT NULL CHECK (channel IN ('email', 'sms')),
            subscribed boolean NOT NULL,
            source text NOT NULL CHECK (source <> ''),
            occurred_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE INDEX consent_events_subscriber_idx ON consent_events (subscriber_id, id);
          INSERT INTO consent_events (subscriber_id, channel, subscribed, source, occurred_at)
            SELECT id, 'email', true, email_consent_source, email_consented_at FROM subscribers WHERE email_subscribed
            UNION ALL
            SELECT id, 'sms', true, sms_consent_source, sms_consented_at FROM subscribers WHERE sms_subscribed
            ORDER BY 5;
          """#),
      Migration(
        version: 3, name: "lists, segments, templates, campaigns and the outbox",
        sql: #"""
          CREATE TABLE lists (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL UNIQUE CHECK (name <> ''),
            description text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE TABLE list_members (
            list_id uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
            subscriber_id uuid NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            added_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (list_id, subscriber_id)
          );
          CREATE INDEX list_members_subscriber_idx ON list_members (subscriber_id);
          CREATE TABLE segments (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL UNIQUE CHECK (name <> ''),
            match text NOT NULL CHECK (match IN ('all', 'any')),
            conditions jsonb NOT NULL CHECK (jsonb_typeof(conditions) = 'array'),
            created_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE TABLE templates (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL UNIQUE CHECK (name <> ''),
            channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'whatsapp')),
            format text NOT NULL CHECK (format IN ('html', 'text')),
            subject text NOT NULL DEFAULT '',
            body text NOT NULL CHECK (body <> ''),
            variables jsonb NOT NULL CHECK (jsonb_typeof(variables) = 'array'),
            created_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE TABLE campaigns (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL CHECK (name <> ''),
            channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'whatsapp')),
            list_id uuid REFERENCES lists (id),
            segment_id uuid REFERENCES segments (id),
            budget_cents bigint CHECK (budget_cents >= 0),
            status text NOT NULL DEFAULT 'draft'
              CHECK (status IN ('draft', 'scheduled', 'sending', 'sent', 'paused', 'cancelled', 'failed')),
            status_reason text NOT NULL DEFAULT '',
            send_at timestamptz,
            audience_count bigint NOT NULL DEFAULT 0,
            skipped_no_consent bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz,
            CONSTRAINT campaigns_audience_check CHECK ((list_id IS NULL) <> (segment_id IS NULL)),
            CONSTRAINT campaigns_schedule_check CHECK (status <> 'scheduled' OR send_at IS NOT NULL)
          );
          CREATE INDEX campaigns_due_idx ON campaigns (send_at) WHERE status = 'scheduled';
          CREATE INDEX campaigns_sending_idx ON campaigns (id) WHERE status = 'sending';
          CREATE TABLE campaign_variants (
            campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
            position integer NOT NULL CHECK (position >= 0),
            name text NOT NULL CHECK (name <> ''),
            template_id uuid NOT NULL REFERENCES templates (id),
            weight integer NOT NULL CHECK (weight BETWEEN 1 AND 10000),
            recipients bigint NOT NULL DEFAULT 0 CHECK (recipients >= 0),
            PRIMARY KEY (campaign_id, position),
            UNIQUE (campaign_id, name)
          );
          CREATE TABLE outbox (
            campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
            subscriber_id uuid NOT NULL REFERENCES subscribers (id),
            variant text NOT NULL,
            status text NOT NULL DEFAULT 'pending'
              CHECK (status IN ('pending', 'relayed', 'skipped', 'failed', 'cancelled')),
            message_id uuid,
            error text,
            relayed_at timestamptz,
            PRIMARY KEY (campaign_id, subscriber_id),
            CONSTRAINT outbox_relayed_check CHECK (status <> 'relayed' OR message_id IS NOT NULL)
          );
          CREATE INDEX outbox_pending_idx ON outbox (campaign_id, subscriber_id) WHERE status = 'pending';
          """#),
      Migration(
        version: 4, name: "analytics",
        sql: #"""
          CREATE UNIQUE INDEX outbox_message_idx ON outbox (message_id) WHERE message_id IS NOT NULL;
          CREATE TABLE delivery_feed (
            id integer PRIMARY KEY CHECK (id = 1),
            cursor text NOT NULL DEFAULT '',
            events_applied bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
          );
          INSERT INTO delivery_feed (id) VALUES (1);
          CREATE TABLE campaign_daily_stats (
            campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
            variant text NOT NULL,
            day date NOT NULL,
            status text NOT NULL,
            events bigint NOT NULL DEFAULT 0 CHECK (events >= 0),
            cost_cents bigint NOT NULL DEFAULT 0 CHECK (cost_cents >= 0),
            PRIMARY KEY (campaign_id, variant, day, status)
          );
          CREATE TABLE subscriber_engagement (
            subscriber_id uuid PRIMARY KEY REFERENCES subscribers (id) ON DELETE CASCADE,
            delivered bigint NOT NULL DEFAULT 0,
            opened bigint NOT NULL DEFAULT 0,
            clicked bigint NOT NULL DEFAULT 0,
            bounced bigint NOT NULL DEFAULT 0,
            complained bigint NOT NULL DEFAULT 0,
            last_event_at timestamptz,
            last_engaged_at timestamptz,
            score integer NOT NULL DEFAULT 0 CHECK (score BETWEEN 0 AND 100)
          );
          CREATE INDEX subscriber_engagement_score_idx ON subscriber_engagement (score DESC, subscriber_id);
          """#),
      Migration(
        version: 5, name: "archived subscribers",
        sql: #"""
          -- Archived: kept with its history but sent nothing (e.g. its CRM record was deleted).
          ALTER TABLE subscribers DROP CONSTRAINT subscribers_status_check;
          ALTER TABLE subscribers ADD CONSTRAINT subscribers_status_check
            CHECK (status IN ('active', 'blocked', 'erased', 'archived'));
          """#),
      Migration(
        version: 6, name: "outbox chunks",
        sql: #"""
          -- The relay claims, sends and settles a chunk of consecutive outbox entries (by
          -- subscriber id) as one unit: one row lock and one update per chunk instead of per
          -- recipient. A chunk holds the entries from first_subscriber up to (not including)
          -- next_subscriber (the next chunk's first; NULL for the last chunk).
          CREATE TABLE outbox_chunks (
            campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
            chunk integer NOT NULL CHECK (chunk >= 0),
            first_subscriber uuid NOT NULL,
            next_subscriber uuid,
            -- Entries in the chunk when it was made, and how many of them have since been settled
            -- on their own (skipped or failed, with the reason on the outbox entry).
            entries integer NOT NULL CHECK (entries > 0),
            exceptions integer NOT NULL DEFAULT 0,
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'relayed', 'cancelled')),
            relayed_at timestamptz,
            PRIMARY KEY (campaign_id, chunk),
            CONSTRAINT outbox_chunks_range_check CHECK (next_subscriber > first_subscriber),
            CONSTRAINT outbox_chunks_exceptions_check CHECK (exceptions BETWEEN 0 AND entries)
          );
          CREATE INDEX outbox_chunks_pending_idx ON outbox_chunks (campaign_id, chunk) WHERE status = 'pending';
          -- An entry's own status is set only when it is settled apart from its chunk (skipped,
          -- failed); NULL means "as its chunk". Entries relayed one by one before this migration
          -- keep theirs.
          ALTER TABLE outbox ALTER COLUMN status DROP DEFAULT, ALTER COLUMN status DROP NOT NULL;
          WITH numbered AS (
            SELECT campaign_id, subscriber_id,
              row_number() OVER (PARTITION BY campaign_id ORDER BY subscriber_id) - 1 AS n,
              count(*) OVER (PARTITION BY campaign_id) AS total
            FROM outbox WHERE status = 'pending'
          )
          INSERT INTO outbox_chunks (campaign_id, chunk, first_subscriber, next_subscriber, entries)
          SELECT campaign_id, n / 1000, subscriber_id, lead(subscriber_id) OVER (PARTITION BY campaign_id ORDER BY n),
            least(1000, total - n)
          FROM numbered WHERE n % 1000 = 0;
          UPDATE outbox SET status = NULL WHERE status = 'pending';
          ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
          ALTER TABLE outbox ADD CONSTRAINT outbox_status_check CHECK (status IN ('relayed', 'skipped', 'failed', 'cancelled'));
          DROP INDEX outbox_pending_idx;
          CREATE INDEX outbox_settled_idx ON outbox (campaign_id, status) WHERE status IS NOT NULL;
          -- Written only by the expansion, which selects the subscribers in the same statement while
          -- it holds the campaign's row lock; campaigns are never deleted, subscribers are erased
          -- (kept), and the only delete (verification's duplicate repair) spares subscribers the
          -- outbox names. A foreign key check per entry more than doubled the time to expand a
          -- large audience. Verification reports entries whose campaign or subscriber is missing.
          ALTER TABLE outbox DROP CONSTRAINT outbox_campaign_id_fkey, DROP CONSTRAINT outbox_subscriber_id_fkey;
          """#),
      Migration(
        version: 7, name: "time-ordered subscriber ids",
        sql: #"""
          -- Subscribers made together (an import) get neighbouring ids, so reading an outbox chunk
          -- (a range of subscriber ids) reads neighbouring rows instead of one page per recipient.
          -- Existing ids stay as they are.
          \#(uuidV7Function)
          ALTER TABLE subscribers ALTER COLUMN id SET DEFAULT uuid_v7();
          """#),
    ])

  package static let delivery = MigrationSet(
    schema: "delivery",
    migrations: [
      Migration(
        version: 1, name: "message queue",
        sql: #"""
          CREATE TABLE messages (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
            channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'whatsapp')),
            recipient text NOT NULL CHECK (recipient <> ''),
            subject text NOT NULL DEFAULT '',
            body text NOT NULL,
            campaign_id uuid,
            subscriber_id uuid,
            status text NOT NULL DEFAULT 'queued' CHECK (status IN (
              'queued', 'sending', 'sent', 'delivered', 'bounced', 'failed', 'suppressed', 'expired', 'dead', 'unknown')),
            attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            not_before timestamptz NOT NULL DEFAULT now(),
            lease_expires_at timestamptz,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE INDEX messages_due_idx ON messages (not_before) WHERE status = 'queued';
          CREATE INDEX messages_campaign_idx ON messages (campaign_id) WHERE campaign_id IS NOT NULL;
          CREATE TABLE delivery_events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            status text NOT NULL,
            detail text,
            occurred_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE INDEX delivery_events_message_idx ON delivery_events (message_id);
          """#),
      Migration(
        version: 2, name: "event feed for analytics",
        sql: #"""
          ALTER TABLE delivery_events
            ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            ADD COLUMN cost_cents bigint NOT NULL DEFAULT 0 CHECK (cost_cents >= 0);
          CREATE INDEX delivery_events_feed_idx ON delivery_events (txid, id);
          """#),
      Migration(
        version: 3, name: "workers, providers, suppressions, spend caps, warm-up",
        sql: #"""
          ALTER TABLE messages
            ADD COLUMN provider text,
            ADD COLUMN provider_message_id text,
            ADD COLUMN cost_cents bigint NOT NULL DEFAULT 0 CHECK (cost_cents >= 0),
            ADD COLUMN lease_token uuid,
            ADD COLUMN reserved_cents bigint NOT NULL DEFAULT 0 CHECK (reserved_cents >= 0),
            ADD COLUMN ambiguous boolean NOT NULL DEFAULT false;
          CREATE INDEX messages_lease_idx ON messages (lease_expires_at) WHERE status = 'sending';
          -- What needs an operator (dead letters, unknown outcomes); other statuses are listed
          -- through the primary key, so a send does not pay for one more index entry.
          CREATE INDEX messages_attention_idx ON messages (status, id) WHERE status IN ('dead', 'unknown');
          CREATE INDEX messages_provider_message_idx ON messages (provider, provider_message_id)
            WHERE provider_message_id IS NOT NULL;
          -- A provider as its protobuf JSON (herald.delivery.v1.Provider, status left out).
          CREATE TABLE providers (
            name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
            channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'whatsapp')),
            priority integer NOT NULL,
            definition jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE TABLE suppressions (
            address text PRIMARY KEY CHECK (address <> '' AND address = lower(address)),
            reason text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'manual')),
            detail text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now()
          );
          -- A send reserves its cost (on the message and here) before it goes out; its outcome
          -- turns the reservation into spend or gives it back. The check constraint is the last
          -- line: the database refuses any reservation past the budget.
          CREATE TABLE spend_caps (
            campaign_id uuid PRIMARY KEY,
            budget_cents bigint NOT NULL CHECK (budget_cents >= 0),
            spent_cents bigint NOT NULL DEFAULT 0 CHECK (spent_cents >= 0),
            reserved_cents bigint NOT NULL DEFAULT 0 CHECK (reserved_cents >= 0),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT spend_within_budget CHECK (spent_cents + reserved_cents <= budget_cents)
          );
          CREATE TABLE warmup_schedules (
            sending_identity text PRIMARY KEY CHECK (sending_identity <> ''),
            daily_caps bigint[] NOT NULL CHECK (cardinality(daily_caps) > 0),
            started_on date,
            updated_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE TABLE identity_daily_sends (
            sending_identity text NOT NULL,
            day date NOT NULL,
            sent bigint NOT NULL DEFAULT 0 CHECK (sent >= 0),
            PRIMARY KEY (sending_identity, day)
          );
          """#),
      Migration(
        version: 4, name: "time-ordered message ids, events without a foreign key",
        sql: #"""
          -- New messages land at the right edge of the primary key and of
          -- delivery_events_message_idx instead of on a random page of each, so a large queue's
          -- indexes stay in memory.
          \#(uuidV7Function)
          ALTER TABLE messages ALTER COLUMN id SET DEFAULT uuid_v7();
          -- Events are written only by the delivery service, with or after their message, and a
          -- message is deleted only by a reviewed repair that deletes its events first. The
          -- per-row check (a row lock on the message) cost as much as the rest of the event's
          -- insert; verification's data.orphan_delivery_event finds events without a message.
          ALTER TABLE delivery_events DROP CONSTRAINT delivery_events_message_id_fkey;
          """#),
    ])

  package static let ratelimit = MigrationSet(
    schema: "ratelimit",
    migrations: [
      Migration(
        version: 1, name: "limits",
        sql: #"""
          CREATE TABLE limits (
            key text PRIMARY KEY CHECK (key <> ''),
            requests_per_unit bigint NOT NULL CHECK (requests_per_unit > 0),
            unit text NOT NULL CHECK (unit IN ('second', 'minute', 'hour', 'day')),
            algorithm text NOT NULL CHECK (algorithm IN ('token_bucket', 'sliding_window')),
            burst bigint NOT NULL CHECK (burst > 0),
            updated_at timestamptz NOT NULL DEFAULT now()
          );
          """#),
      Migration(
        version: 2, name: "decisions, counters and members",
        sql: #"""
          ALTER TABLE limits DROP CONSTRAINT limits_algorithm_check;
          ALTER TABLE limits ADD CONSTRAINT limits_algorithm_check
            CHECK (algorithm IN ('token_bucket', 'sliding_window', 'fixed_window'));
          ALTER TABLE limits DROP CONSTRAINT limits_burst_check;
          ALTER TABLE limits ADD CONSTRAINT limits_burst_check
            CHECK (burst > 0 OR (burst = 0 AND algorithm <> 'token_bucket'));
          ALTER TABLE limits DROP CONSTRAINT limits_requests_per_unit_check;
          ALTER TABLE limits ADD COLUMN warmup_start timestamptz;
          ALTER TABLE limits ADD COLUMN warmup_volumes bigint[];
          ALTER TABLE limits ADD CONSTRAINT limits_requests_per_unit_check
            CHECK (requests_per_unit > 0 OR (requests_per_unit = 0 AND warmup_start IS NOT NULL));
          ALTER TABLE limits ADD CONSTRAINT limits_warmup_check CHECK (
            (warmup_start IS NULL) = (warmup_volumes IS NULL)
            AND (warmup_start IS NULL OR (unit = 'day' AND algorithm = 'fixed_window' AND cardinality(warmup_volumes) BETWEEN 1 AND 366)));
          -- Hour and day counters, saved by their owner a few times a second and read by the
          -- next owner (after a restart or when the key moves to another replica).
          CREATE TABLE counters (
            key text PRIMARY KEY,
            limit_key text NOT NULL,
            tokens double precision NOT NULL,
            updated double precision NOT NULL,
            window_start double precision NOT NULL,
            count bigint NOT NULL CHECK (count >= 0),
            previous_count bigint NOT NULL CHECK (previous_count >= 0),
            saved_at timestamptz NOT NULL
          );
          CREATE INDEX counters_limit_key_idx ON counters (limit_key);
          -- Live replicas: each heartbeats; keys are spread over those seen recently.
          CREATE TABLE members (
            id text PRIMARY KEY,
            address text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now()
          );
          """#),
    ])

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

  package static let gateway = MigrationSet(
    schema: "gateway",
    migrations: [
      Migration(
        version: 1, name: "api keys",
        sql: #"""
          CREATE TABLE api_keys (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL CHECK (name <> ''),
            prefix text NOT NULL,
            key_hash text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
            scopes text[] NOT NULL CHECK (cardinality(scopes) > 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at timestamptz
          );
          """#),
      Migration(
        version: 2, name: "idempotency keys",
        sql: #"""
          CREATE TABLE idempotency_keys (
            api_key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
            key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
            method text NOT NULL,
            path text NOT NULL,
            request_hash text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
            status integer CHECK (status BETWEEN 100 AND 599),
            content_type text,
            body bytea,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (api_key_id, key)
          );
          CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
          """#),
    ])
}
