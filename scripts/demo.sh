#!/usr/bin/env bash
# demo.sh [RANKS] — the main job: installs what is missing, builds, then runs
# an 8-rank import of numpy, scipy and mpi4py with plain Python and with
# mpiimport, and prints side by side the file-system calls (counted by strace)
# and the time.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
./scripts/build.sh build
exec /usr/bin/python3 scripts/demo.py --build build --ranks "${1:-8}" "${@:2}"
