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

# The one-command stack (scripts/run-stack) started as a user would, for the checks that need a
# running stack (scripts/e2e-stack-check, scripts/api-contract-check): on a fresh data folder and
# spare ports, in a tmux pane (a real terminal, so that Ctrl-C reaches it as it would a user).
# stack_prepare NAME sets data, stack_log and session and exports run-stack's variables.
stack_prepare() {
  ensure_apt_packages curl python3 python3-venv tmux
  data=$(mktemp -d "/tmp/herald-$1-XXXXXX")
  chmod 755 "$data"
  export HERALD_DATA_DIR=$data HERALD_GATEWAY_PORT=18080 HERALD_PORT_BASE=17100 HERALD_PG_PORT=56432 HERALD_RESTART_DELAY=8 HERALD_CRM_PORT=17200 \
    HERALD_PROVIDER_SANDBOX_PORT=17300
  stack_log="$data/stack.log"
  session=herald-$1-$$
}

stack_fail() {
  echo "${session%%-*}: FAIL: $*" >&2
  tail -n 30 "$stack_log" >&2 || true
  tmux send-keys -t "$session" C-c 2>/dev/null || true
  sleep 5
  exit 1
}

stack_start() {
  : >"$stack_log"
  tmux new-session -d -s "$session" -x 200 -y 50 "exec '$root/scripts/run-stack' >>'$stack_log' 2>&1"
  for _ in $(seq 1 900); do
    grep -q "Herald is up" "$stack_log" 2>/dev/null && return 0
    tmux has-session -t "$session" 2>/dev/null || stack_fail "run-stack exited before the stack was up"
    sleep 1
  done
  stack_fail "the stack did not come up"
}

stack_leftovers() {
  pgrep -af "$data|(debug|release)/(campaign|delivery|ratelimit|sync|verification|gateway|crm-sandbox|provider-sandbox)$" || true
}

stack_stop() {
  tmux send-keys -t "$session" C-c
  for _ in $(seq 1 60); do tmux has-session -t "$session" 2>/dev/null || break; sleep 0.5; done
  tmux has-session -t "$session" 2>/dev/null && stack_fail "run-stack did not stop on Ctrl-C"
  sleep 1
  [ -z "$(stack_leftovers)" ] || { stack_leftovers >&2; stack_fail "processes left behind after Ctrl-C"; }
  echo "stack: Ctrl-C stopped every process"
}
