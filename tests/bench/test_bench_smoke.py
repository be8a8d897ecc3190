"""Smoke test of the benchmark pipeline (tests/bench/): emufs mounts, a 2-rank
cell runs plain and with mpiimport, emufs's counters are plausible, the report
is written, and nothing stays mounted — also when a run fails.

    MPIIMPORT_TEST_BUILD=BUILD EMUFS=BUILD/tests/bench/emufs \
        /usr/bin/python3 -m pytest -q tests/bench/test_bench_smoke.py

Skipped (not failed) when FUSE, fusermount3, mpirun or the build is missing.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUN_BENCH = os.path.join(HERE, "run_bench.py")
BUILD = os.path.abspath(os.environ.get("MPIIMPORT_TEST_BUILD", os.path.join(ROOT, "build")))


def find_emufs():
    cands = [os.environ.get("EMUFS"), os.path.join(BUILD, "tests", "bench", "emufs"),
             os.path.join(BUILD, "bench", "emufs")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    return None


EMUFS = find_emufs()
pytestmark = [
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse"),
    pytest.mark.skipif(not shutil.which("fusermount3"), reason="no fusermount3"),
    pytest.mark.skipif(not shutil.which("mpirun"), reason="no mpirun"),
    pytest.mark.skipif(EMUFS is None, reason="emufs not built (set EMUFS or MPIIMPORT_TEST_BUILD)"),
    pytest.mark.skipif(not os.path.isdir(os.path.join(BUILD, "python", "mpiimport")),
                       reason="no mpiimport build in %s" % BUILD),
]


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


@pytest.fixture
def workdir(tmp_path):
    """A work directory that is checked (and cleaned up) for leftover mounts."""
    d = str(tmp_path)
    yield d
    left = mounts_under(d)
    for m in left:
        subprocess.run(["fusermount3", "-uz", m], check=False)
    assert not left, "mounts left behind: %s" % left


def env():
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    e.pop("MPIIMPORT_TRANSPORT", None)
    return e


def run_bench(workdir, *extra, timeout=600):
    out = os.path.join(workdir, "report", "bench.md")
    cmd = [sys.executable, RUN_BENCH, "--build", BUILD, "--emufs", EMUFS, "--workdir", workdir,
           "--out", out] + list(extra)
    p = subprocess.run(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    return p, out


def test_emufs_usage_and_refusals(tmp_path):
    p = subprocess.run([EMUFS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 2 and "usage: emufs" in p.stderr
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    p = subprocess.run([EMUFS, "/usr", str(full)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode != 0 and "not empty" in p.stderr
    assert not mounts_under(str(tmp_path))
    p = subprocess.run([EMUFS, "--meta-us", "-3", "/usr", str(tmp_path / "nowhere")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 2


def test_two_ranks_plain_vs_mpiimport(workdir):
    # --ranks-per-node 2: both ranks on one (simulated) node, rank 1 its non-leader; the
    # option reaches the mpiimport modes as MPIIMPORT_RANKS_PER_NODE.
    p, out = run_bench(workdir, "--ranks", "2", "--ranks-per-node", "2", "--workloads", "numpy",
                       "--modes", "plain,mpiimport,replay", "--repeat", "1", "--no-wall", "--meta-us", "0",
                       "--read-mbps", "0")
    assert p.returncode == 0, p.stdout[-4000:]
    with open(out) as f:
        text = f.read()
    assert "## Headline (measured)" in text and "Extrapolation to 16,384 ranks" in text
    # The report shows the install window (import mpiimport + install()) beside start-up.
    assert "| start-up | install r0 | install other max |" in text, text[:3000]
    assert "server operations between the end of start-up and the end of `install()`" in text
    # and a memory section: private memory per rank against plain's (non-leaders, other
    # leaders, rank 0), bytes received per leader / non-leader, /dev/shm per node
    assert "## Memory (measured)" in text and "GiB of private memory per node" in text
    assert ("| non-leader private MiB (× image) | other leaders' private MiB (× image) | rank 0 private "
            "MiB (× image) | received per leader MiB | received per non-leader MiB | /dev/shm per node "
            "MiB (× image) |") in text, text
    mem = [line.split("|")[1:-1] for line in text.split("## Memory (measured)")[1].split("## ")[0].splitlines()
           if line.startswith("| numpy |")]
    assert mem and all(len(r) == 10 for r in mem), mem
    for r in mem:                                         # rank 1, the non-leader, received nothing
        assert r[7].strip() == "-" and r[8].strip() == "0.0" and float(r[3]) > 1, r
    with open(os.path.splitext(out)[0] + ".json") as f:
        data = json.load(f)
    assert data["meta"]["ranks_per_node"] == 2
    cells = data["cells"]
    plain = [c for c in cells if c["mode"] == "plain"]
    mpi = [c for c in cells if c["mode"] != "plain"]
    assert len(plain) == 1 and mpi, [c["mode"] for c in cells]
    pr = plain[0]["runs"][0]
    p_ranks = pr["ranks"]
    assert sorted(p_ranks) == ["0", "1"]
    p_rank = p_ranks["1"]["meta_ops"]
    startup = pr["startup"]["1"]
    # A plain rank stats, opens and reads numpy through the server.
    assert p_rank > 2000 and p_ranks["1"]["open"] > 50 and p_ranks["1"]["read_bytes"] > 1 << 20
    assert 100 < startup < p_rank
    assert p_ranks["0"]["meta_ops"] == p_rank            # plain ranks are alike
    # Plain's install window is empty (nothing runs between the two marks): the
    # marks themselves cost nothing, and plain's and mpiimport's windows line up.
    assert sorted(pr["install_window"]) == ["0", "1"]
    for k in ("0", "1"):
        assert pr["install_window"][k]["meta_ops"] == 0, pr["install_window"][k]
    p_after = p_rank - startup                            # plain: operations after start-up
    for c in mpi:
        r = c["runs"][0]
        m_ranks = r["ranks"]
        win = r["install_window"]
        assert sorted(m_ranks) == ["0", "1"] and sorted(win) == ["0", "1"]
        # The non-root rank makes far fewer server operations than a plain rank:
        # the interpreter's start-up (the same as plain's), nothing in the install
        # window, and almost nothing after.
        assert m_ranks["1"]["meta_ops"] < 0.25 * p_rank, (c["transport"], m_ranks["1"], p_rank)
        assert r["startup"]["1"] == startup
        m_after = m_ranks["1"]["meta_ops"] - r["startup"]["1"] - win["1"]["meta_ops"]
        assert 0 <= m_after < 0.02 * p_after, (c["mode"], m_after, p_after)
        # Rank 0 does the reading, and not more than a plain rank's metadata work.
        assert 0 < m_ranks["0"]["meta_ops"] <= 1.2 * p_rank
        assert m_ranks["0"]["read_bytes"] > 1 << 20
        assert r["totals"]["meta_ops"] < pr["totals"]["meta_ops"]
        # Node image: rank 0 sends the bytes to the leaders only (none but itself here); the
        # non-leader takes the facts from the node's index (bcast_bytes) and receives 0 bytes
        # over the transport; the node's stage in /dev/shm holds the files.
        assert r["received_bytes"] == {"0": 0, "1": 0}, (c["mode"], r["received_bytes"])
        assert r["bcast_bytes"]["0"] > 1 << 20 and r["bcast_bytes"]["1"] > 0, r["bcast_bytes"]
        assert r["stage_bytes"]["1"] > 1 << 20, r["stage_bytes"]
        # Importing the mpiimport package and calling install() uses only built-in and
        # frozen modules: a non-root rank touches the shared file system 0 times there.
        assert win["1"]["meta_ops"] == 0, ("%s/%s: rank 1 made %d server operations in the install "
                                           "window (rank 0: %d): %s" % (
                                               c["mode"], c["transport"], win["1"]["meta_ops"],
                                               win["0"]["meta_ops"], win["1"]))


def test_unmounts_after_a_failed_run(workdir):
    # mpirun refuses an unknown option: the run fails after the mount is up.
    p, _ = run_bench(workdir, "--ranks", "2", "--workloads", "numpy", "--modes", "plain", "--repeat", "1",
                     "--no-wall", "--meta-us", "0", "--mpirun-args=--no-such-mpirun-option", timeout=300)
    assert p.returncode == 1, p.stdout[-4000:]
    assert "FAILED" in p.stdout and "failed" in p.stdout
    assert not mounts_under(workdir)


def test_startup_bench_two_ranks(workdir):
    """startup_bench.py end to end at 2 ranks: every cell measured, the packed image
    replayed, the site hook really active when asked for (checked inside), the
    report written, nothing left mounted (the fixture)."""
    out = os.path.join(workdir, "startup.md")
    cmd = [sys.executable, os.path.join(HERE, "startup_bench.py"), "--build", BUILD, "--emufs", EMUFS,
           "--workdir", workdir, "--ranks", "2", "--repeat", "1", "--pass-runs", "3", "--meta-us", "0",
           "--out", out]
    p = subprocess.run(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-4000:]
    with open(out) as f:
        text = f.read()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in ("local 1", "local 2", "emufs 2 plain", "emufs 2 image",
                                             "no hook", "hook installed"):
            rows[cells[0]] = cells
    assert sorted(rows) == sorted(["local 1", "local 2", "emufs 2 plain", "emufs 2 image", "no hook",
                                   "hook installed"]), text
    for k in ("local 1", "local 2", "emufs 2 plain", "emufs 2 image"):
        assert float(rows[k][1]) > 0.0, rows[k]
    assert float(rows["local 1"][3]) == 1.0
    assert int(rows["no hook"][1]) == 3 and float(rows["hook installed"][2]) > 0.0
