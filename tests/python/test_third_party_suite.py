"""A test suite nobody here wrote, on every rank, in every mode (issue 17).

numpy's own tests as Debian ships them (python3-numpy, with python3-pytest
and python3-hypothesis for numpy's conftest): deprecation warnings and their
stacklevel (test_deprecations), numpy reloaded and a child interpreter
pickling across a reload (test_reloading), utilities that print and warn
(lib/test_utils). pytest runs in-process on each of 2 ranks, with its
assertion-rewriting import hook in front of mpiimport's. Each mode's per-rank
outcome (every test id with its outcome, and pytest's exit status) must equal
a plain run's, and nothing from mpiimport may reach stderr:

  site hook  MPIIMPORT=1 as the Lmod module sets it: a first (lock-step) run,
             then a second that replays the recorded list;
  mpiimport-python;
  packed     `pack -- suite.py`, then MPIIMPORT_IMAGE with install();
  staged     the same image staged, MPIIMPORT_STAGED=1;
  run        `mpiimport run --image` of the same image (the whole process)."""
import os
import re
import subprocess

import numpy
import pytest

from conftest import PYTHON, job_env, launch_prefix

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD") or os.path.dirname(os.environ["PYTHONPATH"].split(":")[0])
SITE_HOOK = os.path.join(BUILD, "hooks", "modulefile")   # the Lmod module's sitecustomize.py
LAUNCHER = os.path.join(BUILD, "bin", "mpiimport")
MPIIMPORT_PYTHON = os.path.join(BUILD, "bin", "mpiimport-python")
# (numpy 2 moved numpy.core to numpy._core)
MODULES = ["numpy._core.tests.test_deprecations" if os.path.isdir(
               os.path.join(os.path.dirname(numpy.__file__), "_core", "tests"))
           else "numpy.core.tests.test_deprecations", "numpy.tests.test_reloading", "numpy.lib.tests.test_utils"]

SUITE = r"""
import hashlib, os, sys
rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("SLURM_PROCID", "0"))
if os.environ.get("SUITE_INSTALL") == "1":
    import mpiimport
    mpiimport.install()
import pytest

class Outcomes:
    def __init__(self):
        self.seen = {}
    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            self.seen[report.nodeid] = report.outcome

o = Outcomes()
rc = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", "-o", "addopts=", "--pyargs"] + sys.argv[1:],
                 plugins=[o])
counts = {}
for outcome in o.seen.values():
    counts[outcome] = counts.get(outcome, 0) + 1
# one short line per rank (mpirun may cut long ones from two ranks into each
# other); every test id with its outcome in a file of the rank's own
listing = "\n".join("%s %s" % kv for kv in sorted(o.seen.items()))
with open("outcomes.%s.%s.txt" % (os.environ.get("SUITE_MODE", "plain"), rank), "w") as f:
    f.write(listing)
print("SUITE rank %s rc %d %s %s" % (rank, int(rc), sorted(counts.items()),
                                     hashlib.sha256(listing.encode()).hexdigest()[:16]), flush=True)
"""


def _suite_lines(stdout):
    # (anywhere in a line: another rank's pytest output may end without a newline)
    return sorted(re.findall(r"SUITE rank [0-9]+ rc [0-9]+ \[.*?\] [0-9a-f]{16}", stdout))


def _stderr_lines(stderr):
    # pytest's own timings aside, stderr must be plain's
    return sorted(re.sub(r"[0-9.]+s\b", "Ns", l) for l in stderr.splitlines())


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    import importlib.util
    assert importlib.util.find_spec("hypothesis"), \
        "numpy's conftest needs hypothesis: python3-hypothesis (scripts/install-deps.sh installs it)"
    tmp = tmp_path_factory.mktemp("suite")
    script = tmp / "suite.py"
    script.write_text(SUITE)
    shm = tmp / "shm"
    shm.mkdir(mode=0o700)
    cache = tmp / "cache"
    cache.mkdir(mode=0o700)
    # nothing written into Debian's tree by any run, plain or not
    base = {"PYTHONDONTWRITEBYTECODE": "1", "MPIIMPORT_STAGE_DIR": str(shm), "HOME": str(tmp)}
    plain = _job(tmp, [PYTHON, str(script)] + MODULES, base)
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]
    want = _suite_lines(plain.stdout)
    assert len(want) == 2 and "('passed', " in want[0], plain.stdout[-3000:]
    return tmp, script, base, cache, plain, want


def _job(tmp, cmd, env, n=2):
    e = job_env(env)
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e.update(env)
    return subprocess.run(launch_prefix(n) + cmd, env=e, cwd=str(tmp), capture_output=True, text=True,
                          timeout=600)


def _as_plain(p, suite):
    tmp, script, base, cache, plain, want = suite
    assert p.returncode == 0, "rc %d\n%s\n%s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    assert _suite_lines(p.stdout) == want, (p.stdout[-3000:], p.stderr[-3000:])
    assert "mpiimport" not in p.stderr, p.stderr[-3000:]
    assert _stderr_lines(p.stderr) == _stderr_lines(plain.stderr), p.stderr[-3000:]


def test_site_hook_first_run_and_replay(suite):
    tmp, script, base, cache, plain, want = suite
    env = dict(base, MPIIMPORT="1", MPIIMPORT_RECORD="1", MPIIMPORT_CACHE_DIR=str(cache),
               PYTHONPATH=SITE_HOOK + ":" + os.environ.get("PYTHONPATH", ""))
    for _ in range(2):   # records, then replays
        _as_plain(_job(tmp, [PYTHON, str(script)] + MODULES, env), suite)
    assert [n for n in os.listdir(str(cache)) if n.endswith(".mpiilist")], "nothing was recorded"


def test_mpiimport_python(suite):
    tmp, script, base, cache, plain, want = suite
    _as_plain(_job(tmp, [MPIIMPORT_PYTHON, str(script)] + MODULES, base), suite)


@pytest.fixture(scope="module")
def image(suite):
    tmp, script, base, cache, plain, want = suite
    img = tmp / "suite.mpii"
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(img), "--", str(script)] + MODULES,
                       env=dict(job_env(base), **base), cwd=str(tmp), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return img


def test_packed_image(suite, image):
    tmp, script, base, cache, plain, want = suite
    _as_plain(_job(tmp, [PYTHON, str(script)] + MODULES,
                   dict(base, SUITE_INSTALL="1", MPIIMPORT_IMAGE=str(image))), suite)


@pytest.mark.parametrize("how", ["staged", "run"])
def test_staged_image(suite, image, how):
    tmp, script, base, cache, plain, want = suite
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=dict(job_env(base), **base),
                       capture_output=True, text=True, timeout=300)
    assert s.returncode == 0, s.stdout + s.stderr
    try:
        if how == "staged":
            p = _job(tmp, [PYTHON, str(script)] + MODULES,
                     dict(base, SUITE_INSTALL="1", MPIIMPORT_IMAGE=str(image), MPIIMPORT_STAGED="1"))
        else:
            p = _job(tmp, [LAUNCHER, "run", "--image", str(image), "--", PYTHON, str(script)] + MODULES, base)
        _as_plain(p, suite)
    finally:
        subprocess.run([LAUNCHER, "unstage", str(image)], env=dict(job_env(base), **base),
                       capture_output=True, timeout=120)
