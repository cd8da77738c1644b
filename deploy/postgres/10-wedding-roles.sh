#!/bin/sh
# Run by the postgres image the first time its data volume is initialised (files in
# /docker-entrypoint-initdb.d), as the superuser, on the `wedding` database: the engine's
# roles (roles.sql, a copy of ROLES_SQL in stream_app/db/roles.py) and their passwords from
# the container's environment (docker-compose.yml passes them from deploy/.env).
# To change a password later: ALTER ROLE ... PASSWORD as the superuser, and in deploy/.env.
set -eu
roles_file=${WEDDING_ROLES_FILE:-/wedding/roles.sql}
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --file "$roles_file"
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner_pw="$WEDDING_OWNER_DB_PASSWORD" \
  -v app_pw="$WEDDING_APP_DB_PASSWORD" \
  -v system_pw="$WEDDING_SYSTEM_DB_PASSWORD" <<'SQL'
ALTER ROLE wedding_owner PASSWORD :'owner_pw';
ALTER ROLE wedding_app PASSWORD :'app_pw';
ALTER ROLE wedding_system PASSWORD :'system_pw';
SQL
