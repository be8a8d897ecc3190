"""Exactly as plain Python (issue 17): what a job sees through mpiimport is
what the same job sees without it, compared with a plain run. Here: an
importlib.metadata scan (entry points, distributions, packages) gives the
same results and the same stderr, on a first run and on the replay of a
recorded list; a directory listed under `mpiimport run` comes back in the
file system's own order, not sorted."""
import os
import subprocess
import sysconfig

import pytest

from conftest import PYTHON, job_env, run_mpi, run_plain

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LAUNCHER = os.path.join(BUILD, "bin", "mpiimport")

METADATA_JOB = r"""
import os, sys
if os.environ.get("JOB_INSTALL"):
    import mpiimport
    mpiimport.install()
import importlib.metadata as md
eps = md.entry_points()
groups = sorted(eps.groups) if hasattr(eps, "groups") else sorted(eps)
dists = [(d.metadata["Name"], d.version) for d in md.distributions()]
pkgs = list(md.packages_distributions().items())
# a digest: two ranks' long lines may come out of mpirun cut into each other
import hashlib
text = repr((groups, dists, pkgs))
sys.stdout.write("RESULT %d %s\n" % (len(dists), hashlib.sha256(text.encode()).hexdigest()))
"""


def _results(out):
    return [l for l in out.splitlines() if l.startswith("RESULT ")]


@pytest.mark.parametrize("mode", ["lockstep", "recorded"])
def test_a_metadata_scan_is_as_plain(tmp_path, mode):
    """Old code: an egg-info *file* (mpi4py's, sympy's: Debian's
    dist-packages) made rank 0's read of egg-info/entry_points.txt a gap:
    "message from rank 0 rejected" on rank 0, a fallback line on the others,
    "no answer in the replayed image" on replay."""
    job = tmp_path / "job.py"
    job.write_text(METADATA_JOB)
    plain = run_plain([str(job)])
    want = _results(plain.stdout)
    assert len(want) == 1, plain.stdout + plain.stderr
    env = {"JOB_INSTALL": "1"}
    runs = 1
    if mode == "recorded":
        cache = tmp_path / "cache"
        cache.mkdir(mode=0o700)
        env.update(MPIIMPORT_RECORD="1", MPIIMPORT_CACHE_DIR=str(cache))
        runs = 2  # the first records, the second replays the list
    for _ in range(runs):
        p = run_mpi(2, [str(job)], extra_env=env, timeout=300)
        assert _results(p.stdout) == want * 2, p.stdout[-3000:] + p.stderr[-3000:]
        # each rank's stderr is plain's (a DeprecationWarning of the job's own, say); nothing more
        assert "mpiimport" not in p.stderr, p.stderr
        assert sorted(p.stderr.splitlines()) == sorted(plain.stderr.splitlines() * 2), p.stderr


def test_a_listing_under_run_keeps_the_file_systems_order(tmp_path):
    """Old code: the image stored listings sorted by name, so os.listdir of a
    directory served by `mpiimport run` came back sorted."""
    if not os.path.exists(LAUNCHER):
        pytest.skip("mpiimport launcher not built")
    shared = tmp_path / "shared"
    d = shared / "site" / "many"
    d.mkdir(parents=True)
    for i in range(40):
        (d / ("n%02d.txt" % ((i * 17) % 40))).write_text("x")
    order = os.listdir(d)
    if order == sorted(order):
        pytest.skip("this file system lists in name order: nothing to tell apart")
    stage_dir = tmp_path / "shm"
    stage_dir.mkdir(mode=0o700)
    env = {"MPIIMPORT_STAGE_DIR": str(stage_dir)}
    image = tmp_path / "env.mpii"
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "--prefix", str(shared), "-o", str(image)],
                       env=job_env(env), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    code = ("import os; print('LIST', os.listdir(%r)); print('SCAN', [e.name for e in os.scandir(%r)])"
            % (str(d), str(d)))
    q = run_mpi(2, ["-c", "import os, sys; os.execv(sys.argv[1], sys.argv[1:])", LAUNCHER, "run", "--image",
                    str(image), "--", PYTHON, "-c", code], extra_env=env, timeout=300)
    assert q.stdout.count("LIST %r" % (order,)) == 2, q.stdout + q.stderr
    assert q.stdout.count("SCAN %r" % (order,)) == 2, q.stdout + q.stderr
    u = subprocess.run([LAUNCHER, "unstage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert u.returncode == 0, u.stderr


DEPRECATED = """import warnings
warnings.warn("depmod is deprecated", DeprecationWarning, stacklevel=2)
"""
RAISING = "X = 1\nraise ValueError('bad body')\n"
BODY_JOB = r"""
import os, sys, traceback
if os.environ.get("JOB_INSTALL"):
    import mpiimport
    mpiimport.install()
import depmod
try:
    import badmod
except ValueError:
    traceback.print_exc()
try:
    import nosuchmod_xyz
except ImportError:
    traceback.print_exc()
try:
    import synerr
except SyntaxError:
    traceback.print_exc()
try:
    import extraise
except ValueError:
    traceback.print_exc()
print("DONE", flush=True)
"""
SYNTAX_ERROR = "def f(:\n    pass\n"
EXT_RAISING = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
PyMODINIT_FUNC PyInit_extraise(void) { PyErr_SetString(PyExc_ValueError, "extension init failed"); return NULL; }
"""


@pytest.mark.parametrize("mode", ["lockstep", "recorded"])
def test_a_module_body_warns_and_raises_as_plain(tmp_path, mode):
    """Old code: _Served.exec_module (a frame of _hook.py) sat between
    importlib's frames and the module body: `warnings.warn(...,
    DeprecationWarning, stacklevel=2)` was attributed to _hook.py (and so
    dropped: the default filter shows it only for __main__), and a
    traceback from a module body showed importlib's and _hook.py's frames;
    a module that does not compile, or an extension whose init fails, showed
    _hook.py's frames and a chained "During handling of" a fallback."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "depmod.py").write_text(DEPRECATED)
    (site / "badmod.py").write_text(RAISING)
    (site / "synerr.py").write_text(SYNTAX_ERROR)
    (tmp_path / "extraise.c").write_text(EXT_RAISING)
    subprocess.run(["cc", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"], str(tmp_path / "extraise.c"),
                    "-o", str(site / ("extraise" + sysconfig.get_config_var("EXT_SUFFIX")))], check=True)
    job = tmp_path / "job.py"
    job.write_text(BODY_JOB)
    env = {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    plain = run_plain([str(job)], extra_env=env)
    assert "job.py\", line" in plain.stderr and "DeprecationWarning: depmod is deprecated" in plain.stderr
    assert "SyntaxError" in plain.stderr and "ValueError: extension init failed" in plain.stderr, plain.stderr
    env["JOB_INSTALL"] = "1"
    runs = 1
    if mode == "recorded":
        cache = tmp_path / "cache"
        cache.mkdir(mode=0o700)
        env.update(MPIIMPORT_RECORD="1", MPIIMPORT_CACHE_DIR=str(cache))
        runs = 2
    for _ in range(runs):
        p = run_mpi(2, [str(job)], extra_env=env, timeout=300)
        assert p.stdout.count("DONE") == 2, p.stdout + p.stderr
        assert sorted(p.stderr.splitlines()) == sorted(plain.stderr.splitlines() * 2), p.stderr


# ---- an image packed by another interpreter (item 10) ----

# The pack of "another Python": this one, with another bytecode magic number
# and cache tag in force while it packs (-B: no cache file is written with
# them), which is what a 3.12 or 3.13 pack of the same program holds: a label
# naming that interpreter, and code compiled for it.
FOREIGN_PACK = r"""
import sys, runpy
import importlib._bootstrap_external as bx
bx.MAGIC_NUMBER = (3999).to_bytes(2, "little") + b"\r\n"
sys.implementation.cache_tag = "cpython-399"
sys.argv = ["mpiimport"] + sys.argv[1:]
runpy.run_module("mpiimport", run_name="__main__", alter_sys=True)
"""

FOREIGN_JOB = r"""
import os, sys
if os.environ.get("JOB_INSTALL"):
    import mpiimport
    mpiimport.install()
import stackmod
print("VALUE", stackmod.value(), flush=True)
"""


@pytest.mark.parametrize("mode", ["packed", "staged"])
def test_an_image_of_another_interpreter_is_one_line_then_plain(tmp_path, mode):
    """Old code: an image packed by 3.11 and replayed by 3.12/3.13 gave a
    misleading "circular import" error (marshalled code of another version)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "stackmod.py").write_text("import json\ndef value():\n    return json.dumps({'a': 41 + 1})\n")
    job = tmp_path / "job.py"
    job.write_text(FOREIGN_JOB)
    env = {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MPIIMPORT_STAGE_DIR": str(tmp_path / "shm")}
    (tmp_path / "shm").mkdir(mode=0o700)
    plain = run_plain([str(job)], extra_env=env)
    assert plain.returncode == 0 and "VALUE" in plain.stdout, plain.stderr
    image = tmp_path / "app.mpii"
    packer = tmp_path / "foreign_pack.py"
    packer.write_text(FOREIGN_PACK)
    p = subprocess.run([PYTHON, "-B", str(packer), "pack", "-o", str(image), "--", str(job)],
                       env=job_env(env), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    show = subprocess.run([PYTHON, "-m", "mpiimport", "show", str(image)], env=job_env(env),
                          capture_output=True, text=True, timeout=120)
    assert "[cpython-399 9f0f0d0a]" in show.stdout, show.stdout + show.stderr
    env.update(JOB_INSTALL="1", MPIIMPORT_IMAGE=str(image))
    if mode == "staged":
        s = subprocess.run([PYTHON, "-m", "mpiimport", "stage", str(image)], env=job_env(env),
                           capture_output=True, text=True, timeout=300)
        assert s.returncode == 0, s.stdout + s.stderr
        env["MPIIMPORT_STAGED"] = "1"
    try:
        r = run_mpi(2, [str(job)], extra_env=env, timeout=300)
    finally:
        if mode == "staged":
            subprocess.run([PYTHON, "-m", "mpiimport", "unstage", str(image)], env=job_env(env),
                           capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(r.stdout.splitlines()) == sorted(plain.stdout.splitlines() * 2), r.stdout + r.stderr
    said = [l for l in r.stderr.splitlines() if "mpiimport" in l]
    assert said and all("another Python" in l for l in said), r.stderr
    assert len(said) == (1 if mode == "packed" else 2), r.stderr   # rank 0; in staged mode each rank
    assert "circular" not in r.stderr and "Traceback" not in r.stderr, r.stderr
