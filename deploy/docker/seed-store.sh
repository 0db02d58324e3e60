#!/bin/sh
# Seed a store directory (argument 1; default the gateway's) from the latest snapshot before a service
# starts. Every gateway replica writes its own store (RocksDB allows one writer per directory); the shared state
# between replicas is Redis. A store that already exists (a restarted container) is kept as it is.
set -eu
STORE="${1:-${PRECOG_GATEWAY_STORE_PATH:-/var/lib/precog/store}}"
SNAPSHOT="${PRECOG_SNAPSHOT:-/var/lib/precog/snapshots/latest.tar.gz}"
if [ -d "$STORE/db" ]; then
    echo "seed-store: $STORE exists, keeping it"
elif [ -f "$SNAPSHOT" ]; then
    precog store import "$SNAPSHOT" "$STORE"
else
    echo "seed-store: no snapshot at $SNAPSHOT, starting with an empty store"
fi
