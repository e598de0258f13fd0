#!/bin/sh
# Runs once, when the PostgreSQL data volume is first initialised (docker-entrypoint-initdb.d).
# Two least-privilege roles instead of the superuser: `provisio` owns only the app's database,
# `temporal` may create its own two databases (temporal-sql-tool does that) and nothing else.
# Passwords reach SQL as psql variables (:'name'), so their characters can never break the SQL.
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v provisio_password="$PROVISIO_DB_PASSWORD" \
    -v temporal_password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE provisio LOGIN PASSWORD :'provisio_password';
CREATE DATABASE provisio OWNER provisio;
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
SQL
