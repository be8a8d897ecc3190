"""The end of a job never fails it, and a rank's child never joins it.

(a) Ranks that finish far apart (several MPIIMPORT_TIMEOUTs): the early rank
waits for the others at the end of the session, as MPI_Finalize would, and
every rank ends as it would plainly: its output, exit status 0, nothing from
mpiimport on stderr. In lock-step mode (rank 0 first, or last) and on a
packed image (frozen session), under the site hook as the Lmod module sets it
(MPIIMPORT=1 and the build tree's sitecustomize on PYTHONPATH).

(b) A rank's children inherit MPIIMPORT=1 and the launcher's variables but
are not ranks: a subprocess of sys.executable, a shell script that runs
python3 twice, multiprocessing pools with the spawn and forkserver start
methods, ProcessPoolExecutor with spawn. Each imports numpy plainly and
silently; the job's output equals a plain run's, and the ranks themselves
are still accelerated.

Every job has a timeout, so that a hang fails the test rather than blocks it."""
import os
import subprocess

from conftest import PYTHON, job_env, launch_prefix

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD") or os.path.dirname(os.environ["PYTHONPATH"].split(":")[0])
SITE_HOOK = os.path.join(BUILD, "hooks", "modulefile")   # the Lmod module's sitecustomize.py
TIMEOUT_S = "2"

IMBALANCE = """import os, sys, time, json, email.mime.text
rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("SLURM_PROCID", "0"))
import colorsys
time.sleep(float(os.environ.get("SLEEP_R" + rank, "0")))   # no import after this: see test_robustness
print("rank %s done %s %s" % (rank, email.mime.text.MIMEText("x")["Content-Type"],
                              colorsys.rgb_to_hls(0.2, 0.4, 0.4)[0]), flush=True)
print("INSTALLED rank %s %s" % (rank, type(sys.meta_path[0]).__name__ == "MpiFinder"))
"""

CHILDREN = """import concurrent.futures, multiprocessing, os, subprocess, sys

def work(x):
    import numpy
    return "%s %s %s" % (x, numpy.__name__, int(numpy.arange(x).sum()))

if __name__ == "__main__":
    rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("SLURM_PROCID", "0"))
    print("INSTALLED rank %s %s" % (rank, type(sys.meta_path[0]).__name__ == "MpiFinder"))
    out = []
    code = "import numpy; print('sub', numpy.__name__, int(numpy.ones(3).sum()))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    out.append("subprocess rc=%d %s|%s" % (p.returncode, p.stdout.strip(), p.stderr.strip()))
    script = "%s -c 'import numpy; print(1, numpy.__name__)'; %s -c 'import json; print(2, json.__name__)'" % (
        sys.executable, sys.executable)
    p = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)
    out.append("sh rc=%d %s|%s" % (p.returncode, " ".join(p.stdout.split()), p.stderr.strip()))
    for method in ("spawn", "forkserver"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            out.append("%s %s" % (method, pool.map(work, [3, 4])))
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        out.append("executor %s" % list(ex.map(work, [5, 6])))
    for line in out:
        print("rank %s %s" % (rank, line), flush=True)
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _env(extra):
    env = job_env(extra)
    env["PYTHONPATH"] = SITE_HOOK + ":" + os.environ.get("PYTHONPATH", "")
    return env


def _job(n, args, extra, timeout=150):
    return subprocess.run(launch_prefix(n) + [PYTHON] + args, env=_env(extra), capture_output=True,
                          text=True, timeout=timeout)


def _split(stdout):
    lines = sorted(stdout.splitlines())
    return [l for l in lines if not l.startswith("INSTALLED")], [l for l in lines if l.startswith("INSTALLED")]


def _same_as_plain(args, extra, n=2):
    """The job with the site hook on (MPIIMPORT=1) and without it: same rc 0,
    same output, nothing from mpiimport on stderr; the ranks were accelerated."""
    plain = _job(n, args, extra)
    assert plain.returncode == 0, plain.stderr[-3000:]
    p = _job(n, args, dict(extra, MPIIMPORT="1", MPIIMPORT_TIMEOUT=TIMEOUT_S))
    assert p.returncode == 0, "rc %d\n%s\n%s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    out, installed = _split(p.stdout)
    assert out == _split(plain.stdout)[0], (p.stdout, plain.stdout)
    assert installed == ["INSTALLED rank %d True" % r for r in range(n)], p.stdout + p.stderr[-3000:]
    assert "mpiimport" not in p.stderr, p.stderr[-3000:]
    return p


def test_rank_0_finishing_last_by_several_timeouts_ends_plainly(tmp_path):
    app = _write(tmp_path, "imbalance.py", IMBALANCE)
    _same_as_plain([app], {"SLEEP_R0": "7"})


def test_rank_0_finishing_first_by_several_timeouts_ends_plainly(tmp_path):
    app = _write(tmp_path, "imbalance.py", IMBALANCE)
    _same_as_plain([app], {"SLEEP_R1": "7"})


def test_ranks_far_apart_on_a_packed_image_end_plainly(tmp_path):
    """A frozen session (one message at the start): the end is the node
    barrier alone, which the early rank waits at."""
    app = _write(tmp_path, "imbalance.py", IMBALANCE)
    image = str(tmp_path / "app.mpii")
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", image, "--", app], env=job_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    for late in ("SLEEP_R0", "SLEEP_R1"):
        _same_as_plain([app], {late: "7", "MPIIMPORT_IMAGE": image})


def test_children_of_ranks_import_plainly_and_silently(tmp_path):
    app = _write(tmp_path, "children.py", CHILDREN)
    p = _same_as_plain([app], {})
    out, _ = _split(p.stdout)
    assert len(out) == 2 * 5, p.stdout
    for line in out:
        assert "rc=0" in line or "spawn" in line or "forkserver" in line or "executor" in line, line
    assert any("sub numpy 3|" in l for l in out) and any("1 numpy 2 json|" in l for l in out), out


def test_a_child_says_so_only_when_verbose(tmp_path):
    code = ("import subprocess, sys; p = subprocess.run([sys.executable, '-c', 'import json'], "
            "capture_output=True, text=True); print('CHILD', p.returncode, repr(p.stderr))")
    p = _job(2, ["-c", code], {"MPIIMPORT": "1", "MPIIMPORT_VERBOSE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [l for l in p.stdout.splitlines() if l.startswith("CHILD")]
    assert len(lines) == 2 and all(l.startswith("CHILD 0 ") and "is a child of the rank" in l
                                   for l in lines), p.stdout
