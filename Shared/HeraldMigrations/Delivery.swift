import HeraldPostgres

extension HeraldMigrations {
  /// The delivery service's schema (SPEC §3): the message queue and its events, providers,
  /// suppressions, spend caps, warm-up.
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
      Migration(
        version: 5, name: "send journal",
        sql: #"""
          -- Sends about to begin: one row per group a worker hands to providers, written before
          -- any of it goes out and deleted when its batch is settled. After a crash, a leased
          -- message that no row names was never sent and goes back to the queue as it was; one
          -- in `resendable` went to providers that drop a second copy (or may resend).
          CREATE TABLE send_journal (
            lease_token uuid NOT NULL,
            message_ids uuid[] NOT NULL,
            resendable uuid[] NOT NULL,
            begun_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE INDEX send_journal_lease_idx ON send_journal (lease_token);
          """#),
      Migration(
        version: 6, name: "message format, text part and unsubscribe link, DKIM keys",
        sql: #"""
          -- How the body is written (never guessed from it), and an HTML e-mail's text/plain
          -- alternative when the sender gave one. The columns are metadata-only additions; the
          -- check is added NOT VALID (no scan under the table's exclusive lock) and validated
          -- after, which reads the table under a lock that lets the queue go on.
          ALTER TABLE messages ADD COLUMN format text NOT NULL DEFAULT 'text';
          ALTER TABLE messages ADD CONSTRAINT messages_format_check CHECK (format IN ('text', 'html')) NOT VALID;
          ALTER TABLE messages VALIDATE CONSTRAINT messages_format_check;
          ALTER TABLE messages ADD COLUMN text_body text;
          -- The recipient's one-click unsubscribe URL (RFC 8058 headers), for campaign e-mail.
          ALTER TABLE messages ADD COLUMN list_unsubscribe text;
          -- DKIM signing keys per sending domain, one per selector. private_key is sealed with
          -- HERALD_SECRETS_KEY (AES-GCM; the value names the key that sealed it); public_key is
          -- the p= value of the DNS record.
          CREATE TABLE dkim_keys (
            domain text NOT NULL CHECK (domain = lower(domain)),
            selector text NOT NULL,
            algorithm text NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),
            private_key text NOT NULL,
            public_key text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (domain, selector)
          );
          """#),
      Migration(
        version: 7, name: "machine engagement and the deliverability window",
        sql: #"""
          -- An open or click from Herald's tracking links: whether it was judged a machine's (a
          -- mail privacy proxy's prefetch, a link scanner) and the signals behind that. NULL for
          -- every other event. Metadata-only additions.
          ALTER TABLE delivery_events ADD COLUMN machine boolean, ADD COLUMN signals jsonb;
          -- The deliverability report reads the events of the last days. Events are written in
          -- time order, so a BRIN index finds them for the cost of a few pages, and costs the
          -- queue next to nothing to keep (a B-tree would be one more index entry per event).
          CREATE INDEX delivery_events_occurred_brin ON delivery_events USING brin (occurred_at);
          """#),
      Migration(
        version: 8, name: "campaign and sending-domain holds",
        sql: #"""
          -- A campaign paused (by an operator or the deliverability guard) or cancelled holds back
          -- what it already handed over: one row while it is held, and for good once cancelled.
          CREATE TABLE campaign_holds (
            campaign_id uuid PRIMARY KEY,
            action text NOT NULL CHECK (action IN ('hold', 'cancel')),
            reason text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
          );
          -- A held campaign's messages, found again when it is released; empty unless a campaign
          -- is held. Built first, under a lock that lets the queue be read (not written) while it
          -- scans the table; the exclusive lock the check's swap takes, held to the end of this
          -- migration, then lasts only a moment.
          CREATE INDEX messages_held_idx ON messages (campaign_id) WHERE status = 'held';
          -- Two more message statuses. The new check is NOT VALID: every row was written under the
          -- old, narrower one, so nothing needs reading under the table's exclusive lock.
          ALTER TABLE messages DROP CONSTRAINT messages_status_check;
          ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN (
            'queued', 'sending', 'sent', 'delivered', 'bounced', 'failed', 'suppressed', 'expired', 'dead', 'unknown', 'held',
            'cancelled')) NOT VALID;
          -- A sending domain the deliverability guard stopped (its complaint or hard-bounce rate
          -- over the window passed the threshold): its providers send nothing until an operator
          -- releases it; after that only what it sends from then on is judged.
          CREATE TABLE domain_holds (
            domain text PRIMARY KEY,
            reason text NOT NULL,
            held_at timestamptz NOT NULL DEFAULT now(),
            released_at timestamptz
          );
          """#),
      Migration(
        version: 9, name: "inbound messages and SMS keywords",
        sql: #"""
          -- SMS and e-mail received through a provider (SPEC §11), each once per provider message
          -- id: what it answers, what it was taken as (a reply, a keyword, one for review...) and
          -- the confirmation queued in answer. The campaign service reads them in commit-safe order
          -- (txid, feed_seq) as it reads delivery events; a reviewed message moves to the end.
          CREATE TABLE inbound_messages (
            id uuid PRIMARY KEY DEFAULT uuid_v7(),
            provider text NOT NULL,
            provider_message_id text NOT NULL CHECK (provider_message_id <> ''),
            channel text NOT NULL CHECK (channel IN ('sms', 'email')),
            sender text NOT NULL CHECK (sender <> ''),
            recipient text NOT NULL,
            subject text NOT NULL DEFAULT '',
            body text NOT NULL,
            headers jsonb,
            answers_message_id uuid,
            campaign_id uuid,
            subscriber_id uuid,
            action text NOT NULL CHECK (action IN (
              'reply', 'stop', 'start', 'help', 'review', 'stop_reviewed', 'dismissed', 'unsubscribe', 'auto_reply', 'none')),
            keyword text NOT NULL DEFAULT '',
            response_message_id uuid,
            received_at timestamptz NOT NULL DEFAULT now(),
            txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            feed_seq bigint GENERATED ALWAYS AS IDENTITY,
            UNIQUE (provider, provider_message_id)
          );
          CREATE INDEX inbound_messages_feed_idx ON inbound_messages (txid, feed_seq);
          CREATE INDEX inbound_messages_action_idx ON inbound_messages (action, id);
          -- An SMS reply answers the last message sent to its number, and a STOP suppresses what is
          -- queued for it: both found through this index (SMS only, so e-mail sends pay nothing).
          CREATE INDEX messages_sms_recipient_idx ON messages (recipient, id) WHERE channel = 'sms';
          -- A confirmation of STOP or START, or the help text: sent even to a suppressed number
          -- (the one reply the rules allow after an opt-out). A metadata-only addition.
          ALTER TABLE messages ADD COLUMN compliance boolean NOT NULL DEFAULT false;
          -- A number that texted STOP (or the like) is suppressed for that reason; START takes it
          -- off. NOT VALID: every row was written under the narrower check.
          ALTER TABLE suppressions DROP CONSTRAINT suppressions_reason_check;
          ALTER TABLE suppressions ADD CONSTRAINT suppressions_reason_check
            CHECK (reason IN ('hard_bounce', 'complaint', 'manual', 'sms_keyword')) NOT VALID;
          """#),
      Migration(
        version: 10, name: "SMS quiet hours",
        sql: #"""
          -- An SMS is delivered only inside its window of the recipient's local time (SPEC §11):
          -- minutes after midnight from quiet_start up to quiet_end (an end before the start runs
          -- past midnight), in every one of quiet_zones (the subscriber's zone, else those of the
          -- number's country and area code). NULL: at any hour. Metadata-only additions.
          ALTER TABLE messages ADD COLUMN quiet_zones text[], ADD COLUMN quiet_start smallint, ADD COLUMN quiet_end smallint;
          """#),
      Migration(
        version: 11, name: "automatic answers",
        sql: #"""
          -- An e-mail that answers another (its Message-ID: In-Reply-To, References), and whether
          -- it is an automatic answer (Auto-Submitted: auto-replied, RFC 3834). Metadata-only.
          ALTER TABLE messages ADD COLUMN in_reply_to text, ADD COLUMN auto_submitted boolean NOT NULL DEFAULT false;
          """#),
      Migration(
        version: 12, name: "push and WhatsApp",
        sql: #"""
          -- What a push notification (platform, data, deep link...) or a WhatsApp template message
          -- (name, language, parameters) carries besides subject and body. Metadata-only.
          ALTER TABLE messages ADD COLUMN payload jsonb;
          -- The suppression list's key of a recipient: an e-mail address lower-cased, a phone
          -- number as it is (SMS), and a WhatsApp number or a push token with its channel's prefix
          -- (a number that opted out of WhatsApp may still get texts, and a token is no address).
          CREATE FUNCTION suppression_key(channel text, recipient text) RETURNS text
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
              SELECT CASE channel WHEN 'push' THEN 'push:' || recipient WHEN 'whatsapp' THEN 'whatsapp:' || recipient
                ELSE lower(recipient) END
            $$;
          -- WhatsApp messages received (SPEC §11 for the channel). NOT VALID: every row was
          -- written under the narrower check.
          ALTER TABLE inbound_messages DROP CONSTRAINT inbound_messages_channel_check;
          ALTER TABLE inbound_messages ADD CONSTRAINT inbound_messages_channel_check
            CHECK (channel IN ('sms', 'email', 'whatsapp')) NOT VALID;
          -- The 24-hour customer-service window: a number's last message in.
          CREATE INDEX inbound_messages_whatsapp_idx ON inbound_messages (sender, received_at) WHERE channel = 'whatsapp';
          -- A WhatsApp reply answers the last message sent to its number (as an SMS reply does).
          CREATE INDEX messages_whatsapp_recipient_idx ON messages (recipient, id) WHERE channel = 'whatsapp';
          """#),
    ])
}
