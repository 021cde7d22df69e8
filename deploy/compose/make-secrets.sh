#!/bin/sh
# Creates the secrets docker-compose.yml reads, in deploy/secrets/ (git-ignored).
# Run from the repository root after `make install`:
#   deploy/compose/make-secrets.sh [LEDGER_KEY_NAME]
# Existing files are kept: the ledger key IS the log's identity.
set -eu
dir=$(dirname "$0")/../secrets
name=${1:-mrm.localhost/compose}
python=${PYTHON:-.venv/bin/python}
umask 077
mkdir -p "$dir"
new() { [ -e "$dir/$1" ] && echo "keeping $dir/$1" && return 1; echo "creating $dir/$1"; }

new postgres-password && "$python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$dir/postgres-password"
new mrm-app-password && "$python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$dir/mrm-app-password"
new mrm-db-owner.pgpass && echo "postgres:5432:mrm:mrm:$(cat "$dir/postgres-password")" >"$dir/mrm-db-owner.pgpass"
new mrm-db-app.pgpass && echo "postgres:5432:mrm:mrm_app:$(cat "$dir/mrm-app-password")" >"$dir/mrm-db-app.pgpass"
new subject.key && "$python" -c 'import secrets; print(secrets.token_hex(32))' >"$dir/subject.key"
# Credentials: the tokens file and the local tokens (admin, registry, explain,
# proxy, monitor, dashboard); the admin token (auth/admin.token) is yours, for mrmctl
# and `mrm auth`. `mrm auth init` issues only what is missing (such as the monitor's
# or the dashboard's token in an older deploy/secrets/auth) and keeps every live token.
[ -e "$dir/auth/tokens.json" ] && [ -e "$dir/auth/monitor.token" ] &&
  [ -e "$dir/auth/dashboard.token" ] && echo "keeping $dir/auth" ||
  MRM_HOME="$dir/auth" "$(dirname "$python")/mrm" auth init
new auth/session.key && "$python" -c 'import secrets; print(secrets.token_hex(32))' >"$dir/auth/session.key"
new ledger.key && "$python" -c "import sys; from mrm.tlog.note import generate_signer; print(generate_signer(sys.argv[1]).encode())" "$name" >"$dir/ledger.key"

# Compose bind-mounts file secrets with their host owner and mode. The MRM
# containers run as uid 10001 and libpq wants a pgpass file no one else can
# read; the two bare passwords are read by the postgres container (uid 999).
if [ "$(id -u)" = 0 ]; then
  chown 10001:10001 "$dir"/*.pgpass "$dir/ledger.key" "$dir/subject.key"
  chown 10001:10001 "$dir/auth/tokens.json" "$dir/auth/registry.token" \
    "$dir/auth/explain.token" "$dir/auth/proxy.token" "$dir/auth/monitor.token" \
    "$dir/auth/dashboard.token" "$dir/auth/session.key"
  chown 999:999 "$dir/postgres-password" "$dir/mrm-app-password"
else
  echo "not root: run  sudo chown 10001:10001 $dir/*.pgpass $dir/ledger.key $dir/subject.key"
  echo "          and  sudo chown 10001:10001 $dir/auth/tokens.json $dir/auth/*.token $dir/auth/session.key"
  echo "          and  sudo chown 999:999 $dir/postgres-password $dir/mrm-app-password"
fi
chmod 0400 "$dir"/* 2>/dev/null || true
chmod 0700 "$dir/auth"
chmod 0400 "$dir"/auth/*
echo "verifier key: $("$python" -c "import sys; from mrm.tlog.note import parse_signer_key; print(parse_signer_key(open(sys.argv[1]).read().strip()).vkey())" "$dir/ledger.key")"
