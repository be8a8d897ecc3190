#!/usr/bin/env bash
# bench.sh [run_bench.py options] — the scaling benchmark (issue 3): installs
# what is missing, builds mpiimport into $BUILD (default ./build) and emufs
# (tests/bench/emufs.c, the emulated shared file system), then runs
# tests/bench/run_bench.py, which mounts emufs, runs plain Python and
# mpiimport (every compiled transport) at 1..32 ranks and writes
# docs/bench.md, docs/bench.png and docs/bench.json. Always unmounts.
#
#   ./scripts/bench.sh                # full matrix + wall pass (about half an hour on 2 cores)
#   ./scripts/bench.sh --quick        # under a minute
#   ./scripts/bench.sh --help         # every option (--ranks, --workloads, --modes, --repeat,
#                                     #   --meta-us, --read-mbps, --wall-*, --out, ...)
# Needs root (or sudo) for apt and a working /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

./scripts/install-deps.sh
# The benchmark's own packages: FUSE (emufs) and matplotlib (the plot; optional).
missing=()
for p in libfuse3-dev fuse3 pkg-config python3-matplotlib; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "bench: installing ${missing[*]}"
  if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           "${missing[@]}" >/dev/null; }; then
    echo "bench: apt-get failed; continuing (without matplotlib the report has no plot)" >&2
  fi
fi

./scripts/build.sh "$BUILD"
# emufs: part of the main build once tests/CMakeLists.txt has add_subdirectory(bench);
# until then (or if not), built on its own.
EMUFS="$BUILD/tests/bench/emufs"
if [ ! -x "$EMUFS" ]; then
  cmake -S tests/bench -B "$BUILD/bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD/bench"
  EMUFS="$BUILD/bench/emufs"
fi
exec /usr/bin/python3 tests/bench/run_bench.py --build "$BUILD" --emufs "$EMUFS" "$@"
