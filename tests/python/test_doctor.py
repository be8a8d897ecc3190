"""python3 -m mpiimport doctor: every check's verdict, the exit status scripts
test, --json, and the self-test under mpirun."""
import json
import os
import subprocess

from conftest import PYTHON, job_env, run_mpi


def doctor(extra_env=None, args=()):
    return subprocess.run([PYTHON, "-m", "mpiimport", "doctor"] + list(args), env=job_env(extra_env),
                          capture_output=True, text=True, timeout=120)


def verdicts(stdout):
    out = {}
    for line in stdout.splitlines():
        name, _, rest = line.partition(": [")
        if rest:
            out[name.strip()] = rest.split("]")[0]
    return out


def test_outside_a_launcher_everything_is_checked_and_it_passes(tmp_path):
    p = doctor({"MPIIMPORT_CACHE_DIR": str(tmp_path / "cache")})
    assert p.returncode == 0, p.stdout + p.stderr
    v = verdicts(p.stdout)
    for name in ("mpiimport", "launcher", "settings", "transports", "nodes", "stage directory",
                 "cache directory", "site hook", "shared prefixes"):
        assert name in v, (name, p.stdout)
    assert v["launcher"] == "warn" and "self-test" not in v
    assert "will work here" in p.stdout
    j = doctor({"MPIIMPORT_CACHE_DIR": str(tmp_path / "cache")}, ["--json"])
    data = json.loads(j.stdout)
    assert j.returncode == 0 and data["ok"] is True and data["rank"] == 0
    assert {c["name"] for c in data["checks"]} >= {"transports", "stage directory"}
    assert "mpi" in next(c for c in data["checks"] if c["name"] == "transports")["compiled"]


def test_what_is_wrong_fails_and_says_what_to_do(tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    p = doctor({"MPIIMPORT_STAGE_DIR": str(afile), "MPIIMPORT_CACHE_DIR": str(cache),
                "MPIIMPORT_TIMEOUT": "soon", "MPIIMPORT_RECORD": "1"})
    assert p.returncode == 1, p.stdout
    v = verdicts(p.stdout)
    assert v["stage directory"] == "FAIL" and v["cache directory"] == "FAIL" and v["settings"] == "FAIL"
    assert "MPIIMPORT_STAGE_DIR" in p.stdout and "chmod go-w" in p.stdout and "MPIIMPORT_TIMEOUT='soon'" in p.stdout
    assert "3 check(s) failed" in p.stdout


def test_srun_without_pmix_is_a_failure_naming_the_fix():
    env = {k: v for k, v in job_env().items() if not k.startswith(("PMIX_", "OMPI_", "PMI_"))}
    env.update(SLURM_PROCID="0", SLURM_NTASKS="4")
    p = subprocess.run([PYTHON, "-m", "mpiimport", "doctor"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1 and verdicts(p.stdout)["launcher"] == "FAIL"
    assert "srun --mpi=pmix" in p.stdout


def test_self_test_under_mpirun(tmp_path):
    p = run_mpi(2, ["-m", "mpiimport", "doctor"], extra_env={"MPIIMPORT_CACHE_DIR": str(tmp_path / "c")})
    v = verdicts(p.stdout)
    assert v["launcher"] == "ok" and v["self-test"] == "ok", p.stdout + p.stderr
    assert "rank 0 of 2" in p.stdout and "staged and loaded from the stage" in p.stdout
    assert "rank 1" not in p.stdout      # other ranks print only what failed there
