#!/usr/bin/env bash
# build.sh [BUILD_DIR] — configures and builds mpiimport with Debian's Python
# (/usr/bin/python3, which has numpy) and the transports in $TRANSPORT
# (default "mpi"; a ';'-list builds several).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
cmake -S . -B "$BUILD" -DPython3_EXECUTABLE=/usr/bin/python3 -DTRANSPORT="${TRANSPORT:-mpi}" \
      ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
