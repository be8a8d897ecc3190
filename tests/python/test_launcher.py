"""mpiimport-python: site initialisation done through mpiimport gives the
program exactly what a normal start gives: sys.path, the modules site and the
.pth files import, site.ENABLE_USER_SITE and USER_SITE."""
import os

from conftest import PYTHON, load_ranks, run_mpi, run_plain, MPIRUN, job_env, JOBS
import subprocess


def test_launcher_start_matches_a_normal_start(tmp_path):
    build = os.environ.get("MPIIMPORT_TEST_BUILD") or os.path.dirname(os.environ["PYTHONPATH"].split(":")[0])
    launcher = os.path.join(build, "bin", "mpiimport-python")
    probe = os.path.join(JOBS, "startup.py")
    normal, nosite, launched = (tmp_path / d for d in ("normal", "nosite", "launched"))
    for d in (normal, nosite, launched):
        d.mkdir()
    env = {"PYTHONPATH": ""}  # the launcher finds mpiimport itself
    run_mpi(2, [probe, str(normal)], extra_env=env)
    run_mpi(2, ["-S", probe, str(nosite)], extra_env=env)
    p = subprocess.run([MPIRUN, "--oversubscribe", "--allow-run-as-root", "-n", "2", launcher, probe,
                        str(launched)], env=job_env(dict(env, MPIIMPORT_TIMEOUT="60")),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    want = load_ranks(str(normal), 2)
    base = load_ranks(str(nosite), 2)
    got = load_ranks(str(launched), 2)
    for w, b, g in zip(want, base, got):
        assert g["path"] == w["path"]
        assert g["enable_user_site"] == w["enable_user_site"]
        assert g["user_site"] == w["user_site"]
        assert g["argv"][0] == w["argv"][0] and g["main"] == w["main"]
        from_site = set(w["modules"]) - set(b["modules"])
        assert from_site, "site imported nothing?"
        assert from_site <= set(g["modules"]), sorted(from_site - set(g["modules"]))
    # site initialisation was served by rank 0
    assert got[0]["stats"]["fs_calls"] > 0
    assert got[1]["stats"]["fs_calls"] == 0 and got[1]["stats"]["fallbacks"] == 0
