#!/bin/sh
# One precompute run as a batch job: extend the work store from the corpus, then publish a snapshot.
# The snapshot is written under a temporary name and renamed, so readers never see half a file.
# Re-running after a kill resumes (precompute checkpoints next to the work store).
set -eu
CORPUS="${PRECOG_CORPUS:-/var/lib/precog/corpus}"
WORK="${PRECOG_WORK_STORE:-/var/lib/precog/work/store}"
SNAPSHOTS="${PRECOG_SNAPSHOT_DIR:-/var/lib/precog/snapshots}"
ENGINE="${PRECOG_PRECOMPUTE_ENGINE:-local}"
precog precompute --corpus "$CORPUS" --store "$WORK" --engine "$ENGINE" --no-progress "$@"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$SNAPSHOTS"
precog store export "$SNAPSHOTS/store-$stamp.tar.gz" --store "$WORK"
ln -sfn "store-$stamp.tar.gz" "$SNAPSHOTS/.latest.tmp"
mv -T "$SNAPSHOTS/.latest.tmp" "$SNAPSHOTS/latest.tar.gz"
echo "precompute-job: published $SNAPSHOTS/store-$stamp.tar.gz as latest.tar.gz"
