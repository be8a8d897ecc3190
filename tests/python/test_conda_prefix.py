"""From a conda-style prefix: an environment with its own interpreter (a
copied binary, not a link), its own standard library and headers, and no
pyvenv.cfg (conda, a relocated Spack Python). cmake --install with that
interpreter and prefix puts the package and the site hook into a site
directory that interpreter reads (site.getsitepackages(); Debian's build:
PREFIX/lib/python3.X/dist-packages), and under mpirun with
MPIIMPORT=1 the prefix's python is accelerated with no other setting. One
build (the mpi transport's run; the install does not depend on it)."""
import os
import shutil
import subprocess
import sysconfig

import pytest

from conftest import PYTHON, assert_site_hook_off, job_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_prefix(prefix):
    """A Python of its own in prefix, from this machine's (binary, stdlib, headers)."""
    version = sysconfig.get_python_version()
    (prefix / "bin").mkdir(parents=True)
    shutil.copy2(os.path.realpath(PYTHON), prefix / "bin" / ("python" + version))
    os.symlink("python" + version, prefix / "bin" / "python3")
    shutil.copytree(sysconfig.get_path("stdlib"), prefix / "lib" / ("python" + version), symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "test", "dist-packages", "site-packages"))
    shutil.copytree(sysconfig.get_path("include"), prefix / "include" / ("python" + version))
    return str(prefix / "bin" / "python3")


def test_install_into_a_conda_style_prefix_and_its_site_hook(tmp_path):
    if os.environ.get("MPIIMPORT_TRANSPORT", "mpi") != "mpi":
        pytest.skip("one build is enough: runs as python.test_conda_prefix.mpi")
    prefix, build = tmp_path / "env", tmp_path / "build"
    py = make_prefix(prefix)
    info = subprocess.run([py, "-c", "import sys, site; print(sys.prefix, *site.getsitepackages())"],
                          env=dict(job_env(), PYTHONPATH=""), capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    got_prefix, *sites = info.stdout.split()
    assert got_prefix == str(prefix), info.stdout          # its own prefix, found from its own place
    for cmd in (["cmake", "-S", ROOT, "-B", str(build), "-DPython3_EXECUTABLE=" + py, "-DTRANSPORT=mpi",
                 "-DMPIIMPORT_BUILD_TESTS=OFF", "-DCMAKE_INSTALL_PREFIX=" + str(prefix)],
                ["cmake", "--build", str(build), "-j2"],
                ["cmake", "--install", str(build)]):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, (cmd, p.stdout[-2000:], p.stderr[-2000:])
    where = [d for d in sites if os.path.isfile(os.path.join(d, "mpiimport.pth"))]
    assert len(where) == 1 and os.path.isfile(os.path.join(where[0], "mpiimport", "_hook.py")), sites
    code = ("import sys, json, email.mime.text, mpiimport; print('ACTIVE', type(sys.meta_path[0]).__name__, "
            "mpiimport.__file__.startswith(sys.prefix), sys.prefix == %r, mpiimport.stats()['fallbacks'])"
            % str(prefix))
    p = subprocess.run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", "2", py, "-c", code],
                       env=dict(job_env({"MPIIMPORT": "1"}), PYTHONPATH=""), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("ACTIVE MpiFinder True True 0") == 2, p.stdout + p.stderr
    assert_site_hook_off(py)   # without MPIIMPORT the prefix's python is plain
