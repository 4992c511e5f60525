# Shared helpers for Herald's scripts (sourced, not run).

# Installs Debian packages that are missing (the scripts run as root on a fresh machine; with
# sudo otherwise).
ensure_apt_packages() {
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} with apt-get" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Prints the folder holding initdb and pg_ctl, installing PostgreSQL if there is none.
postgres_bin() {
  local folder
  for folder in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r) \
    $(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/x)"); do
    if [ -x "$folder/pg_ctl" ] && [ -x "$folder/initdb" ] && [ -x "$folder/psql" ]; then echo "$folder"; return 0; fi
  done
  ensure_apt_packages postgresql >&2
  ls -d /usr/lib/postgresql/*/bin | sort -t/ -k4 -n -r | head -n 1
}

# Runs a PostgreSQL program, as the postgres user when we are root (the server refuses root).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
