#!/usr/bin/env bash
# install-deps.sh — installs the Debian 12 packages mpiimport builds, tests,
# demonstrates and benchmarks with (only those missing). Needs root, or sudo.
set -euo pipefail
PKGS=(cmake make gcc g++ pkg-config openmpi-bin libopenmpi-dev libgtest-dev libfuse3-dev fuse3 strace
      python3-dev python3-numpy python3-scipy python3-mpi4py python3-pytest python3-venv)
# The benchmarks (scripts/bench.sh, startup_bench.sh, bcast_bench.sh): emufs needs
# libfuse3-dev and fuse3 (fusermount3), above; run_bench.py's plot needs matplotlib.
PKGS+=(python3-matplotlib)
# numpy's own test suite run under every mode (tests/python/test_third_party_suite.py):
# numpy's conftest needs hypothesis.
PKGS+=(python3-hypothesis)
# The Lmod modulefile `cmake --install` puts in share/modulefiles (tests/python/test_lmod.py).
PKGS+=(lmod)
# A one-node Slurm for the srun job steps (scripts/slurm.sh; python_srun.* tests).
PKGS+=(slurm-wlm munge)
# Transports beyond mpi need their libraries too.
case " ${TRANSPORT:-mpi;ofi;ucx} " in *ofi*) PKGS+=(libfabric-dev libpmix-dev) ;; esac
case " ${TRANSPORT:-mpi;ofi;ucx} " in *ucx*) PKGS+=(libucx-dev libpmix-dev) ;; esac

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
