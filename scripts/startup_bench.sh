#!/usr/bin/env bash
# startup_bench.sh [startup_bench.py options] — builds mpiimport (./build, as
# scripts/build.sh) and runs tests/bench/startup_bench.py: a whole job's
# start-up with a packed image on the emulated shared file system against one
# process on a warm local disk, and the site hook's cost on `python3 -c pass`.
# Writes docs/startup_bench.md unless --out says otherwise. Needs FUSE
# (/dev/fuse); the packages come from scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh build >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec /usr/bin/python3 tests/bench/startup_bench.py --build build "$@"
