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
}
