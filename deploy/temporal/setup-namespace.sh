#!/bin/sh
# One-shot (temporalio/admin-tools): create the namespace and register the custom search attributes
# that Provisio's workflows set. Idempotent: runs on every `docker compose up`.
#   SEARCH_ATTRIBUTES="Name=Type Name=Type ..." (docker-compose.yml holds the list)
set -eu

: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}" "${SEARCH_ATTRIBUTES:?}"
retention="${NAMESPACE_RETENTION:-30d}"

cli() { temporal "$@" --address "$TEMPORAL_ADDRESS"; }

# retry CMD...: right after start the server may still be joining its ring or refreshing its
# namespace cache (about 10 s), and a new namespace or attribute is not usable at once.
retry() {
    attempt=1
    until "$@"; do
        if [ "$attempt" -ge 60 ]; then
            echo "giving up after $attempt attempts: $*" >&2
            return 1
        fi
        attempt=$((attempt + 1))
        sleep 2
    done
}

has_attribute() {
    cli operator search-attribute list --namespace "$NAMESPACE" | grep -qw "$1"
}

# Created, or already there (a previous run, or a create that succeeded but whose reply was lost).
ensure_attribute() {
    has_attribute "$1" || cli operator search-attribute create --namespace "$NAMESPACE" \
        --name "$1" --type "$2" || has_attribute "$1"
}

retry cli operator cluster health

if cli operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
else
    retry cli operator namespace create --namespace "$NAMESPACE" --retention "$retention"
fi

query=""
for pair in $SEARCH_ATTRIBUTES; do
    name="${pair%%=*}"
    type="${pair#*=}"
    retry ensure_attribute "$name" "$type"
    case "$type" in
        Int) clause="$name = 0" ;;
        *) clause="$name = ''" ;;
    esac
    query="${query:+$query AND }$clause"
done

# Done only when a visibility query that names every attribute is accepted: that is what the
# workflows and the API's list filters need, and what would fail while the cache is stale.
retry cli workflow count --namespace "$NAMESPACE" --query "$query" >/dev/null
echo "namespace $NAMESPACE is ready: $SEARCH_ATTRIBUTES"
