"""The stack rule: the software stack is served as a snapshot, while the
program's own directory and the working directory are live (data the job
writes), read plainly and re-checked as Python does. Files and modules that
one rank writes next to the script at run time are found by every rank, as
plainly: under install() (lock-step, a replayed recorded list, a packed
image) and under `mpiimport run`. Each mode's output is compared with a
plain run of the same job."""
import os
import subprocess

import pytest

from conftest import PYTHON, job_env, launch_prefix, run_mpi

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LAUNCHER = os.path.join(BUILD, "bin", "mpiimport")

APP = r"""
import os, sys, time
if os.environ.get("LIVE_INSTALL") == "1":
    import mpiimport
    mpiimport.install()

def rank_size():
    for r, n in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if r in os.environ:
            return int(os.environ[r]), int(os.environ[n])
    return 0, 1

rank, size = rank_size()
here = os.path.dirname(os.path.abspath(__file__))
import live_helper                      # the program directory's listing is taken now
import json                             # and the stack's
def write(name, text):                  # whole, or not at all, for the other rank
    with open(os.path.join(here, ".part-" + name), "w") as f:
        f.write(text)
    os.rename(os.path.join(here, ".part-" + name), os.path.join(here, name))

write("out_%d.txt" % rank, "from rank %d\n" % rank)
write("made_%d.py" % rank, "VALUE = %d\n" % (100 + rank))
names = ["out_%d.txt" % r for r in range(size)] + ["made_%d.py" % r for r in range(size)]
deadline = time.time() + float(os.environ.get("LIVE_WAIT", "20"))
while not all(os.path.exists(os.path.join(here, n)) for n in names) and time.time() < deadline:
    time.sleep(0.02)
texts = []
for r in range(size):
    try:
        with open(os.path.join(here, "out_%d.txt" % r)) as f:
            texts.append(f.read().strip())
    except OSError as e:
        texts.append("error %s" % e.strerror)
other = (rank + 1) % size
try:
    value = __import__("made_%d" % other).VALUE   # no invalidate_caches(), as plainly
except ImportError as e:
    value = "ImportError %s" % e
listed = sorted(n for n in os.listdir(here) if n.startswith(("out_", "made_")))
print("rank %d: helper %s, files %s, module %s, listed %s"
      % (rank, live_helper.NAME, json.dumps(texts), value, listed), flush=True)
if os.environ.get("LIVE_STATS") == "1":
    sys.stderr.write("STATS replayed=%s\n" % mpiimport.stats()["replayed"])
"""


def fresh_program(tmp_path, name):
    prog = tmp_path / name
    prog.mkdir()
    (prog / "app.py").write_text(APP)
    (prog / "live_helper.py").write_text("NAME = 'helper'\n")
    return prog


def clean(prog):
    for n in os.listdir(prog):
        if n.startswith(("out_", "made_")):
            os.unlink(prog / n)


def lines(p):
    return sorted(line for line in p.stdout.splitlines() if line.startswith("rank "))


def mpi_lines(tmp_path, prog, env, n=2, cmd=None):
    clean(prog)
    p = run_mpi(n, cmd or [str(prog / "app.py")], extra_env=env, timeout=300)
    return lines(p), p


@pytest.fixture
def plain(tmp_path):
    prog = fresh_program(tmp_path, "plainprog")
    out, _ = mpi_lines(tmp_path, prog, {})
    assert len(out) == 2 and "ImportError" not in " ".join(out) and "error" not in " ".join(out), out
    # what every mode must print: the program's paths differ only by directory
    return out


def mpiimport_lines(p):
    return [line for line in p.stderr.splitlines() if line.startswith("mpiimport")]


def test_install_sees_what_ranks_write_next_to_the_script(tmp_path, plain):
    prog = fresh_program(tmp_path, "plainprog2")
    # lock-step
    out, p = mpi_lines(tmp_path, prog, {"LIVE_INSTALL": "1", "MPIIMPORT_TIMEOUT": "5"})
    assert out == plain, (out, p.stderr)
    assert mpiimport_lines(p) == [], p.stderr
    # a recorded list, then its replay (every rank frozen on rank 0's facts)
    cache = tmp_path / "cache"
    env = {"LIVE_INSTALL": "1", "MPIIMPORT_TIMEOUT": "5", "MPIIMPORT_RECORD": "1",
           "MPIIMPORT_CACHE_DIR": str(cache), "LIVE_STATS": "1"}
    for replayed in ("False", "True"):
        out, p = mpi_lines(tmp_path, prog, env)
        assert out == plain, (out, p.stderr)
        assert mpiimport_lines(p) == [], p.stderr
        assert p.stderr.count("STATS replayed=" + replayed) == 2, p.stderr


def test_packed_image_leaves_the_program_directory_live(tmp_path, plain):
    prog = fresh_program(tmp_path, "plainprog2")
    image = tmp_path / "app.mpii"
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(image), "--", str(prog / "app.py")],
                       env=job_env({"LIVE_WAIT": "0"}), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    shown = subprocess.run([PYTHON, "-m", "mpiimport", "show", str(image), "--all"], env=job_env(),
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    entries = shown.stdout.split("\n", 1)[1]   # (the first line names the program)
    assert str(prog) not in entries, "the program's directory was packed"
    assert "json" in shown.stdout
    # the image replayed by rank 0 at install()
    out, p = mpi_lines(tmp_path, prog, {"LIVE_INSTALL": "1", "MPIIMPORT_TIMEOUT": "5",
                                        "MPIIMPORT_IMAGE": str(image)})
    assert out == plain, (out, p.stderr)
    assert mpiimport_lines(p) == [], p.stderr


def test_run_sees_what_ranks_write_next_to_the_script(tmp_path, plain):
    if not os.path.exists(LAUNCHER):
        pytest.skip("mpiimport launcher not built")
    prog = fresh_program(tmp_path, "plainprog2")
    shm = tmp_path / "shm"
    shm.mkdir(mode=0o700)
    env = {"MPIIMPORT_STAGE_DIR": str(shm), "LIVE_INSTALL": "1", "MPIIMPORT_TIMEOUT": "5"}
    image = tmp_path / "app.mpii"
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(image), "--", str(prog / "app.py")],
                       env=job_env(dict(env, LIVE_WAIT="0")), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True,
                       timeout=300)
    assert s.returncode == 0, s.stdout + s.stderr
    try:
        clean(prog)
        cmd = launch_prefix(2) + [LAUNCHER, "run", "--image", str(image), "--", PYTHON, str(prog / "app.py")]
        r = subprocess.run(cmd, env=job_env(env), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert lines(r) == plain, (lines(r), r.stderr)
        assert mpiimport_lines(r) == [], r.stderr
    finally:
        subprocess.run([LAUNCHER, "unstage", str(image)], env=job_env(env), capture_output=True, timeout=120)
