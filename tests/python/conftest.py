"""Helpers for the end-to-end tests: run a job script under mpirun with the
build tree's mpiimport, and compare what each rank saw with a plain import."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS = os.path.join(HERE, "jobs")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
MPIRUN = os.environ.get("MPIIMPORT_TEST_MPIRUN", "mpirun")
# "srun": the multi-rank jobs run as Slurm job steps (srun --mpi=pmix; the
# test command starts a one-node Slurm, scripts/slurm.sh), else under mpirun.
LAUNCHER_KIND = os.environ.get("MPIIMPORT_TEST_LAUNCHER", "mpirun")


def _slurm_problem():
    """Why srun cannot run steps here, or None."""
    import shutil
    if shutil.which("srun") is None:
        return "srun is not installed (apt-get install slurm-wlm munge)"
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "sinfo failed: %s" % e
    if p.returncode != 0 or not any(s in p.stdout for s in ("idle", "mixed", "allocated")):
        return "no Slurm node is up (%s)" % (p.stderr.strip() or p.stdout.strip() or "no output")
    return None


@pytest.fixture(autouse=True, scope="session")
def _slurm_for_srun_tests():
    if LAUNCHER_KIND != "srun":
        return
    problem = _slurm_problem()
    if problem is None:
        return
    msg = ("%s: start one with `./scripts/slurm.sh start` and export the SLURM_CONF it prints"
           % problem)
    if os.environ.get("MPIIMPORT_TEST_REQUIRE_SLURM") == "1":
        pytest.fail("srun tests: " + msg, pytrace=False)
    pytest.skip("srun tests skipped: " + msg)


def launch_prefix(n):
    """The command line that starts n ranks of a program (any program)."""
    if LAUNCHER_KIND == "srun":
        return ["srun", "--mpi=pmix", "--overcommit", "--quiet", "-n", str(n)]
    return [MPIRUN, "--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader,tcp", "-n", str(n)]


def job_env(extra=None):
    env = dict(os.environ)
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # Keep the tests' own settings from leaking in from the caller's shell.
    for k in list(env):
        if k.startswith("MPIIMPORT_") and k not in ("MPIIMPORT_TRANSPORT", "MPIIMPORT_TEST_MPIRUN",
                                                   "MPIIMPORT_TEST_BUILD"):
            del env[k]
    # CPython writes bytecode caches by default; the tests check that rank 0 does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # Unbuffered output writes a print() in pieces, which mpirun interleaves.
    env.pop("PYTHONUNBUFFERED", None)
    if LAUNCHER_KIND == "srun":
        env["OMPI_MCA_btl"] = "self,vader,tcp"   # as run_mpi's mpirun line says
    # Lock-step imports unless a test asks for recorded lists (test_images.py):
    # a list recorded by an earlier test must not change what a test measures.
    env["MPIIMPORT_RECORD"] = "0"
    env.update(extra or {})
    return env


def run_mpi(n, args, extra_env=None, timeout=600, check=True):
    """mpirun -n n PYTHON args... (or srun); returns CompletedProcess (text)."""
    cmd = launch_prefix(n) + [PYTHON] + list(args)
    p = subprocess.run(cmd, env=job_env(extra_env), capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("job failed (%d): %s\nstdout:\n%s\nstderr:\n%s"
                             % (p.returncode, " ".join(cmd), p.stdout[-4000:], p.stderr[-4000:]))
    return p


def run_plain(args, extra_env=None, timeout=600):
    p = subprocess.run([PYTHON] + list(args), env=job_env(extra_env), capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("plain run failed: %s\n%s" % (p.stdout[-4000:], p.stderr[-4000:]))
    return p


def load_ranks(directory, n):
    out = []
    for r in range(n):
        with open(os.path.join(directory, "rank%d.json" % r)) as f:
            out.append(json.load(f))
    return out


@pytest.fixture
def job(request):
    return os.path.join(JOBS, request.param) if hasattr(request, "param") else JOBS


def assert_site_hook_off(py):
    """Without MPIIMPORT, py (an installed environment's interpreter) starts
    plainly under mpirun: the site hook installs nothing."""
    off = subprocess.run([MPIRUN, "--oversubscribe", "--allow-run-as-root", "-n", "2", py, "-c",
                          "import sys; print('META', type(sys.meta_path[0]).__name__)"],
                         env=dict(job_env(), PYTHONPATH=""), capture_output=True, text=True, timeout=300)
    assert off.returncode == 0 and off.stdout.count("META") == 2, off.stdout + off.stderr
    assert "META MpiFinder" not in off.stdout
