"""From a virtual environment (python3 -m venv --system-site-packages):
cmake --install with the environment's interpreter and prefix puts the
package and the site hook into its site-packages, and under mpirun with
MPIIMPORT=1 the environment's python3 is accelerated with no other setting."""
import os
import subprocess

from conftest import PYTHON, assert_site_hook_off, job_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_install_into_a_venv_and_its_site_hook(tmp_path):
    venv, build = tmp_path / "venv", tmp_path / "build"
    subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    transport = os.environ.get("MPIIMPORT_TRANSPORT", "mpi")
    for cmd in (["cmake", "-S", ROOT, "-B", str(build), "-DPython3_EXECUTABLE=" + py,
                 "-DTRANSPORT=" + transport, "-DMPIIMPORT_BUILD_TESTS=OFF",
                 "-DCMAKE_INSTALL_PREFIX=" + str(venv)],
                ["cmake", "--build", str(build), "-j2"],
                ["cmake", "--install", str(build)]):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, (cmd, p.stdout[-2000:], p.stderr[-2000:])
    site = venv / "lib" / "python3.11" / "site-packages"
    assert (site / "mpiimport.pth").is_file() and (site / "mpiimport" / "_hook.py").is_file()
    code = ("import sys, numpy, mpiimport; print('ACTIVE', type(sys.meta_path[0]).__name__, "
            "mpiimport.__file__.startswith(sys.prefix), numpy.__name__, mpiimport.stats()['fallbacks'])")
    env = {"MPIIMPORT": "1", "PYTHONPATH": ""}
    p = subprocess.run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", "2", py, "-c", code],
                       env=dict(job_env(env), PYTHONPATH=""), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("ACTIVE MpiFinder True numpy 0") == 2, p.stdout + p.stderr
    assert_site_hook_off(py)   # without MPIIMPORT the environment's python3 is plain
