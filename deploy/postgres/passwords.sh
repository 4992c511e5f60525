#!/bin/sh
# Sets the passwords of Herald's per-service roles (made by roles.sql, which runs first) from
# HERALD_<SERVICE>_DB_PASSWORD. The postgres image runs this once, when its volume is new, with
# POSTGRES_USER and POSTGRES_DB set; it can also be run by hand with PG* variables for psql.
set -eu
for service in campaign delivery ratelimit sync verification gateway; do
  variable="HERALD_$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password=$(printenv "$variable" || true)
  if [ -z "$password" ]; then
    echo "passwords.sh: $variable is not set (the password of role herald_$service)" >&2
    exit 1
  fi
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-herald}" \
    -v role="herald_$service" -v password="$password" <<'SQL'
ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
SQL
done
