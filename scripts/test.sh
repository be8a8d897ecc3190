#!/usr/bin/env bash
# test.sh — the project's test command (README, .ci/run): installs what is
# missing, builds, runs every test (unit, multi-rank, Python end-to-end) with
# ctest, then builds the core's unit tests with ASan+UBSan and runs them.
# Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset PYTHONDONTWRITEBYTECODE
./scripts/build.sh build
# A one-node Slurm (munge, slurmctld, slurmd on localhost) for the srun job
# steps (python_srun.*: the multi-rank tests under srun --mpi=pmix, every
# transport); stopped when this script ends. Its absence is a failure here.
slurm_env=$(./scripts/slurm.sh start) || { echo "test.sh: no Slurm (above); the srun tests need it" >&2; exit 1; }
eval "$slurm_env"
trap './scripts/slurm.sh stop' EXIT
export MPIIMPORT_TEST_REQUIRE_SLURM=1
(cd build && ctest --output-on-failure --timeout 900 "$@")
# Sanitizers: the core and its unit tests, no Python, no MPI runtime.
CMAKE_ARGS="-DMPIIMPORT_SANITIZE=ON -DMPIIMPORT_BUILD_HOOK=OFF" ./scripts/build.sh build-asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -L unit)

# ---- Fuzzing (tests/fuzz/, scripts/fuzz.sh) ----
# Each libFuzzer target (image parser raw and with its header fixed up,
# recorded-list file reader, ELF dependency reader) for 60 s, built with
# clang in build-fuzz from seeds made of real files; fails on any crash,
# leak, timeout or broken invariant.
./scripts/fuzz.sh 60

echo "test.sh: all tests passed"
