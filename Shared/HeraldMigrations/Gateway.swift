import HeraldPostgres

extension HeraldMigrations {
  /// The gateway's schema (SPEC §7): API keys and idempotency keys.
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
