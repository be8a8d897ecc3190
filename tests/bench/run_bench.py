#!/usr/bin/python3
"""Scaling benchmark: plain Python imports vs mpiimport on an emulated shared
file system (tests/bench/emufs.c: one FUSE thread serving every request, a
fixed service time per metadata operation, kernel caching off).

    /usr/bin/python3 tests/bench/run_bench.py --build BUILD [options]
    (scripts/bench.sh builds everything first, then runs this)

What it does:
  * mounts SRC (default /usr) through emufs at a fresh empty directory MNT and
    runs `mpirun -n R /usr/bin/python3 JOB` with PYTHONHOME=MNT, so the
    interpreter's standard library, lib-dynload and dist-packages (numpy,
    scipy, mpi4py) are all read through the emulated server; the mpiimport
    package stays on local disk (BUILD/python on PYTHONPATH);
    MPIIMPORT_SHARED_PREFIXES=MNT;
  * every rank first looks up MNT/.emufs-mark: emufs keeps each rank's counts
    before that lookup apart (the interpreter's own start-up, which no import
    hook can change), then (modes other than plain) `import mpiimport;
    mpiimport.install()`, then looks up MNT/.emufs-mark2 (in plain mode too,
    at the same point): emufs keeps the counts between the two lookups apart
    (the install window), then the workload's imports, timed;
  * per cell (workload x mode x ranks), --repeat runs: server operations by
    type, by rank 0 and by the busiest other rank, in all and in the install
    window, bytes read, wall time from
    launch until the last rank is past its imports (median), and import time
    per rank (max and median);
  * a main pass at --meta-us (default 50) over the whole matrix, then a wall
    pass at --wall-meta-us (default 200) with few cells (--wall-ranks,
    --wall-workloads) for the wall-time target;
  * --whole-stack: the interpreter too is executed from the mount
    (MNT/bin/python3.X) and the ranks' shared libraries are found through
    LD_LIBRARY_PATH=MNT/lib/<multiarch> (mpirun -x, as an environment module
    sets it: libc, OpenBLAS, libmpi, ... come from the mount); the images of
    modes image, staged and run are packed with the whole process recorded;
  * --ranks-per-node N: MPIIMPORT_RANKS_PER_NODE=N in every mpiimport mode, so
    the ranks form simulated nodes of N consecutive ranks (leaders 0, N, 2N, ...);
    the memory section tells non-leaders, the other leaders and rank 0 apart;
  * writes the report (--out, default docs/bench.md), a plot (--plot, PNG,
    needs matplotlib) and the raw results (--json).

The mount is always unmounted (fusermount3 -u, lazily if busy) on the way
out, also on errors and Ctrl-C. Exit status: 0 done, 1 a run failed, 2 setup
problem (missing emufs, mpirun, build, FUSE).
"""
import argparse
import ast
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"

WORKLOADS = {
    "numpy": "import numpy",
    "scipy": "import numpy, scipy.linalg, scipy.sparse, scipy.optimize, scipy.integrate",
    "mpi4py": "from mpi4py import MPI",
    "numpy+mpi4py": "import numpy\nfrom mpi4py import MPI",
    # issue 10's measurement: MPI initialised in every mode, plain included
    "scipy+mpi4py": "import numpy, scipy.linalg, scipy.sparse, scipy.optimize\nfrom mpi4py import MPI",
}
# Modules whose __file__ must lie under the mount (checked on every rank).
WORKLOAD_CHECK = {"numpy": "numpy", "scipy": "scipy", "mpi4py": "mpi4py", "numpy+mpi4py": "numpy",
                  "scipy+mpi4py": "scipy"}
OPS = ("getattr", "readlink", "access", "open", "opendir", "readdir", "statfs", "read", "close")

JOB = r'''
import os, sys, time
T0 = time.time()
# The marks are statvfs() calls: the kernel looks the name up on the server
# whatever mpiimport run's preload library answers for stat() from its image.
try:
    os.statvfs(os.environ["BENCH_MARK"])   # emufs: counts before this = start-up
except OSError:
    pass
MODE = os.environ["BENCH_MODE"]
RANK = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMIX_RANK", "0")))
install_s = 0.0
if MODE not in ("plain", "local"):
    t = time.perf_counter()
    import mpiimport
    if not mpiimport.install():
        sys.stderr.write("bench job: rank %d: mpiimport.install() returned False\n" % RANK)
        sys.exit(3)
    install_s = time.perf_counter() - t
try:
    os.statvfs(os.environ["BENCH_MARK2"])  # emufs: counts since BENCH_MARK = install window
except OSError:
    pass
t = time.perf_counter()
exec(compile(os.environ["BENCH_CODE"], "<workload>", "exec"))
import_s = time.perf_counter() - t
T1 = time.time()
check = sys.modules.get(os.environ["BENCH_CHECK"])
rec = {"rank": RANK, "t_start": T0, "t_done": T1, "install_s": install_s, "import_s": import_s,
       "file": getattr(check, "__file__", None), "pid": os.getpid()}
# Memory after the imports: this rank's private memory, and what its node's
# stage holds in node-local memory (/dev/shm) now, while the job runs.
with open("/proc/self/status") as f:
    rec["rss_anon_kb"] = next((int(l.split()[1]) for l in f if l.startswith("RssAnon:")), 0)
if MODE not in ("plain", "local"):
    rec["stats"] = {k: v for k, v in mpiimport.stats().items() if isinstance(v, (int, float, str))}
    stage, total = rec["stats"].get("stage_root"), 0
    for root, dirs, files in os.walk(stage or "/nonexistent"):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    rec["stage_bytes"] = total
sys.stdout.write("BENCH %r\n" % (rec,))
sys.stdout.flush()
'''


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


class SetupError(Exception):
    pass


class RunError(Exception):
    pass


# ---- the mount --------------------------------------------------------------

def is_mounted(path):
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return os.path.ismount(path)


def unmount(mnt, proc=None, quiet=False):
    """Unmounts mnt (lazily if busy) and reaps emufs; never raises."""
    for attempt in range(6):
        if not is_mounted(mnt):
            break
        args = ["fusermount3", "-u", mnt] if attempt < 5 else ["fusermount3", "-uz", mnt]
        r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0 and not quiet and attempt == 4:
            log("bench: fusermount3 -u %s: %s (trying lazy unmount)" % (mnt, r.stderr.strip()))
        if is_mounted(mnt):
            time.sleep(0.5)
    if proc is not None:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return not is_mounted(mnt)


class EmuFS:
    """emufs mounted at a fresh directory; a context manager that always unmounts."""

    def __init__(self, emufs, src, meta_us, read_mbps, workdir):
        self.emufs, self.src, self.meta_us, self.read_mbps = emufs, src, meta_us, read_mbps
        self.dir = tempfile.mkdtemp(prefix="emufs-m%d-" % meta_us, dir=workdir)
        self.mnt = os.path.join(self.dir, "mnt")
        self.stats_path = os.path.join(self.dir, "stats.json")
        self.log_path = os.path.join(self.dir, "emufs.log")
        self.proc = None
        os.mkdir(self.mnt)

    def __enter__(self):
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.emufs, "--meta-us", str(self.meta_us), "--read-mbps", str(self.read_mbps),
             "--stats", self.stats_path, "-f", self.src, self.mnt],
            stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None or time.time() > deadline:
                self.__exit__(None, None, None)
                raise SetupError("emufs did not mount %s at %s: %s" % (self.src, self.mnt, self.log_text()))
            time.sleep(0.05)
        return self

    def log_text(self):
        try:
            with open(self.log_path) as f:
                return f.read().strip()[-2000:]
        except OSError:
            return ""

    def __exit__(self, *exc):
        ok = unmount(self.mnt, self.proc)
        self.logf.close()
        if not ok:
            log("bench: WARNING: %s is still mounted" % self.mnt)
        return False

    def read_stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def signal(self, sig):
        """Sends SIGUSR1 (dump) or SIGUSR2 (reset + dump); returns the new dump."""
        old = self.read_stats()
        seq = old["seq"] if old else 0
        self.proc.send_signal(sig)
        deadline = time.time() + 20
        while time.time() < deadline:
            d = self.read_stats()
            if d and d["seq"] > seq:
                return d
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RunError("emufs did not answer signal %d: %s" % (sig, self.log_text()))


# ---- one run ------------------------------------------------------------------

def interpreter(args, fs, mode=None):
    """The python3 the ranks execute: the mount's own with --whole-stack
    (local disk's in mode local, the floor)."""
    if getattr(args, "whole_stack", False) and mode != "local":
        return os.path.join(fs.mnt, "bin", os.path.basename(os.path.realpath(PYTHON)))
    return PYTHON


def stack_libdir(fs):
    import sysconfig
    return os.path.join(fs.mnt, "lib", sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")


def job_env(args, fs, mode, transport, workload, cache_dir=None, image=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "MPIIMPORT_"))}
    if mode == "local":   # the floor: the same job, plainly, from local disk
        env.update({"PYTHONNOUSERSITE": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                    "BENCH_MODE": mode, "BENCH_MARK": "/nonexistent-mark", "BENCH_MARK2": "/nonexistent-mark2",
                    "BENCH_CODE": WORKLOADS[workload], "BENCH_CHECK": WORKLOAD_CHECK[workload]})
        return env
    env.update({
        "PYTHONHOME": fs.mnt,
        "PYTHONPATH": os.path.join(args.build, "python"),
        "PYTHONNOUSERSITE": "1",
        "MPIIMPORT_SHARED_PREFIXES": fs.mnt,
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "BENCH_MODE": mode,
        "BENCH_MARK": os.path.join(fs.mnt, ".emufs-mark"),
        "BENCH_MARK2": os.path.join(fs.mnt, ".emufs-mark2"),
        "BENCH_CODE": WORKLOADS[workload],
        "BENCH_CHECK": WORKLOAD_CHECK[workload],
    })
    if transport:
        env["MPIIMPORT_TRANSPORT"] = transport
    if mode == "mpiimport":
        env["MPIIMPORT_RECORD"] = "0"                  # lock-step: no recorded list, none written
    elif mode == "replay":
        env["MPIIMPORT_RECORD"] = "1"
        env["MPIIMPORT_CACHE_DIR"] = cache_dir         # this cell's own recorded list
    elif mode in ("image", "staged", "run"):
        env["MPIIMPORT_RECORD"] = "0"                  # nothing recorded; the packed image is replayed
        if image:                                      # (the pack run itself gets none: it writes it)
            env["MPIIMPORT_IMAGE"] = image             # on local disk (the work directory)
            env["MPIIMPORT_TRUST_IMAGE"] = "1"
        if image and mode in ("staged", "run"):        # staged on the node beforehand: no collective
            env["MPIIMPORT_STAGED"] = "1"
    env["MPIIMPORT_TIMEOUT"] = str(args.mpiimport_timeout)
    rpn = getattr(args, "ranks_per_node", 0)           # (startup_bench.py's args have none)
    if mode != "plain" and rpn > 0:
        env["MPIIMPORT_RANKS_PER_NODE"] = str(rpn)     # simulated nodes of rpn ranks
    return env


def pack_image(args, fs, job, workload, transport, path):
    """Mode image, before a cell's measured runs: `python3 -m mpiimport pack` runs the job once, in
    ONE process (no mpirun), with the job's own environment, and writes the image to `path` (local
    disk). Its server operations are reset away by the next run_once, as the replay warm-up's are."""
    env = job_env(args, fs, "image", transport, workload)
    if getattr(args, "whole_stack", False):
        env["LD_LIBRARY_PATH"] = stack_libdir(fs)
    cmd = [interpreter(args, fs), "-m", "mpiimport", "pack", "-o", path, "--", job]
    fs.signal(signal.SIGUSR2)
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        raise RunError("pack timed out after %d s: %s" % (args.timeout, " ".join(cmd)))
    if p.returncode != 0 or not os.path.isfile(path):
        fd, log_path = tempfile.mkstemp(prefix="bench-failed-pack-", suffix=".log", dir=args.log_dir)
        with os.fdopen(fd, "w") as f:
            f.write("$ %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (" ".join(cmd), p.stdout, p.stderr))
        raise RunError("%s %s: pack failed: exit %d, image %s (full output: %s)\n%s" % (
            workload, mode_label("image", transport), p.returncode,
            "written" if os.path.isfile(path) else "missing", log_path, p.stderr[-3000:]))
    fs.signal(signal.SIGUSR2)                          # the pack run's operations are not the cell's


def stage_image(args, fs, workload, transport, path, command="stage"):
    """Mode staged: `python3 -m mpiimport stage` once (the simulated nodes share this machine's
    /dev/shm, so one stage serves them all), or `unstage` after the cell."""
    env = job_env(args, fs, "staged", transport, workload)
    cmd = [PYTHON, "-m", "mpiimport", command, path]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=args.timeout)
    if p.returncode != 0:
        raise RunError("%s %s: %s failed: exit %d\n%s" % (workload, mode_label("staged", transport), command,
                                                         p.returncode, p.stderr[-3000:]))
    fs.signal(signal.SIGUSR2)


def run_once(args, fs, job, workload, mode, transport, ranks, cache_dir=None, image=None):
    env = job_env(args, fs, mode, transport, workload, cache_dir, image)
    # mode run: the whole process through `mpiimport run` (its audit and preload libraries)
    wrap = ([os.path.join(args.build, "bin", "mpiimport"), "run", "--image", image, "--"]
            if mode == "run" else [])
    stack = (["-x", "LD_LIBRARY_PATH=" + stack_libdir(fs)]
             if getattr(args, "whole_stack", False) and mode != "local" else [])
    cmd = (["mpirun", "--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader,tcp",
            "-n", str(ranks)] + stack + args.mpirun_args.split() + wrap + [interpreter(args, fs, mode), job])
    fs.signal(signal.SIGUSR2)                          # reset the server's counters
    t_launch = time.time()
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        raise RunError("timed out after %d s: %s" % (args.timeout, " ".join(cmd)))
    mpirun_s = time.time() - t_launch
    server = fs.signal(signal.SIGUSR1)
    recs = []
    for line in p.stdout.splitlines():
        if line.startswith("BENCH "):
            recs.append(ast.literal_eval(line[6:]))
    if p.returncode != 0 or len(recs) != ranks:
        fd, path = tempfile.mkstemp(prefix="bench-failed-run-", suffix=".log", dir=args.log_dir)
        with os.fdopen(fd, "w") as f:
            f.write("$ %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (" ".join(cmd), p.stdout, p.stderr))
        raise RunError("%s %s ranks=%d: exit %d, %d/%d ranks reported (full output: %s)\n%s" % (
            workload, mode_label(mode, transport), ranks, p.returncode, len(recs), ranks, path,
            p.stderr[-3000:]))
    if mode == "local":   # the floor: local disk, nothing on the mount (zero server counts)
        zero = {op: 0 for op in OPS + ("meta_ops", "read_bytes")}
        server = dict(server, ranks={str(r["rank"]): dict(zero, marked=True, marked2=True, before_mark=zero,
                                                          between_marks=zero) for r in recs})
    bad = [r for r in recs if mode != "local" and not (r["file"] or "").startswith(fs.mnt + "/")]
    if bad:
        raise RunError("%s: module not imported from the mount on rank %d: %s" % (
            workload, bad[0]["rank"], bad[0]["file"]))
    if len(server["ranks"]) != ranks:
        raise RunError("emufs saw %d ranks, expected %d" % (len(server["ranks"]), ranks))
    ranks_ops = {int(k): v for k, v in server["ranks"].items()}
    unmarked = [k for k, v in ranks_ops.items() if not (v.get("marked") and v.get("marked2"))]
    if unmarked or any("between_marks" not in v for v in ranks_ops.values()):
        raise RunError("emufs did not see both marks of rank %s (an emufs without \"between_marks\"? "
                       "rebuild it)" % (unmarked[0] if unmarked else "?"))
    return {
        "mpirun_s": mpirun_s,
        "wall_s": max(r["t_done"] for r in recs) - t_launch,
        "import_s": sorted(r["import_s"] for r in recs),
        "install_s": sorted(r["install_s"] for r in recs),
        "totals": server["totals"],
        "ranks": {k: {kk: v[kk] for kk in OPS + ("meta_ops", "read_bytes")} for k, v in ranks_ops.items()},
        "startup": {k: v["before_mark"]["meta_ops"] for k, v in ranks_ops.items()},
        "startup_bytes": {k: v["before_mark"]["read_bytes"] for k, v in ranks_ops.items()},
        # Between the marks: `import mpiimport; mpiimport.install()` (empty in plain mode).
        "install_window": {k: {kk: v["between_marks"][kk] for kk in OPS + ("meta_ops", "read_bytes")}
                           for k, v in ranks_ops.items()},
        "unranked_meta_ops": sum(u["meta_ops"] for u in server["unranked"]),
        "mpiimport_stats": {r["rank"]: r.get("stats") for r in recs if r["rank"] in (0, 1)},
        # memory after the imports, per rank: private (RssAnon), bytes received over the
        # transport (only a non-root node leader receives any; an mpiimport without
        # received_bytes: the bytes of messages taken in), bytes of messages taken in (over the
        # transport or from the node index), and the size of the rank's node stage in /dev/shm
        "rss_anon_kb": {r["rank"]: r.get("rss_anon_kb", 0) for r in recs},
        "received_bytes": {r["rank"]: received(r.get("stats") or {}) for r in recs},
        "bcast_bytes": {r["rank"]: (r.get("stats") or {}).get("bcast_bytes", 0) for r in recs},
        "stage_bytes": {r["rank"]: r.get("stage_bytes", 0) for r in recs},
        "loadavg": os.getloadavg()[0],
    }


def received(stats):
    """Bytes a rank received over the transport (stats from an mpiimport without
    received_bytes: bcast_bytes, what it took in)."""
    return stats.get("received_bytes", stats.get("bcast_bytes", 0))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def is_leader(rank, rpn):
    """A node's leader (its local rank 0) with nodes of rpn consecutive ranks; rpn 0 = one node."""
    return rank % rpn == 0 if rpn > 0 else rank == 0


def node_of(rank, rpn):
    return rank // rpn if rpn > 0 else 0


def node_layout(ranks, rpn):
    """'32 ranks as 4 simulated nodes of 8' (rpn 0 or ranks <= rpn: one node)."""
    if rpn <= 0 or ranks <= rpn:
        return "%d rank%s on one node" % (ranks, "" if ranks == 1 else "s")
    nodes = -(-ranks // rpn)
    return "%d ranks as %d simulated nodes of %d%s" % (
        ranks, nodes, rpn, "" if ranks % rpn == 0 else " (the last of %d)" % (ranks % rpn))


def summarize(cell):
    """Medians over the repeats of one cell."""
    runs = cell["runs"]
    s = {}
    for op in OPS + ("meta_ops", "read_bytes"):
        s[op] = med([r["totals"][op] for r in runs])
    s["rank0_ops"] = med([r["ranks"][0]["meta_ops"] for r in runs])
    others = [max((v["meta_ops"] for k, v in r["ranks"].items() if k != 0), default=0) for r in runs]
    s["other_max_ops"] = med(others) if cell["ranks"] > 1 else None
    s["other_min_ops"] = med([min((v["meta_ops"] for k, v in r["ranks"].items() if k != 0), default=0)
                              for r in runs]) if cell["ranks"] > 1 else None
    s["per_rank_median_ops"] = med([med([v["meta_ops"] for v in r["ranks"].values()]) for r in runs])
    s["startup_ops"] = med([med(list(r["startup"].values())) for r in runs])
    s["startup_bytes"] = med([med(list(r["startup_bytes"].values())) for r in runs])
    # Install window (`import mpiimport` + install()): rank 0 and the busiest other rank.
    # None for raw results from before emufs had a second mark.
    if all("install_window" in r for r in runs):
        s["install_rank0_ops"] = med([r["install_window"][0]["meta_ops"] for r in runs])
        s["install_other_max_ops"] = med([max(v["meta_ops"] for k, v in r["install_window"].items() if k != 0)
                                          for r in runs]) if cell["ranks"] > 1 else None
    else:
        s["install_rank0_ops"] = s["install_other_max_ops"] = None
    s["wall_s"] = med([r["wall_s"] for r in runs])
    s["wall_all"] = [r["wall_s"] for r in runs]
    s["mpirun_s"] = med([r["mpirun_s"] for r in runs])
    s["import_max_s"] = med([max(r["import_s"]) for r in runs])
    s["import_med_s"] = med([med(r["import_s"]) for r in runs])
    s["install_max_s"] = med([max(r["install_s"]) for r in runs])
    s["ops_varied"] = len({r["totals"]["meta_ops"] for r in runs}) > 1
    s["loadavg"] = med([r["loadavg"] for r in runs])
    s["bcast_bytes"] = med([(r["mpiimport_stats"].get(0) or {}).get("bcast_bytes", 0) for r in runs])
    s.update(summarize_memory(cell))
    return s


MEMORY_KEYS = ("rss_rank0_kb", "rss_leader_med_kb", "rss_nonleader_med_kb", "rss_other_med_kb",
               "recv_leader_max", "recv_nonleader_max", "recv_other_max", "stage_per_node_max",
               "stage_nodes_total", "stage_bytes")


def summarize_memory(cell):
    """Memory after the imports, medians over the repeats. Leaders = ranks r with r % N == 0
    (N = the cell's ranks per node; 0: one node, leader rank 0). None where a value does not
    apply (no such ranks; plain mode has no transport and no stage) or the raw results lack it
    (from before it was measured)."""
    runs = cell["runs"]
    out = dict.fromkeys(MEMORY_KEYS)
    if not runs or not all("rss_anon_kb" in r for r in runs):
        return out
    rpn = cell.get("ranks_per_node") or 0
    ranks = sorted(runs[0]["rss_anon_kb"])
    leaders = [k for k in ranks if k != 0 and is_leader(k, rpn)]
    nonleaders = [k for k in ranks if not is_leader(k, rpn)]
    others = [k for k in ranks if k != 0]

    def over(key, sel, agg):
        """agg over the ranks sel of each run's per-rank key, median over the runs."""
        if not sel or not all(key in r and all(k in r[key] for k in sel) for r in runs):
            return None
        return med([agg([r[key][k] for k in sel]) for r in runs])

    out["rss_rank0_kb"] = over("rss_anon_kb", [0], max)
    out["rss_leader_med_kb"] = over("rss_anon_kb", leaders, med)
    out["rss_nonleader_med_kb"] = over("rss_anon_kb", nonleaders, med)
    out["rss_other_med_kb"] = over("rss_anon_kb", others, med)
    if cell["mode"] == "plain":
        return out
    # Bytes received over the transport; raw results from before received_bytes have
    # recv_bytes (what each rank took in: bcast_bytes).
    rkey = "received_bytes" if all("received_bytes" in r for r in runs) else "recv_bytes"
    out["recv_leader_max"] = over(rkey, leaders, max)
    out["recv_nonleader_max"] = over(rkey, nonleaders, max)
    out["recv_other_max"] = over(rkey, others, max)
    if all("stage_bytes" in r for r in runs):
        per_node = []                       # per run: {node: its stage's size (max over its ranks)}
        for r in runs:
            nodes = {}
            for k, v in r["stage_bytes"].items():
                n = node_of(k, rpn)
                nodes[n] = max(nodes.get(n, 0), v)
            per_node.append(nodes)
        out["stage_per_node_max"] = med([max(n.values(), default=0) for n in per_node])
        out["stage_nodes_total"] = med([sum(n.values()) for n in per_node])
        out["stage_bytes"] = out["stage_per_node_max"]
    return out


# ---- the matrix ---------------------------------------------------------------

def mode_list(args, transports):
    out = []
    for m in args.modes.split(","):
        m = m.strip()
        if m in ("plain", "local"):
            out.append((m, None))
        elif m in ("mpiimport", "replay", "image", "staged", "run"):
            out += [(m, t) for t in transports]
        elif m.startswith(("mpiimport:", "replay:", "image:", "staged:", "run:")):
            kind, t = m.split(":", 1)
            if t not in transports:
                raise SetupError("transport %r not compiled in (have %s)" % (t, ", ".join(transports)))
            out.append((kind, t))
        else:
            raise SetupError("unknown mode %r (plain, mpiimport[:TRANSPORT], replay[:TRANSPORT], "
                             "image[:TRANSPORT], staged[:TRANSPORT], run[:TRANSPORT])" % m)
    return out


def mode_label(mode, transport):
    if mode in ("plain", "local"):
        return mode
    return "%s/%s" % (mode if mode in ("mpiimport", "replay", "image", "staged", "run") else "replay",
                      transport)


HEADER = " " * 8 + "%-13s %-15s %5s %9s %9s %9s %9s %9s %9s %8s %8s %8s %8s" % (
    "workload", "mode", "ranks", "meta ops", "rank0", "other max", "startup", "inst r0", "inst oth",
    "MiB", "wall s", "imp max", "imp med")


def row(cell):
    s = cell["summary"]
    def opt(x):
        return "-" if x is None else "%d" % x
    return "%-13s %-15s %5d %9d %9d %9s %9d %9s %9s %8.1f %8.2f %8.2f %8.2f" % (
        cell["workload"], mode_label(cell["mode"], cell["transport"]), cell["ranks"], s["meta_ops"],
        s["rank0_ops"], opt(s["other_max_ops"]), s["startup_ops"], opt(s["install_rank0_ops"]),
        opt(s["install_other_max_ops"]), s["read_bytes"] / 2**20, s["wall_s"],
        s["import_max_s"], s["import_med_s"])


def run_pass(args, name, meta_us, workloads, modes, ranks_list, repeat, job, counter, total):
    cells = []
    with EmuFS(args.emufs, args.src, meta_us, args.read_mbps, args.workdir) as fs:
        log("\n== %s pass: --meta-us %d --read-mbps %g, mount %s (source %s) ==" % (
            name, meta_us, args.read_mbps, fs.mnt, args.src))
        log(HEADER)
        for workload in workloads:
            for ranks in ranks_list:
                for mode, transport in modes:
                    counter[0] += 1
                    cell = {"pass": name, "meta_us": meta_us, "read_mbps": args.read_mbps,
                            "workload": workload, "mode": mode, "transport": transport,
                            "ranks": ranks, "ranks_per_node": args.ranks_per_node, "runs": []}
                    try:
                        tty = sys.stdout.isatty()
                        cache_dir = image = None
                        if mode in ("image", "staged", "run"):
                            # One unmeasured pack run (one process) writes the image on local disk.
                            image = os.path.join(args.workdir, "%s-%s-%s-%s-r%d.mpii" % (
                                name, meta_us, workload.replace("+", "_"), transport, ranks))
                            if tty:
                                sys.stdout.write("\r\033[K[%d/%d] %s %s ranks=%d packing ..." % (
                                    counter[0], total, workload, mode_label(mode, transport), ranks))
                                sys.stdout.flush()
                            pack_image(args, fs, job, workload, transport, image)
                            if mode in ("staged", "run"):   # and one unmeasured `mpiimport stage` per node
                                stage_image(args, fs, workload, transport, image)
                                cell["image_file_bytes"] = os.path.getsize(image)
                        elif mode == "replay":
                            # One unmeasured run records the list; the measured runs replay it.
                            cache_dir = tempfile.mkdtemp(prefix="cache-", dir=args.workdir)
                            if tty:
                                sys.stdout.write("\r\033[K[%d/%d] %s %s ranks=%d recording run ..." % (
                                    counter[0], total, workload, mode_label(mode, transport), ranks))
                                sys.stdout.flush()
                            run_once(args, fs, job, workload, mode, transport, ranks, cache_dir)
                            if not os.listdir(cache_dir):
                                raise RunError("replay: the recording run wrote no list in %s" % cache_dir)
                        for i in range(repeat):
                            if tty:
                                sys.stdout.write("\r\033[K[%d/%d] %s %s ranks=%d run %d/%d ..." % (
                                    counter[0], total, workload, mode_label(mode, transport), ranks, i + 1, repeat))
                                sys.stdout.flush()
                            run = run_once(args, fs, job, workload, mode, transport, ranks, cache_dir, image)
                            if mode in ("image", "staged", "run") and not (run["mpiimport_stats"].get(0) or {}).get("replayed"):
                                raise RunError("%s: rank 0 did not replay the packed image %s" % (mode, image))
                            if mode in ("staged", "run") and (run["mpiimport_stats"].get(0) or {}).get("transport") != "staged":
                                raise RunError("staged: rank 0 did not serve from the node's stage")
                            if mode == "replay" and not (run["mpiimport_stats"].get(0) or {}).get("replayed"):
                                raise RunError("replay: rank 0 did not replay the recorded list")
                            cell["runs"].append(run)
                        if mode in ("staged", "run"):
                            stage_image(args, fs, workload, transport, image, "unstage")
                        cell["summary"] = summarize(cell)
                        if tty:
                            sys.stdout.write("\r\033[K")
                        log("%-8s" % ("[%d/%d]" % (counter[0], total)) + row(cell))
                    except RunError as e:
                        if args.stop_on_error:
                            raise
                        if sys.stdout.isatty():
                            sys.stdout.write("\r\033[K")
                        cell["error"] = str(e).split("\n")[0]
                        log("%-8s%-13s %-15s %5d  FAILED: %s" % ("[%d/%d]" % (counter[0], total), workload,
                                                                 mode_label(mode, transport), ranks, cell["error"]))
                        cells.append(cell)
                        continue
                    cells.append(cell)
    return cells


# ---- report ---------------------------------------------------------------------

def find(cells, **kw):
    for c in cells:
        if all(c.get(k) == v for k, v in kw.items()):
            return c
    return None


def fmt_int(x):
    return "-" if x is None else "{:,}".format(int(round(x)))


def pct(a, b):
    return "-" if not b else "%.1f%%" % (100.0 * a / b)


def ratio(a, b):
    if not b:
        return "-"
    r = a / b
    return "{:,.0f}×".format(r) if r >= 100 else "%.2f×" % r


def plot(cells, path, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (apt install python3-matplotlib): no plot"
    main = [c for c in cells if c["pass"] == "main"]
    workloads = list(dict.fromkeys(c["workload"] for c in main))
    if not workloads:
        return "no main-pass cells: no plot"
    fig, axes = plt.subplots(2, len(workloads), figsize=(4.2 * len(workloads), 7.5), squeeze=False)
    for j, w in enumerate(workloads):
        for label in dict.fromkeys(mode_label(c["mode"], c["transport"]) for c in main if c["workload"] == w):
            cs = sorted((c for c in main if c["workload"] == w
                         and mode_label(c["mode"], c["transport"]) == label), key=lambda c: c["ranks"])
            xs = [c["ranks"] for c in cs]
            style = "o-" if label == "plain" else "s-"
            ops = [c["summary"]["meta_ops"] for c in cs]
            # a log axis cannot draw 0: such a mode is drawn at 1, and says so
            zero = all(o == 0 for o in ops)
            axes[0][j].plot(xs, [max(o, 1) for o in ops], style + ("-" if zero else ""),
                            label=label + (" (0 at every count; drawn at 1)" if zero else ""))
            axes[1][j].plot(xs, [c["summary"]["wall_s"] for c in cs], style, label=label)
        cs = sorted((c for c in main if c["workload"] == w and c["mode"] == "plain"), key=lambda c: c["ranks"])
        if cs:
            axes[0][j].plot([c["ranks"] for c in cs], [c["summary"]["startup_ops"] * c["ranks"] for c in cs],
                            ":", color="grey", label="interpreter start-up (all ranks)")
        for i in range(2):
            ax = axes[i][j]
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({c["ranks"] for c in main}))
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.set_xlabel("MPI ranks (oversubscribed on %d cores)" % os.cpu_count())
            ax.grid(True, alpha=0.3)
        axes[0][j].set_yscale("log")
        axes[0][j].set_title("%s\nserver metadata ops (all ranks)" % w, fontsize=10)
        axes[1][j].set_title("wall time, launch → all ranks imported [s]", fontsize=10)
        axes[0][j].legend(fontsize=8)
    fig.suptitle("emufs --meta-us %d --read-mbps %g\n(one server thread, no client cache)"
                 % (args.meta_us, args.read_mbps), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def memory_section(main):
    """Private memory (RssAnon) per rank after the imports against plain
    Python's — non-leaders, the other node leaders and rank 0 apart —, bytes
    received over the transport, each node's stage in /dev/shm, and the
    extrapolation to 128 ranks per node and a 500 MiB stack."""
    L = []
    rows = []
    for c in sorted(main, key=lambda c: (c["workload"], c["ranks"], c["mode"])):
        s = c["summary"]
        if c["mode"] == "plain" or s.get("rss_rank0_kb") is None:
            continue
        plain = find(main, workload=c["workload"], ranks=c["ranks"], mode="plain")
        p = plain["summary"] if plain else {}

        def private(kb, plain_kb):
            return None if kb is None or plain_kb is None else (kb - plain_kb) * 1024.0

        rows.append({
            "cell": c, "s": s, "image": s.get("bcast_bytes") or c.get("image_file_bytes") or 0,
            # a plain run has no leaders: its non-root median is the reference for both
            "nonleader": private(s.get("rss_nonleader_med_kb"), p.get("rss_other_med_kb")),
            "leader": private(s.get("rss_leader_med_kb"), p.get("rss_other_med_kb")),
            "rank0": private(s.get("rss_rank0_kb"), p.get("rss_rank0_kb")),
        })
    if not rows:
        return L
    mib = 1024.0 * 1024.0

    def m(x):
        return "-" if x is None else "%.1f" % (x / mib)

    def mx(x, image):
        return "-" if x is None else "%.1f (%s)" % (x / mib, "%.2f×" % (x / image) if image else "-")

    rpns = sorted({r["cell"].get("ranks_per_node") or 0 for r in rows})
    rmax = max(r["cell"]["ranks"] for r in rows)
    if rpns == [0]:
        layout = ("every rank on one node (this machine), so rank 0 is the only leader and the other "
                  "leaders' column is empty")
    else:
        n = max(rpns)
        layout = ("nodes of %s consecutive ranks simulated on this one machine "
                  "(`MPIIMPORT_RANKS_PER_NODE` in the mpiimport modes; leaders: ranks %s), e.g. %s; "
                  "the simulated nodes share this machine's memory, each with its own stage "
                  "directory" % (" / ".join(str(x) for x in rpns if x),
                                 "0, %d, %d, ..." % (n, 2 * n) if len(rpns) == 1 else "0, N, 2N, ...",
                                 node_layout(rmax, n)))
    L.append("## Memory (measured)")
    L.append("")
    L.append("After the imports, per rank. A node's *leader* is its local rank 0: rank 0 sends its "
             "messages to the leaders only; a leader stages the files in its node's stage directory "
             "(/dev/shm) and writes the facts to the node's index, which the node's other ranks "
             "(*non-leaders*) read: they receive nothing over the transport. Rank 0 is the first "
             "node's leader. Node layout: %s. Columns: *image* = the bytes rank 0 sent "
             "(`bcast_bytes`); *private* = `RssAnon` (`/proc/self/status`) minus plain Python's in "
             "the same workload and rank count — non-leaders and other leaders: the median over "
             "those ranks against the median over plain's non-root ranks; rank 0 against plain's "
             "rank 0 — and, in brackets, as a multiple of the image; *received* = the most any "
             "non-root leader / any non-leader received over the transport (`received_bytes`); "
             "*/dev/shm per node* = the largest node's stage directory while the job runs (× image). "
             "Medians over the repeats; \"-\" = no such ranks in the cell, or not measured." % layout)
    L.append("")
    L.append("| workload | mode | ranks | image MiB | non-leader private MiB (× image) | other leaders' "
             "private MiB (× image) | rank 0 private MiB (× image) | received per leader MiB | "
             "received per non-leader MiB | /dev/shm per node MiB (× image) |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        c, s, image = r["cell"], r["s"], r["image"]
        L.append("| %s | %s | %d | %.1f | %s | %s | %s | %s | %s | %s |" % (
            c["workload"], mode_label(c["mode"], c["transport"]), c["ranks"], image / mib,
            mx(r["nonleader"], image), mx(r["leader"], image), mx(r["rank0"], image),
            m(s.get("recv_leader_max")), m(s.get("recv_nonleader_max")),
            mx(s.get("stage_per_node_max"), image)))
    L.append("")
    big = [r for r in rows if r["image"] and r["nonleader"] is not None and r["rank0"] is not None]
    if big:
        r = max(big, key=lambda r: (r["cell"]["ranks"], r["image"]))
        c, s, image = r["cell"], r["s"], r["image"]
        stack = 500 * mib
        nl = r["nonleader"] / image
        # A node's leader: rank 0 on the first node, another leader on the others: the larger.
        ld = max(x / image for x in (r["rank0"], r["leader"]) if x is not None)
        node = 127 * nl * stack + ld * stack
        shm = s.get("stage_per_node_max")
        L.append("Extrapolation: with the ratios measured for %s %s at %d ranks (%s) — %.2f × the image "
                 "per non-leader rank, %.2f × for the node's leader (the larger of rank 0's and the "
                 "other leaders') — 128 ranks per node and a 500 MiB stack hold **%.1f GiB of private "
                 "memory per node** (127 non-leaders × %.0f MiB + one leader × %.0f MiB), before the "
                 "application allocates anything%s." % (
                     c["workload"], mode_label(c["mode"], c["transport"]), c["ranks"],
                     node_layout(c["ranks"], c.get("ranks_per_node") or 0), nl, ld, node / (1024 * mib),
                     nl * stack / mib, ld * stack / mib,
                     "; the node's stage in /dev/shm adds %.2f × the stack, %.1f GiB, once per node" % (
                         shm / image, shm / image * stack / (1024 * mib)) if shm else ""))
        L.append("")
    return L


def report(cells, args, meta, plot_note):
    L = []
    main = [c for c in cells if c["pass"] == "main"]
    wall = [c for c in cells if c["pass"] == "wall"]
    rmax = max((c["ranks"] for c in main), default=0)
    rmin = min((c["ranks"] for c in main), default=0)
    L.append("# Benchmark: plain Python imports vs mpiimport on an emulated shared file system")
    L.append("")
    L.append("Generated by `scripts/bench.sh` (`tests/bench/run_bench.py %s`) on %s; "
             "total run time **%s**." % (" ".join(meta["argv"]), meta["date"], meta["elapsed"]))
    L.append("")
    L.append("Machine: %s, %d cores, kernel %s, Open MPI `mpirun`, %s. **Every rank count above %d is "
             "oversubscribed** (up to %d ranks on %d cores); the load average (other jobs on the "
             "machine included) was %.1f at the start and %.1f at the end, so wall times carry "
             "noise; operation counts do not depend on timing." % (
                 meta["host"], os.cpu_count(), platform.release(), meta["python"], os.cpu_count(),
                 max([c["ranks"] for c in cells] or [0]), os.cpu_count(), meta["load_start"],
                 meta["load_end"]))
    L.append("")
    rpn = meta.get("ranks_per_node") or 0
    if rpn:
        L.append("Nodes: **simulated** — `MPIIMPORT_RANKS_PER_NODE=%d` in every mpiimport mode (not "
                 "plain): %s. All on this one machine; each node's leader (its local rank 0) receives "
                 "rank 0's messages and stages the files in its node's stage directory (/dev/shm), the "
                 "node's other ranks read them from there." % (rpn, "; ".join(
                     node_layout(r, rpn) for r in sorted({c["ranks"] for c in cells}, reverse=True))))
        L.append("")
    L.append("## Setup")
    L.append("")
    L.append("* **Emulated file system** — `tests/bench/emufs` (FUSE, libfuse3): a read-only passthrough "
             "of `%s` served by ONE thread, sleeping `--meta-us` per metadata operation "
             "(lookup/getattr, open, opendir/readdir, readlink, access, statfs) and "
             "bytes/`--read-mbps` per read; entry/attribute/negative timeouts 0, direct_io, no readdir "
             "cache, no readdirplus — every path component of every lookup of every rank reaches the "
             "server, as on a parallel file system whose clients cannot cache. Counts are per "
             "operation type and per rank (the requesting process's `OMPI_COMM_WORLD_RANK`). "
             "`close` is counted but not charged and not in \"meta ops\"." % args.src)
    if getattr(args, "whole_stack", False):
        L.append("* **The whole stack on it (`--whole-stack`)** — the ranks execute `MNT/bin/%s` (the "
                 "interpreter binary read through emufs) with `LD_LIBRARY_PATH=MNT/lib/<multiarch>` "
                 "(`mpirun -x`, as an environment module sets it), so the dynamic loader finds libc, "
                 "libm, OpenBLAS, libmpi, ... on the mount too. Images (modes image, staged, run) are "
                 "packed by that interpreter with the whole process recorded (`pack -- job.py`: its "
                 "preload and audit libraries log every path opened or probed). The sentence below "
                 "about local disk applies to `mpirun`, the `mpiimport` launcher and the mpiimport "
                 "package only." % os.path.basename(os.path.realpath(PYTHON)))
    L.append("* **Python on it** — `PYTHONHOME=MNT` (MNT = the mount of `%s`): the standard library, "
             "`lib-dynload` and `dist-packages` (numpy, scipy, mpi4py) are all read through emufs "
             "(`numpy.__file__` etc. are checked to lie under MNT on every rank). The interpreter "
             "binary, shared libraries (libpython, OpenBLAS, libmpi) and the `mpiimport` package "
             "(`BUILD/python`) stay on local disk, as on a cluster whose node image holds them. "
             "`MPIIMPORT_SHARED_PREFIXES=MNT`." % args.src)
    L.append("* **Job** — `mpirun -n R /usr/bin/python3 job.py` (job script on local disk). Each rank "
             "looks up `MNT/.emufs-mark` first: emufs keeps the rank's counts before it apart — the "
             "**interpreter's own start-up** (site, encodings, ...), which happens before "
             "`mpiimport.install()` can act. Then, in every mode but plain, `import mpiimport; "
             "mpiimport.install()`; then every rank (plain too, at the same point) looks up "
             "`MNT/.emufs-mark2`: emufs keeps the rank's counts between the two lookups apart — the "
             "**install window** (`import mpiimport` + `install()`; empty in plain mode); then the "
             "workload, timed (`imp` = time inside the workload's imports on a rank; install time is "
             "separate and in the JSON).")
    L.append("* **Modes** — `plain`; `mpiimport/T` = lock-step (`MPIIMPORT_RECORD=0`: rank 0 "
             "reads and broadcasts as the ranks import, nothing recorded); `replay/T` = the "
             "library's recorded-list mode: one unmeasured run records the job's list in a private "
             "`MPIIMPORT_CACHE_DIR`, the measured runs replay it (rank 0 re-reads what is on the list "
             "and sends it in one broadcast at `install()`); `image/T` = a packed image: before the "
             "measured runs, `python3 -m mpiimport pack -o WORKDIR/CELL.mpii -- job.py` runs the job "
             "once in ONE process with the job's environment (its server operations are not counted), "
             "and the measured runs use `MPIIMPORT_IMAGE` = that file (on local disk), "
             "`MPIIMPORT_TRUST_IMAGE=1`, `MPIIMPORT_RECORD=0`. T = transport; `self` (one process) is "
             "left out. `MPIIMPORT_TIMEOUT=%d` (oversubscribed ranks wait long)." % args.mpiimport_timeout)
    L.append("* **Wall time** — from launching `mpirun` until the last rank is past its imports "
             "(rank clocks are the same machine's), median of the repeats.")
    L.append("* Workloads: " + "; ".join("`%s` = `%s`" % (w, WORKLOADS[w].replace("\n", "; "))
                                         for w in dict.fromkeys(c["workload"] for c in cells)) + ".")
    L.append("* Passes: main — `--meta-us %d --read-mbps %g`, %d repeat(s) per cell; wall — "
             "`--meta-us %d`, %d repeat(s)." % (args.meta_us, args.read_mbps, args.repeat,
                                                 args.wall_meta_us, args.wall_repeat))
    L.append("* Effective service time: FUSE itself adds a round trip per request (measured with "
             "`--meta-us 0`: tens of µs on this VM), so a request costs about `--meta-us` + that.")
    L.append("")

    # ---- headline -----------------------------------------------------------------
    L.append("## Headline (measured)")
    L.append("")
    heads = []
    for w in dict.fromkeys(c["workload"] for c in main):
        p1, pN = find(main, workload=w, mode="plain", ranks=rmin), find(main, workload=w, mode="plain", ranks=rmax)
        for c in main:
            if c["workload"] != w or c["mode"] == "plain" or c["ranks"] != rmax:
                continue
            m1 = find(main, workload=w, mode=c["mode"], transport=c["transport"], ranks=rmin)
            heads.append((w, c, m1, p1, pN))
    if heads:
        L.append("Main pass (`--meta-us %d`), %d vs %d rank(s):" % (args.meta_us, rmax, rmin))
        L.append("")
        L.append("| workload | mode | mpiimport ops @%d / @%d | plain ops @%d / @%d | ops @%d: mpiimport vs plain | "
                 "non-root rank's ops, %% of a plain rank's | of which interpreter start-up + install window |"
                 % (rmax, rmin, rmax, rmin, rmax))
        L.append("|---|---|---|---|---|---|---|")
        for w, c, m1, p1, pN in heads:
            s = c["summary"]
            mr = "%s / %s = **%s**" % (fmt_int(s["meta_ops"]), fmt_int(m1["summary"]["meta_ops"]),
                                      ratio(s["meta_ops"], m1["summary"]["meta_ops"])) if m1 else fmt_int(s["meta_ops"])
            pr = "%s / %s = **%s**" % (fmt_int(pN["summary"]["meta_ops"]), fmt_int(p1["summary"]["meta_ops"]),
                                      ratio(pN["summary"]["meta_ops"], p1["summary"]["meta_ops"])) if pN and p1 else "-"
            vs = pct(s["meta_ops"], pN["summary"]["meta_ops"]) if pN else "-"
            nr = ("%s (%s vs %s)" % (pct(s["other_max_ops"], pN["summary"]["per_rank_median_ops"]),
                                     fmt_int(s["other_max_ops"]), fmt_int(pN["summary"]["per_rank_median_ops"]))
                  if pN and s["other_max_ops"] is not None else "-")
            su = ("%s%s of its %s ops" % (
                fmt_int(s["startup_ops"]),
                "" if s["install_other_max_ops"] is None else " + %s" % fmt_int(s["install_other_max_ops"]),
                fmt_int(s["other_max_ops"])) if s["other_max_ops"] is not None else "-")
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (w, mode_label(c["mode"], c["transport"]),
                                                              mr, pr, vs, nr, su))
        L.append("")
        for w, c, m1, p1, pN in heads:
            s = c["summary"]
            if s["install_other_max_ops"] is None:
                continue
            L.append("* `%s`, %s, %d ranks: a non-root rank makes **%s** server operations between the end "
                     "of start-up and the end of `install()` (max over ranks ≠ 0; rank 0: %s; a plain "
                     "rank in the same window: %s)." % (
                         w, mode_label(c["mode"], c["transport"]), rmax, fmt_int(s["install_other_max_ops"]),
                         fmt_int(s["install_rank0_ops"]),
                         fmt_int(pN["summary"]["install_other_max_ops"]) if pN else "-"))
        L.append("")
    for w in dict.fromkeys(c["workload"] for c in main):
        p1 = find(main, workload=w, mode="plain", ranks=rmin)
        for c in main:
            if c["workload"] != w or c["mode"] == "plain" or c["ranks"] != rmin or not p1:
                continue
            a, b = c["summary"], p1["summary"]
            L.append("* `%s`, %s: rank 0 alone (%d rank%s): %s meta ops vs a plain rank's %s (%s); "
                     "%s opens vs %s; %.1f MiB read vs %.1f MiB." % (
                         w, mode_label(c["mode"], c["transport"]), rmin, "" if rmin == 1 else "s",
                         fmt_int(a["rank0_ops"]),
                         fmt_int(b["rank0_ops"]), pct(a["rank0_ops"], b["rank0_ops"]),
                         fmt_int(a["open"]), fmt_int(b["open"]), a["read_bytes"] / 2**20,
                         b["read_bytes"] / 2**20))
    L.append("")
    if wall:
        wr = max(c["ranks"] for c in wall)
        L.append("Wall pass (`--meta-us %d`), %d ranks:" % (args.wall_meta_us, wr))
        L.append("")
        L.append("| workload | mode | wall s (median; all runs) | plain / this | server ops | import max / median s |")
        L.append("|---|---|---|---|---|---|")
        for w in dict.fromkeys(c["workload"] for c in wall):
            p = find(wall, workload=w, mode="plain", ranks=wr)
            for c in wall:
                if c["workload"] != w or c["ranks"] != wr:
                    continue
                s = c["summary"]
                L.append("| %s | %s | %.2f (%s) | %s | %s | %.2f / %.2f |" % (
                    w, mode_label(c["mode"], c["transport"]), s["wall_s"],
                    ", ".join("%.2f" % x for x in s["wall_all"]),
                    ratio(p["summary"]["wall_s"], s["wall_s"]) if p and c is not p else "1×",
                    fmt_int(s["meta_ops"]), s["import_max_s"], s["import_med_s"]))
        L.append("")

    # ---- tables ------------------------------------------------------------------------
    L.extend(memory_section(main))
    L.append("## All cells")
    L.append("")
    L.append("Medians over the repeats. *meta ops* = getattr (incl. every path-component lookup) + "
             "readlink + access + open + opendir + readdir + statfs at the server, all ranks; "
             "*rank 0* / *other max* = that rank's / the busiest non-root rank's meta ops; "
             "*start-up* = one rank's meta ops before the mark (interpreter start-up, median over "
             "ranks); *install r0* / *install other max* = rank 0's / the busiest non-root rank's meta "
             "ops in the install window, between the end of start-up and the end of `install()` "
             "(`import mpiimport` + `install()`; plain: the same, empty, window); *MiB* = bytes read, all ranks; *imp* = seconds inside the workload's imports "
             "(max / median over ranks).")
    L.append("")
    L.append("| pass | workload | mode | ranks | meta ops | getattr | open | opendir+readdir | readlink+access | "
             "reads | MiB | rank 0 | other max | start-up | install r0 | install other max | wall s | imp max | imp med |")
    L.append("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for c in cells:
        s = c["summary"]
        L.append("| %s (%d µs) | %s | %s | %d | %s | %s | %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s "
                 "| %.2f | %.2f | %.2f |" % (
            c["pass"], c["meta_us"], c["workload"], mode_label(c["mode"], c["transport"]), c["ranks"],
            fmt_int(s["meta_ops"]), fmt_int(s["getattr"]), fmt_int(s["open"]),
            fmt_int(s["opendir"] + s["readdir"]), fmt_int(s["readlink"] + s["access"]), fmt_int(s["read"]),
            s["read_bytes"] / 2**20, fmt_int(s["rank0_ops"]), fmt_int(s["other_max_ops"]),
            fmt_int(s["startup_ops"]), fmt_int(s["install_rank0_ops"]), fmt_int(s["install_other_max_ops"]),
            s["wall_s"], s["import_max_s"], s["import_med_s"]))
    varied = [c for c in cells if c["summary"]["ops_varied"]]
    L.append("")
    if varied:
        L.append("Operation counts differed between repeats in %d cell(s) (medians shown)." % len(varied))
    else:
        L.append("Operation counts were identical across repeats in every cell.")
    L.append("")
    if plot_note:
        L.append("Plot: %s." % plot_note)
    else:
        L.append("![server ops and wall time vs ranks](%s)" % os.path.basename(args.plot))
    L.append("")

    # ---- start-up --------------------------------------------------------------------
    L.append("## The interpreter's own start-up")
    L.append("")
    su = [c for c in main if c["ranks"] == rmin]
    if su:
        c0 = su[0]["summary"]
        L.append("Before the job's first line runs, each rank's interpreter has already made **%s** "
                 "metadata operations and read %.1f KiB on the shared file system (the `site` module, "
                 "`encodings`, `.pth` files, the search for `PYTHONHOME`'s landmarks). mpiimport cannot "
                 "act before `install()`, so every rank pays these in both modes; at large scale they "
                 "are what remains of mpiimport's non-root traffic, together with what a rank makes in "
                 "the install window (`import mpiimport` + `install()`; see the headline). Removing "
                 "them needs the interpreter's start-up files on node-local storage (or a zipped / "
                 "frozen standard library), not an import hook." % (
                     fmt_int(c0["startup_ops"]), c0["startup_bytes"] / 1024.0))
        L.append("")
        L.append("Share of a plain rank's metadata operations that is start-up: " + "; ".join(
            "`%s` %s (%s of %s)" % (c["workload"], pct(c["summary"]["startup_ops"], c["summary"]["rank0_ops"]),
                                    fmt_int(c["summary"]["startup_ops"]), fmt_int(c["summary"]["rank0_ops"]))
            for c in su if c["mode"] == "plain") + ". The smaller the workload's own imports, the "
            "less an import hook can save: for `mpi4py` alone most of a rank's traffic is start-up.")
        L.append("")

    # ---- extrapolation -----------------------------------------------------------------
    L.extend(extrapolation(cells, args))
    L.extend(whole_process_model(cells, args))
    L.append("")
    L.append("## Reproduce")
    L.append("")
    L.append("```sh\nscripts/bench.sh                      # this report (full matrix + wall pass)\n"
             "scripts/bench.sh --quick              # a few minutes\n"
             "scripts/bench.sh --ranks 1,8 --workloads numpy --modes plain,mpiimport --repeat 1\n"
             "```")
    L.append("")
    L.append("Raw per-run data: `%s`." % os.path.relpath(args.json, os.path.dirname(args.out)))
    L.append("")
    return "\n".join(L)


BW_RANKS = 16384
BW_PLAIN_S = 7 * 60 + 17
BW_PROTO_S = 3 * 60 + 18


def extrapolation(cells, args):
    L = ["## Extrapolation to %s ranks" % fmt_int(BW_RANKS), ""]
    # Prefer the wall pass's numpy+mpi4py cells (the 2014 workload), else any workload.
    pick = None
    for pass_ in ("wall", "main"):
        for w in ("numpy+mpi4py", "numpy", "scipy", "mpi4py"):
            cs = [c for c in cells if c["pass"] == pass_ and c["workload"] == w]
            if not cs:
                continue
            rmax = max(c["ranks"] for c in cs)
            p = find(cs, mode="plain", ranks=rmax)
            m = ([c for c in cs if c["mode"] == "mpiimport" and c["ranks"] == rmax]
                 or [c for c in cs if c["mode"] == "replay" and c["ranks"] == rmax])
            if p and m and rmax > 1:
                pick = (pass_, w, rmax, p, m[0])
                break
        if pick:
            break
    if not pick:
        L.append("Not enough cells (needs plain and mpiimport at more than one rank) for the model.")
        return L
    pass_, w, rmax, p, m = pick
    ps, ms = p["summary"], m["summary"]
    P = ps["per_rank_median_ops"]
    R0 = ms["rank0_ops"]
    S = ms["other_max_ops"]
    U = ps["startup_ops"]
    N = BW_RANKS
    plain_ops = N * P
    mpi_ops = R0 + (N - 1) * S
    red = 1 - mpi_ops / plain_ops
    floor = N * U
    L.append("Measured inputs (%s pass, workload `%s`, %d ranks, %s): a plain rank makes "
             "**P = %s** metadata operations (of which **U = %s** are interpreter start-up); with "
             "mpiimport rank 0 makes **R0 = %s** and the busiest other rank **S = %s**." % (
                 pass_, w, rmax, mode_label(m["mode"], m["transport"]), fmt_int(P), fmt_int(U), fmt_int(R0), fmt_int(S)))
    L.append("")
    L.append("**Model.** The shared file system's metadata service is one queue with a fixed cost "
             "per operation (what emufs emulates), and at scale the import phase is bound by it: "
             "time ≈ operations ÷ service rate. Assumptions: (1) per-rank counts do not depend on the "
             "rank count — true in every measured cell (plain ranks each make the same P; mpiimport's "
             "non-root ranks each make S whatever the size); (2) rank 0's R0 is paid once; (3) the "
             "broadcast of the modules (%.1f MiB here) is not the bottleneck — a tree broadcast over "
             "16,384 ranks is log2(16,384) = 14 steps; (4) operation counts from a client without "
             "caches, as emufs forces: a Lustre/GPFS client caching dentries lowers P and S alike, "
             "so the ratio transfers better than the absolute counts; (5) the time outside the "
             "metadata queue (launch, MPI start-up, CPU) is not modelled." % (
                 ms["bcast_bytes"] / 2**20))
    L.append("")
    L.append("| at %s ranks | plain | mpiimport | change |" % fmt_int(N))
    L.append("|---|--:|--:|--:|")
    L.append("| metadata ops = N·P vs R0 + (N−1)·S | %s | %s | **−%.1f%%** |" % (
        fmt_int(plain_ops), fmt_int(mpi_ops), 100 * red))
    L.append("| of which interpreter start-up N·U | %s | %s | — |" % (fmt_int(floor), fmt_int(floor)))
    import_only_red = 1 - (R0 - U + (N - 1) * (S - U)) / (N * (P - U)) if P > U else float("nan")
    imp_mpi = R0 - U + (N - 1) * (S - U)
    L.append("| import-phase ops only (start-up excluded) | %s | %s | **−%.3f%%** (%s fewer) |" % (
        fmt_int(N * (P - U)), fmt_int(imp_mpi), 100 * import_only_red,
        ratio(N * (P - U), imp_mpi) if imp_mpi > 0 else "∞×"))
    # Emulated server: seconds per op from the wall pass at this rank count.
    s_eff = ps["wall_s"] / ps["meta_ops"] if ps["meta_ops"] else 0
    L.append("| time on this emulated server (%.0f µs per op, fitted: plain wall ÷ plain ops at %d ranks) "
             "| %s | %s | %s |" % (s_eff * 1e6, rmax, fmt_dur(plain_ops * s_eff), fmt_dur(mpi_ops * s_eff),
                                   ratio(plain_ops, mpi_ops)))
    # Blue Waters: T = T0 + (metadata time), two unknowns fitted to the two published
    # times, taking the published 95% I/O reduction as the prototype's op reduction.
    X = (BW_PLAIN_S - BW_PROTO_S) / (1 - 0.05)
    T0 = BW_PLAIN_S - X
    bw_mpi = T0 + X * mpi_ops / plain_ops
    bw_floor = T0 + X * floor / plain_ops
    L.append("| Blue Waters model T = T0 + X·(ops ÷ plain ops), fitted below | 7m17s | **%s** | %s |"
             % (fmt_dur(bw_mpi), ratio(BW_PLAIN_S, bw_mpi)))
    L.append("| 2014 prototype, published (Blue Waters, numpy + mpi4py) | 7m17s | 3m18s | %s, "
             "95%% less shared-FS I/O |" % ratio(BW_PLAIN_S, BW_PROTO_S))
    L.append("")
    L.append("**Blue Waters model.** Job time T = T0 + X·f, with T0 the time that does not scale "
             "with shared-FS operations (launching 16,384 processes, MPI start-up, compute), X the "
             "plain job's metadata-bound time and f the fraction of plain's operations a job makes. "
             "The two published times fix both unknowns if the prototype's published 95%% I/O "
             "reduction is taken as f = 0.05: 437 s = T0 + X and 198 s = T0 + 0.05·X give "
             "**X = %.0f s, T0 = %.0f s**. With this build's measured f = %.3f, the model predicts "
             "**%s** for mpiimport at 16,384 ranks (%s with the interpreter's start-up ops alone "
             "left, f = %.3f, i.e. a perfect import phase). Honest limits: the 2014 per-rank counts "
             "were Python 2.7's on Lustre (with client caching), not this emulation's; \"95%% less "
             "I/O\" may count bytes rather than operations; and T0 is inferred, not measured."
             % (X, T0, mpi_ops / plain_ops, fmt_dur(bw_mpi), fmt_dur(bw_floor), floor / plain_ops))
    L.append("")
    L.append("Reading: the model puts mpiimport's metadata load at 16,384 ranks at %.1f%% of plain's "
             "(a %.1f%% reduction, against the 2014 prototype's published 95%%); %.0f%% of what is "
             "left is the interpreter's start-up (N·U), which runs before any import hook can act. "
             "On a server that is the only bottleneck (this emulation) that is a %s speed-up; on "
             "Blue Waters, where by the fit above %.0f of the 437 s did not depend on the file "
             "system, it would be %s." % (
                 100 * mpi_ops / plain_ops, 100 * red, 100 * floor / mpi_ops, ratio(plain_ops, mpi_ops),
                 T0, ratio(BW_PLAIN_S, bw_mpi)))
    return L


BW_RANKS_PER_NODE = 32          # Blue Waters XE nodes: 32 integer cores
LINK_BYTES_PER_S = 1e9          # assumed per-link rate of the leaders' tree broadcast (conservative)
STAGE_BYTES_PER_S = 1e9         # assumed rate of writing the stage into /dev/shm


def whole_process_model(cells, args):
    """The start-up of `mpiimport run` at 16,384 ranks, from this run's
    measured cells: the plain whole-stack job calibrates the shared file
    system's per-operation cost against the published Blue Waters time; the
    run cells give the operations left (per node) and the image size; the
    local cell gives the node-local start-up."""
    L = ["## `mpiimport run` at %s ranks (whole process)" % fmt_int(BW_RANKS), ""]
    pick = None
    for pass_ in ("wall", "main"):
        for w in ("numpy+mpi4py", "scipy+mpi4py", "numpy", "scipy", "mpi4py"):
            cs = [c for c in cells if c["pass"] == pass_ and c["workload"] == w and "summary" in c]
            runs = sorted([c for c in cs if c["mode"] == "run"], key=lambda c: -c["ranks"])
            plains = sorted([c for c in cs if c["mode"] == "plain"], key=lambda c: -c["ranks"])
            if runs and plains:
                # the floor with the fewest ranks (any pass): one core per rank, as on a node
                locs = sorted([c for c in cells if c["workload"] == w and c["mode"] == "local" and "summary" in c],
                              key=lambda c: c["ranks"])
                pick = (pass_, w, runs[0], plains[0], locs[0] if locs else None)
                break
        if pick:
            break
    if not pick:
        L.append("No run and plain cells of one workload in this run: no model.")
        return L
    pass_, w, run, plain, local = pick
    rs, ps = run["summary"], plain["summary"]
    rpn = run.get("ranks_per_node") or run["ranks"]
    nodes_measured = max(1, run["ranks"] // rpn)
    per_node_ops = rs["meta_ops"] / nodes_measured
    P = ps["per_rank_median_ops"]
    N, K = BW_RANKS, BW_RANKS_PER_NODE
    nodes = N // K
    image = run.get("image_file_bytes") or 0
    # calibration: the published plain time's metadata-bound part X (the Blue Waters fit of
    # the section above) spread over this job's plain operations at N ranks
    X = (BW_PLAIN_S - BW_PROTO_S) / (1 - 0.05)
    s_op = X / (N * P) if P else float("nan")
    ops = per_node_ops * nodes + (1 + image / (1 << 20))   # + rank 0's read of the image (open + ~1 op per MiB)
    t_meta = ops * s_op
    steps = math.ceil(math.log2(nodes)) if nodes > 1 else 0
    chunk = 1 << 20
    t_bcast = image / LINK_BYTES_PER_S + steps * min(chunk, image) / LINK_BYTES_PER_S
    t_stage = image / STAGE_BYTES_PER_S
    t_local = local["summary"]["wall_s"] if local else float("nan")
    total = t_meta + t_bcast + t_stage + (t_local if t_local == t_local else 0)
    L.append("Inputs measured in this run (%s pass, workload `%s`): a plain rank of the whole stack "
             "makes **P = %s** operations on the shared file system; `mpiimport run` (%d ranks as %d "
             "nodes) makes **%s per node** in all (%s in the whole job), the image is **%.1f MiB**; "
             "the same job plainly from local disk takes **%s** (%s, %d ranks: the node-local floor)."
             % (pass_, w, fmt_int(P), run["ranks"], nodes_measured, ("%.1f" % per_node_ops),
                fmt_int(rs["meta_ops"]), image / 2**20, fmt_dur(t_local) if local else "-",
                "mode local" if local else "not measured", local["ranks"] if local else 0))
    L.append("")
    L.append("**Calibration.** The Blue Waters fit above puts the plain 16,384-rank job's "
             "metadata-bound time at X = %.0f s. Spread over N·P = %s operations (this job's plain "
             "count at N ranks), that is **%.2f µs per operation** of the real file system (with its "
             "clients' caches), against emufs's %d µs uncached. Assumed, not measured here: "
             "%.0f GB/s per link for the leaders' pipelined tree broadcast (%d steps over %s nodes "
             "of %d ranks, 1 MiB chunks) and %.0f GB/s into /dev/shm." % (
                 X, fmt_int(N * P), s_op * 1e6, plain["meta_us"], LINK_BYTES_PER_S / 1e9, steps,
                 fmt_int(nodes), K, STAGE_BYTES_PER_S / 1e9))
    L.append("")
    L.append("| at %s ranks (%s nodes) | seconds |" % (fmt_int(N), fmt_int(nodes)))
    L.append("|---|--:|")
    L.append("| shared-file-system operations: %s per node × %s nodes + rank 0's read of the image, "
             "× %.2f µs | %.3f |" % (("%.1f" % per_node_ops), fmt_int(nodes), s_op * 1e6, t_meta))
    L.append("| the image to the node leaders (tree broadcast) | %.3f |" % t_bcast)
    L.append("| staging it on each node (in parallel) | %.3f |" % t_stage)
    L.append("| each rank's start-up from node-local memory (the local floor measured here: %d "
             "rank%s on %d cores) | %s |" % (local["ranks"] if local else 0,
                                             "" if local and local["ranks"] == 1 else "s", os.cpu_count(),
                                             ("%.2f" % t_local) if local else "-"))
    L.append("| **start-up, exec to the end of the imports** | **%.1f** |" % total)
    L.append("| plain, same model (N·P × the per-operation cost) | %.0f |" % (N * P * s_op))
    L.append("")
    L.append("Not in the model: launching the 16,384 processes and MPI's own start-up (the Blue Waters "
             "fit's T0 = %.0f s includes them, whatever the file system does), and contention "
             "between ranks of a node for its cores. The per-operation cost is inferred from "
             "one published job, not measured on a parallel file system." % (
                 BW_PLAIN_S - X))
    return L


def fmt_dur(s):
    if s != s:
        return "-"
    if s >= 60:
        return "%dm%02ds" % (int(s // 60), int(round(s % 60)))
    return "%.1fs" % s


# ---- main -----------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="build directory (BUILD/python holds mpiimport)")
    ap.add_argument("--emufs", help="emufs binary (default: BUILD/tests/bench/emufs or BUILD/bench/emufs)")
    ap.add_argument("--src", default="/usr", help="tree to serve: must hold lib/python3.X (default /usr)")
    ap.add_argument("--ranks", default="1,2,4,8,16,32")
    ap.add_argument("--workloads", default="numpy,scipy,mpi4py", help="of: " + ", ".join(WORKLOADS))
    ap.add_argument("--modes", default="plain,mpiimport,replay",
                    help="plain; local = plain from local disk (no emufs: the floor); mpiimport = lock-step (MPIIMPORT_RECORD=0), every compiled transport "
                         "but 'self'; replay = a recorded list replayed in one broadcast (one unmeasured "
                         "recording run first, private MPIIMPORT_CACHE_DIR); image = a packed image "
                         "(one unmeasured `python3 -m mpiimport pack` run first, MPIIMPORT_IMAGE on "
                         "local disk, MPIIMPORT_TRUST_IMAGE=1); :NAME picks one transport")
    ap.add_argument("--whole-stack", action="store_true",
                    help="the interpreter executed from the mount and the ranks' shared libraries found "
                         "through LD_LIBRARY_PATH=MNT/lib/<multiarch> (mpirun -x); images packed with the "
                         "whole process recorded")
    ap.add_argument("--ranks-per-node", type=int, default=0, metavar="N",
                    help="simulate nodes of N consecutive ranks (MPIIMPORT_RANKS_PER_NODE=N in every "
                         "mpiimport mode; leaders = ranks 0, N, 2N, ...); default 0: all ranks on one node")
    ap.add_argument("--mpiimport-timeout", type=int, default=300,
                    help="MPIIMPORT_TIMEOUT for the runs (oversubscribed ranks wait long)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--meta-us", type=int, default=50, help="main pass: service time per metadata op")
    ap.add_argument("--read-mbps", type=float, default=500.0)
    ap.add_argument("--wall-meta-us", type=int, default=200)
    ap.add_argument("--wall-ranks", default="1,32")
    ap.add_argument("--wall-workloads", default="numpy+mpi4py")
    ap.add_argument("--wall-repeat", type=int, default=3)
    ap.add_argument("--no-wall", action="store_true", help="skip the wall pass")
    ap.add_argument("--stop-on-error", action="store_true",
                    help="stop at the first failed run (default: record the cell as failed, go on, exit 1)")
    ap.add_argument("--quick", action="store_true",
                    help="small matrix: ranks 1,2,4, numpy, 1 repeat; wall pass 1,4 ranks, 1 repeat")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per mpirun")
    ap.add_argument("--mpirun-args", default="", help="extra mpirun arguments")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench.md"))
    ap.add_argument("--plot", help="PNG (default: --out with .png)")
    ap.add_argument("--json", help="raw results (default: --out with .json)")
    ap.add_argument("--report-from", metavar="JSON",
                    help="no runs: rewrite the report and plot from a previous run's raw results")
    ap.add_argument("--workdir", default=None, help="where mounts and the job go (default: a temp dir)")
    a = ap.parse_args(argv)
    if a.ranks_per_node < 0:
        ap.error("--ranks-per-node: 0 (one node) or a positive number of ranks")
    if a.quick:
        a.ranks, a.workloads, a.repeat = "1,2,4", "numpy", 1
        a.wall_ranks, a.wall_repeat = "1,4", 1
    a.build = os.path.abspath(a.build)
    if a.emufs:
        a.emufs = os.path.abspath(a.emufs)
    a.out = os.path.abspath(a.out)
    base = os.path.splitext(a.out)[0]
    a.plot = os.path.abspath(a.plot or base + ".png")
    a.json = os.path.abspath(a.json or base + ".json")
    return a


def ints(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.report_from:
        with open(args.report_from) as f:
            data = json.load(f)
        for k in ("meta_us", "read_mbps", "repeat", "wall_meta_us", "wall_repeat"):
            setattr(args, k, data["args"][k])
        args.ranks_per_node = data["args"].get("ranks_per_node", 0)   # older results: one node
        data["meta"].setdefault("ranks_per_node", args.ranks_per_node)
        for c in data["cells"]:                 # JSON made the rank keys strings
            c.setdefault("ranks_per_node", args.ranks_per_node)
            for r in c["runs"]:
                for k in ("ranks", "startup", "startup_bytes", "install_window", "mpiimport_stats",
                          "rss_anon_kb", "received_bytes", "recv_bytes", "bcast_bytes", "stage_bytes"):
                    if k in r:                  # install_window: not in results from before the second mark
                        r[k] = {int(kk): v for kk, v in r[k].items()}
            if "error" not in c:
                c["summary"] = summarize(c)
        return write_outputs(args, data["cells"], data["meta"], rewrite_json=False)
    t_start = time.time()
    load_start = os.getloadavg()[0]
    try:
        if not args.emufs:
            for cand in ("tests/bench/emufs", "bench/emufs"):
                if os.access(os.path.join(args.build, cand), os.X_OK):
                    args.emufs = os.path.join(args.build, cand)
                    break
        if not args.emufs or not os.access(args.emufs, os.X_OK):
            raise SetupError("no emufs binary (build it: scripts/bench.sh, or --emufs PATH)")
        for tool in ("mpirun", "fusermount3"):
            if not shutil.which(tool):
                raise SetupError("%s not found" % tool)
        if not os.path.exists("/dev/fuse"):
            raise SetupError("/dev/fuse missing: FUSE is not available here")
        pkg = os.path.join(args.build, "python", "mpiimport")
        if not os.path.isdir(pkg):
            raise SetupError("no mpiimport package in %s (build first)" % pkg)
        ver = "python%d.%d" % sys.version_info[:2]
        if not os.path.isdir(os.path.join(args.src, "lib", ver)):
            raise SetupError("%s has no lib/%s" % (args.src, ver))
        for w in args.workloads.split(",") + args.wall_workloads.split(","):
            if w not in WORKLOADS:
                raise SetupError("unknown workload %r (have %s)" % (w, ", ".join(WORKLOADS)))
        r = subprocess.run([PYTHON, "-c", "import mpiimport; print(','.join(mpiimport.transports()))"],
                           env=dict(os.environ, PYTHONPATH=os.path.join(args.build, "python")),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SetupError("cannot import mpiimport from the build: %s" % r.stderr.strip()[-500:])
        transports = [t for t in r.stdout.strip().split(",") if t and t != "self"]
        modes = mode_list(args, transports)
        main_ranks, wall_ranks = ints(args.ranks), ints(args.wall_ranks)
        workloads, wall_workloads = args.workloads.split(","), args.wall_workloads.split(",")
        total = len(workloads) * len(main_ranks) * len(modes)
        if not args.no_wall:
            total += len(wall_workloads) * len(wall_ranks) * len(modes)
        log("bench: %d cells; modes %s; main ranks %s; %s%s" % (
            total, ", ".join(mode_label(*m) for m in modes), args.ranks,
            "no wall pass" if args.no_wall else "wall pass ranks %s at %d µs" % (args.wall_ranks, args.wall_meta_us),
            "; simulated nodes of %d ranks (MPIIMPORT_RANKS_PER_NODE)" % args.ranks_per_node
            if args.ranks_per_node else ""))
        if max(main_ranks + ([] if args.no_wall else wall_ranks)) > (os.cpu_count() or 1):
            log("bench: note: more ranks than the %d cores: oversubscribed" % os.cpu_count())
        args.log_dir = args.workdir or tempfile.gettempdir()   # failed runs' output goes here
        workdir = tempfile.mkdtemp(prefix="mpiimport-bench-", dir=args.workdir)
        args.workdir = workdir
        job = os.path.join(workdir, "job.py")
        with open(job, "w") as f:
            f.write(JOB)
        cells, counter = [], [0]
        try:
            cells += run_pass(args, "main", args.meta_us, workloads, modes, main_ranks, args.repeat, job,
                              counter, total)
            if not args.no_wall:
                cells += run_pass(args, "wall", args.wall_meta_us, wall_workloads, modes, wall_ranks,
                                  args.wall_repeat, job, counter, total)
        finally:
            # The mounts are gone (EmuFS.__exit__); remove the work directory if nothing is left mounted.
            with open("/proc/self/mountinfo") as f:
                if not any(workdir in line for line in f):
                    shutil.rmtree(workdir, ignore_errors=True)
    except SetupError as e:
        log("bench: %s" % e)
        return 2
    except RunError as e:
        log("\nbench: run failed: %s" % e)
        return 1
    elapsed = time.time() - t_start
    meta = {"argv": sys.argv[1:] if argv is None else argv,
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "elapsed": fmt_dur(elapsed), "elapsed_s": elapsed, "host": platform.node() or "?",
            "python": "Python %s" % platform.python_version(),
            "load_start": load_start, "load_end": os.getloadavg()[0],
            "ranks_per_node": args.ranks_per_node}
    return write_outputs(args, cells, meta, rewrite_json=True)


def slim(cells):
    """The raw results without the per-rank detail the report does not use."""
    out = []
    for c in cells:
        c = dict(c)
        c.pop("summary", None)
        runs = []
        for r in c["runs"]:
            r = dict(r)
            r["ranks"] = {k: {kk: v[kk] for kk in ("meta_ops", "open", "read_bytes")} for k, v in r["ranks"].items()}
            r["import_s"] = [round(x, 4) for x in r["import_s"]]
            r["install_s"] = [round(x, 4) for x in r["install_s"]]
            runs.append(r)
        c["runs"] = runs
        out.append(c)
    return out


def write_outputs(args, cells, meta, rewrite_json):
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    if rewrite_json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "args": {k: v for k, v in vars(args).items()}, "cells": slim(cells)}, f)
            f.write("\n")
    failed = [c for c in cells if "error" in c]
    cells = [c for c in cells if "error" not in c]
    plot_note = plot(cells, args.plot, args)
    text = report(cells, args, meta, plot_note)
    if failed:
        fl = ["## Failed cells", "",
              "These cells did not complete (the report above leaves them out):", ""]
        for c in failed:
            fl.append("* %s pass, `%s`, %s, %d ranks: %s" % (
                c["pass"], c["workload"], mode_label(c["mode"], c["transport"]), c["ranks"],
                c["error"].replace("|", "\\|")))
        text = text.replace("## Reproduce", "\n".join(fl) + "\n\n## Reproduce")
    with open(args.out, "w") as f:
        f.write(text)
    log("\nbench: done in %s; report %s%s; raw %s" % (
        meta["elapsed"], args.out, "" if plot_note else ", plot " + args.plot, args.json))
    if plot_note:
        log("bench: " + plot_note)
    if failed:
        log("bench: %d cell(s) failed (see the report's \"Failed cells\")" % len(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
