import HeraldPostgres

extension HeraldMigrations {
  /// The campaign service's schema (SPEC §2): subscribers and consent, lists, segments, templates,
  /// campaigns and their variants, the outbox, analytics.
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
      Migration(
        version: 8, name: "the campaign behind a consent change",
        sql: #"""
          -- An unsubscribe through a campaign e-mail's link names the campaign (metadata only).
          ALTER TABLE consent_events ADD COLUMN campaign_id uuid;
          """#),
      Migration(
        version: 9, name: "engagement tracking per campaign",
        sql: #"""
          -- Whether a campaign's e-mail carries the open pixel and click redirects (SPEC §10).
          -- Metadata-only additions (constant defaults).
          ALTER TABLE campaigns ADD COLUMN track_opens boolean NOT NULL DEFAULT false,
            ADD COLUMN track_clicks boolean NOT NULL DEFAULT false;
          """#),
      Migration(
        version: 10, name: "pauses and cancels that reach delivery",
        sql: #"""
          -- Whether delivery has still to be told of the campaign's pause, resume or cancel
          -- (CampaignHoldSync), so that the messages already handed over stop too. Metadata-only
          -- addition; the index holds only the campaigns waiting to be told.
          ALTER TABLE campaigns ADD COLUMN delivery_pending boolean NOT NULL DEFAULT false;
          CREATE INDEX campaigns_delivery_pending_idx ON campaigns (updated_at) WHERE delivery_pending;
          """#),
      Migration(
        version: 11, name: "inbound messages: replies and SMS keywords",
        sql: #"""
          -- Where the inbound feed (delivery's ListInboundFeed) was read to: SMS keywords change
          -- consent, and senders are linked to their subscribers, exactly once per message.
          CREATE TABLE inbound_feed (
            id integer PRIMARY KEY CHECK (id = 1),
            cursor text NOT NULL DEFAULT '',
            messages_applied bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
          );
          INSERT INTO inbound_feed (id) VALUES (1);
          -- Replies are engagement (a metadata-only addition).
          ALTER TABLE subscriber_engagement ADD COLUMN replied bigint NOT NULL DEFAULT 0;
          """#),
      Migration(
        version: 12, name: "SMS quiet hours per campaign",
        sql: #"""
          -- An SMS campaign's delivery window when stricter than the installation's, as
          -- 'HH:MM-HH:MM' of the recipient's local time (SPEC §11); NULL: the installation's.
          ALTER TABLE campaigns ADD COLUMN sms_quiet_hours text
            CHECK (sms_quiet_hours ~ '^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$');
          """#),
      Migration(
        version: 13, name: "auto-responses",
        sql: #"""
          -- Rules that answer inbound messages (SPEC §11), and every answer given or skipped: one
          -- row per inbound message at most (inbound_id is unique), so a message read twice from
          -- the feed is never answered twice.
          CREATE TABLE auto_response_rules (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL UNIQUE CHECK (name <> ''),
            channel text NOT NULL CHECK (channel IN ('sms', 'email')),
            trigger text NOT NULL CHECK (trigger IN ('keyword', 'regex', 'any')),
            pattern text NOT NULL DEFAULT '',
            campaign_id uuid REFERENCES campaigns (id) ON DELETE CASCADE,
            subject text NOT NULL DEFAULT '',
            body text NOT NULL CHECK (body <> ''),
            variables jsonb NOT NULL DEFAULT '[]',
            delay_seconds integer NOT NULL DEFAULT 0 CHECK (delay_seconds BETWEEN 0 AND 604800),
            cooldown_seconds integer NOT NULL CHECK (cooldown_seconds > 0),
            daily_cap integer NOT NULL CHECK (daily_cap > 0),
            priority integer NOT NULL DEFAULT 0,
            enabled boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE TABLE auto_responses (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            rule_id uuid NOT NULL REFERENCES auto_response_rules (id) ON DELETE CASCADE,
            inbound_id uuid NOT NULL UNIQUE,
            subscriber_id uuid,
            recipient text NOT NULL,
            status text NOT NULL CHECK (status IN ('queued', 'skipped')),
            detail text NOT NULL DEFAULT '',
            message_id uuid,
            created_at timestamptz NOT NULL DEFAULT now()
          );
          -- The cooldown (this rule's answers to this sender) and the daily cap (this rule's today).
          CREATE INDEX auto_responses_rule_idx ON auto_responses (rule_id, created_at) WHERE status = 'queued';
          CREATE INDEX auto_responses_recipient_idx ON auto_responses (rule_id, recipient, created_at) WHERE status = 'queued';
          """#),
      Migration(
        version: 14, name: "campaign results: touches, conversions, snapshots, A/B tests",
        sql: #"""
          -- SPEC §13. Each recipient's last delivery (send), hard bounce, open and click (a
          -- human's) per campaign, kept by the delivery feed under its cursor lock: conversions are
          -- attributed to them (a delivery a bounce followed is none), and a recipient's first open
          -- and click are counted once (unique_opened, unique_clicked).
          CREATE TABLE campaign_touches (
            subscriber_id uuid NOT NULL,
            campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
            variant text NOT NULL,
            delivered_at timestamptz,
            bounced_at timestamptz,
            opened_at timestamptz,
            clicked_at timestamptz,
            PRIMARY KEY (subscriber_id, campaign_id)
          );
          -- Conversions (status 'converted') carry their value in the daily rollup. Metadata-only.
          ALTER TABLE campaign_daily_stats ADD COLUMN value_cents bigint NOT NULL DEFAULT 0;
          -- A conversion, in minor units of the installation's currency, with the rule that
          -- attributed it ('given': the caller named the campaign; 'none': no touch in the window).
          CREATE TABLE conversions (
            id uuid PRIMARY KEY DEFAULT uuid_v7(),
            idempotency_key text NOT NULL UNIQUE CHECK (idempotency_key <> ''),
            subscriber_id uuid NOT NULL REFERENCES subscribers (id),
            campaign_id uuid REFERENCES campaigns (id),
            variant text,
            attribution text NOT NULL CHECK (attribution IN ('given', 'last_click', 'last_open', 'last_delivery', 'none')),
            touched_at timestamptz,
            value_cents bigint NOT NULL CHECK (value_cents >= 0),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT conversions_campaign_check CHECK ((campaign_id IS NULL) = (attribution = 'none'))
          );
          CREATE INDEX conversions_campaign_idx ON conversions (campaign_id, variant, subscriber_id) WHERE campaign_id IS NOT NULL;
          CREATE INDEX conversions_subscriber_idx ON conversions (subscriber_id, occurred_at);
          -- A campaign's counters over time, per variant ('' is the whole campaign), taken by one
          -- statement per tick: every 5 minutes while it sends ('5m'), hourly for 30 days after it
          -- finished ('1h'), then daily for a year ('1d'). Older 5-minute points are thinned to
          -- hourly after 30 days, hourly ones to daily after a year.
          CREATE TABLE metric_snapshots (
            campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
            variant text NOT NULL,
            taken_at timestamptz NOT NULL,
            resolution text NOT NULL CHECK (resolution IN ('5m', '1h', '1d')),
            audience bigint NOT NULL,
            recipients bigint NOT NULL,
            queued bigint NOT NULL, sent bigint NOT NULL, delivered bigint NOT NULL, bounced bigint NOT NULL,
            soft_bounced bigint NOT NULL, failed bigint NOT NULL, opened bigint NOT NULL, unique_opened bigint NOT NULL,
            clicked bigint NOT NULL, unique_clicked bigint NOT NULL, replied bigint NOT NULL, unsubscribed bigint NOT NULL,
            complained bigint NOT NULL, cost_cents bigint NOT NULL, conversions bigint NOT NULL, revenue_cents bigint NOT NULL,
            PRIMARY KEY (campaign_id, variant, taken_at)
          );
          CREATE INDEX metric_snapshots_thin_idx ON metric_snapshots (resolution, taken_at);
          ALTER TABLE campaigns ADD COLUMN last_snapshot_at timestamptz;
          -- A/B tests that decide: a share of the audience (test_basis_points of 10,000) is split
          -- over the variants (wave 0); at decide_at the winner is picked (or the fallback), stored
          -- with its numbers, and the rest of the audience is written to the outbox as wave 1.
          CREATE TABLE ab_tests (
            campaign_id uuid PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
            test_basis_points integer NOT NULL CHECK (test_basis_points BETWEEN 100 AND 9000),
            wait_seconds integer NOT NULL CHECK (wait_seconds BETWEEN 60 AND 2592000),
            metric text NOT NULL CHECK (metric IN ('open', 'click', 'conversion', 'revenue_per_recipient')),
            confidence_basis_points integer NOT NULL CHECK (confidence_basis_points BETWEEN 8000 AND 9990),
            fallback text NOT NULL CHECK (fallback IN ('control', 'split')),
            decide_at timestamptz,
            decided_at timestamptz,
            outcome text CHECK (outcome IN ('winner', 'control', 'split', 'operator')),
            winner text,
            decision jsonb,
            rest_recipients bigint,
            CONSTRAINT ab_tests_decided_check CHECK ((decided_at IS NULL) = (outcome IS NULL))
          );
          CREATE INDEX ab_tests_due_idx ON ab_tests (decide_at) WHERE decided_at IS NULL;
          -- Which send an outbox entry and a chunk belong to: 0 the campaign's (or its A/B test's),
          -- 1 the rest of an A/B test's audience. Metadata-only additions.
          ALTER TABLE outbox ADD COLUMN wave smallint NOT NULL DEFAULT 0;
          ALTER TABLE outbox_chunks ADD COLUMN wave smallint NOT NULL DEFAULT 0;
          """#),
      Migration(
        version: 15, name: "journeys: versions, enrolments, steps done, events",
        sql: #"""
          -- SPEC §12. A journey, and its published versions: immutable definitions (trigger, steps,
          -- entry rule, exits) as JSON. `listens` holds every event name a version uses (its
          -- trigger, its wait_for_event steps, its goal), so Herald's own events are recorded only
          -- when some journey listens.
          CREATE TABLE journeys (
            id uuid PRIMARY KEY DEFAULT uuid_v7(),
            name text NOT NULL UNIQUE CHECK (name <> ''),
            status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'paused', 'archived')),
            definition jsonb NOT NULL,
            version integer NOT NULL DEFAULT 0,
            -- When it last became active (published or resumed): events received before do not enrol.
            active_since timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT journeys_version_check CHECK ((version = 0) = (status = 'draft') OR status = 'archived')
          );
          CREATE TABLE journey_versions (
            journey_id uuid NOT NULL REFERENCES journeys (id) ON DELETE CASCADE,
            version integer NOT NULL CHECK (version > 0),
            definition jsonb NOT NULL,
            trigger_event text NOT NULL,
            listens text[] NOT NULL,
            published_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (journey_id, version)
          );
          -- Events: the custom ones (POST /v1/events, idempotency_key the caller's) and Herald's own
          -- (herald.list_joined, herald.inbound, herald.segment_entered, herald.opened,
          -- herald.clicked, herald.replied, herald.converted). The trigger processor takes the
          -- unprocessed ones in id order, under one lock, and marks them processed in the same
          -- transaction as the enrolments, wake-ups and exits they cause.
          CREATE TABLE events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            idempotency_key text UNIQUE CHECK (idempotency_key <> ''),
            name text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
            subscriber_id uuid NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            properties jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(properties) = 'object'),
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            processed_at timestamptz
          );
          CREATE INDEX events_pending_idx ON events (id) WHERE processed_at IS NULL;
          CREATE INDEX events_subscriber_idx ON events (subscriber_id, id);
          -- The trigger processor's lock: one transaction at a time takes events in order.
          CREATE TABLE journey_trigger_feed (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            processed bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
          );
          INSERT INTO journey_trigger_feed DEFAULT VALUES;
          -- One person's way through one version. `step` is the step to perform next (or where
          -- they exited); `step_started_at` is null until the scheduler has begun it (a wait's
          -- end, or a wait_for_event's timeout, is then `due_at`). Replicas claim due enrolments
          -- with FOR UPDATE SKIP LOCKED.
          CREATE TABLE journey_enrolments (
            id uuid PRIMARY KEY DEFAULT uuid_v7(),
            journey_id uuid NOT NULL,
            version integer NOT NULL,
            subscriber_id uuid NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            event_id bigint,
            status text NOT NULL CHECK (status IN ('active', 'waiting', 'completed', 'exited')),
            step text,
            step_started_at timestamptz,
            due_at timestamptz,
            waiting_for text,
            context jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(context) = 'object'),
            exit_reason text CHECK (exit_reason IN ('goal', 'unsubscribed', 'exit_step', 'archived', 'erased')),
            entered_at timestamptz NOT NULL,
            finished_at timestamptz,
            FOREIGN KEY (journey_id, version) REFERENCES journey_versions (journey_id, version) ON DELETE CASCADE,
            CONSTRAINT journey_enrolments_due_check CHECK ((status IN ('active', 'waiting')) = (due_at IS NOT NULL AND step IS NOT NULL)),
            CONSTRAINT journey_enrolments_waiting_check CHECK ((status = 'waiting') = (waiting_for IS NOT NULL)),
            CONSTRAINT journey_enrolments_finished_check CHECK ((status IN ('completed', 'exited')) = (finished_at IS NOT NULL)),
            CONSTRAINT journey_enrolments_exit_check CHECK ((status = 'exited') = (exit_reason IS NOT NULL))
          );
          -- An event enrols a person in a journey once, however often its batch is retried.
          CREATE UNIQUE INDEX journey_enrolments_event_idx ON journey_enrolments (journey_id, event_id);
          -- Claimed per active journey, so a paused journey's backlog is never scanned.
          CREATE INDEX journey_enrolments_due_idx ON journey_enrolments (journey_id, due_at) WHERE status IN ('active', 'waiting');
          CREATE INDEX journey_enrolments_person_idx ON journey_enrolments (subscriber_id, journey_id, entered_at);
          CREATE INDEX journey_enrolments_list_idx ON journey_enrolments (journey_id, id);
          -- Each step an enrolment performed, once: the primary key makes a step done twice
          -- impossible. A send step is written 'pending' in the scheduler's transaction (the
          -- journeys' outbox) and relayed to delivery; then its outcome, its message, and the
          -- message's engagement from the delivery feed.
          CREATE TABLE journey_steps_done (
            enrolment_id uuid NOT NULL REFERENCES journey_enrolments (id) ON DELETE CASCADE,
            step text NOT NULL,
            version integer NOT NULL,
            kind text NOT NULL CHECK (kind IN ('send', 'wait', 'wait_for_event', 'branch', 'update', 'exit')),
            outcome text NOT NULL,
            detail text NOT NULL DEFAULT '',
            message_id uuid,
            done_at timestamptz NOT NULL,
            delivered_at timestamptz,
            bounced_at timestamptz,
            opened_at timestamptz,
            clicked_at timestamptz,
            PRIMARY KEY (enrolment_id, step)
          );
          CREATE UNIQUE INDEX journey_steps_done_message_idx ON journey_steps_done (message_id) WHERE message_id IS NOT NULL;
          CREATE INDEX journey_steps_done_pending_idx ON journey_steps_done (done_at) WHERE outcome = 'pending';
          -- Segment-entered triggers: the members each watched segment had at its last evaluation.
          CREATE TABLE journey_segment_watches (
            segment_id uuid PRIMARY KEY REFERENCES segments (id) ON DELETE CASCADE,
            evaluated_at timestamptz NOT NULL
          );
          CREATE TABLE journey_segment_members (
            segment_id uuid NOT NULL REFERENCES journey_segment_watches (segment_id) ON DELETE CASCADE,
            subscriber_id uuid NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            PRIMARY KEY (segment_id, subscriber_id)
          );
          """#),
      Migration(
        version: 16, name: "WhatsApp numbers with their consent, push tokens, push and WhatsApp templates",
        sql: #"""
          -- A WhatsApp number with its own consent (WhatsApp's policy asks for an opt-in to WhatsApp
          -- messages in particular), like e-mail and SMS. Metadata-only additions, and the index of
          -- the unique number (empty at first).
          ALTER TABLE subscribers
            ADD COLUMN whatsapp text UNIQUE CHECK (whatsapp ~ '^\+[1-9][0-9]{6,14}$'),
            ADD COLUMN whatsapp_subscribed boolean NOT NULL DEFAULT false,
            ADD COLUMN whatsapp_consent_source text,
            ADD COLUMN whatsapp_consented_at timestamptz,
            ADD COLUMN whatsapp_unsubscribed_at timestamptz,
            ADD CONSTRAINT subscribers_whatsapp_consent_check CHECK (NOT whatsapp_subscribed
              OR (whatsapp IS NOT NULL AND whatsapp_consent_source IS NOT NULL AND whatsapp_consented_at IS NOT NULL)),
            -- An unsubscribe from push: tokens registered after it stay retired until the person
            -- turns notifications back on (a registration with a re-subscribe source).
            ADD COLUMN push_unsubscribed_at timestamptz;
          -- Consent history of the new channels. NOT VALID: every row was written under the
          -- narrower check.
          ALTER TABLE consent_events DROP CONSTRAINT consent_events_channel_check;
          ALTER TABLE consent_events ADD CONSTRAINT consent_events_channel_check
            CHECK (channel IN ('email', 'sms', 'whatsapp', 'push')) NOT VALID;
          -- Devices' push tokens: many per subscriber; a token is one device's for one app, so it
          -- belongs to one subscriber at a time. A retired token (the push service said the app no
          -- longer has it, or it was retired through the API) is kept, not sent to.
          CREATE TABLE push_tokens (
            id uuid PRIMARY KEY DEFAULT uuid_v7(),
            subscriber_id uuid NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            platform text NOT NULL CHECK (platform IN ('apns', 'fcm')),
            token text NOT NULL CHECK (token ~ '^[A-Za-z0-9:_-]+$' AND length(token) BETWEEN 16 AND 4096),
            app_id text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            last_seen_at timestamptz NOT NULL DEFAULT now(),
            retired_at timestamptz,
            retired_reason text,
            UNIQUE (platform, token),
            CHECK ((retired_at IS NULL) = (retired_reason IS NULL))
          );
          -- A subscriber's live tokens, most recently seen first (the one a push goes to).
          CREATE INDEX push_tokens_live_idx ON push_tokens (subscriber_id, last_seen_at DESC) WHERE retired_at IS NULL;
          -- Push templates' data and deep link; WhatsApp templates' approved template (name,
          -- language, parameters). Metadata-only.
          ALTER TABLE templates ADD COLUMN content jsonb;
          """#),
    ])
}
