#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised: creates the role
# the MRM services log in as. `mrm db upgrade --app-role mrm_app` (the migrate
# service) then grants it SELECT and INSERT only.
set -eu
app_password=$(cat /run/secrets/mrm-app-password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set app_password="$app_password" <<'SQL'
CREATE ROLE mrm_app LOGIN PASSWORD :'app_password';
GRANT CONNECT ON DATABASE mrm TO mrm_app;
SQL
