#!/bin/sh
# One database and one login per service, each owning its own database only:
# no service can connect to another's (CONNECT revoked from PUBLIC), and none
# is a superuser. Temporal gets a login that may create its two databases.
# Run once by the postgres image on an empty data directory; the passwords
# come from the container's environment (compose.yaml).
set -eu
for service in intake shelter legal employment network health psychosocial; do
  password_var="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password="$(printenv "$password_var")"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v name="$service" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"name" TO :"name";
SQL
done
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'password' CREATEDB NOSUPERUSER NOCREATEROLE;
SQL
