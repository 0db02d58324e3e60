#!/bin/sh
# One precompute run as a batch job, on the store that `precog gateway writer` owns: wait until the writer
# has let go of it (RocksDB allows one writer; stop the writer first), extend the store from the corpus,
# then publish a snapshot the gateway replicas swap in (`precog store publish`: export, then one rename of
# `current`). Re-running after a kill resumes: precompute checkpoints next to the store.
set -eu
CORPUS="${PRECOG_CORPUS:-/var/lib/precog/corpus}"
STORE="${PRECOG_GATEWAY_STORE_PATH:-/var/lib/precog/store}"
SNAPSHOTS="${PRECOG_GATEWAY_SNAPSHOT_ROOT:-/var/lib/precog/snapshots}"
ENGINE="${PRECOG_PRECOMPUTE_ENGINE:-local}"
WAIT_S="${PRECOG_STORE_WAIT_S:-300}"
waited=0
until python -c 'import sys; from precog.store import Store; Store.open(sys.argv[1], progress=False).close()' \
    "$STORE" 2>/dev/null; do
    if [ "$waited" -ge "$WAIT_S" ]; then
        echo "precompute-job: $STORE is still open for writing after ${WAIT_S}s; stop the writer first" >&2
        exit 3
    fi
    sleep 5
    waited=$((waited + 5))
done
precog precompute --corpus "$CORPUS" --store "$STORE" --engine "$ENGINE" --no-progress "$@"
precog store publish "$SNAPSHOTS" --store "$STORE"
