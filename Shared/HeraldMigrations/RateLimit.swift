import HeraldPostgres

extension HeraldMigrations {
  /// The rate-limit service's schema (SPEC §4): limits, hour and day counters, members.
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
}
