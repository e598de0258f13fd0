#!/bin/sh
# One-shot (temporalio/admin-tools): create Temporal's two databases and bring both schemas to the
# version this admin-tools image ships. temporal-sql-tool is idempotent (create ignores an existing
# database, setup-schema keeps a newer version, update-schema applies only what is missing), so this
# runs on every `docker compose up`, and after an image bump it is the schema upgrade.
set -eu

: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"  # SQL_PASSWORD: read by the tool
port="${DB_PORT:-5432}"
schema_root=/etc/temporal/schema/postgresql/v12

sql_tool() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" "$@"
}

# database:schema-directory
for pair in temporal:temporal temporal_visibility:visibility; do
    db="${pair%%:*}"
    dir="$schema_root/${pair#*:}/versioned"
    sql_tool --db "$db" create
    sql_tool --db "$db" setup-schema -v 0.0
    sql_tool --db "$db" update-schema -d "$dir"
done
echo "Temporal schemas are up to date"
