#!/usr/bin/env bash
# build.sh [BUILD_DIR] — configures and builds mpiimport with Debian's Python
# (/usr/bin/python3, which has numpy) and the transports in $TRANSPORT
# (default all three, "mpi;ofi;ucx"; the first is the run-time default).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
cmake -S . -B "$BUILD" -DPython3_EXECUTABLE=/usr/bin/python3 -DTRANSPORT="${TRANSPORT:-mpi;ofi;ucx}" \
      ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
