#!/usr/bin/python3
"""The project's demo ("main job"): the same MPI job with plain imports, with
mpiimport in lock-step and with mpiimport replaying a recorded import list, side
by side: file-system calls per rank (from strace) and time.

    /usr/bin/python3 scripts/demo.py [--ranks 8] [--build ./build] [--repeat 3]
                                     [--trace | --no-trace] [--out RESULTS.md]
                                     [--explain [N]]

It lives apart from the library and the tests because it measures, it does not
check behaviour: the workload is scripts/demo_job.py (imports numpy,
scipy.linalg, scipy.sparse and mpi4py inside a marked "import window", then
computes and checks a few results); this driver runs it under mpirun in three
modes and reports.

The modes:
  * plain: no mpiimport; every rank imports from the file system itself.
  * mpiimport: mpiimport.install() with MPIIMPORT_RECORD=0, so no recorded
    import list is read or written whatever the cache holds: the first-run,
    lock-step behaviour (one broadcast per import), every time.
  * replay: mpiimport.install() with MPIIMPORT_RECORD=1 and MPIIMPORT_CACHE_DIR
    set to a directory inside the demo's temporary workdir. One untimed
    warm-up run first records the list; the runs below then replay it (rank 0
    re-reads the listed files and sends them in ONE broadcast at install(),
    after which no collective happens).

For each mode (plain, mpiimport, replay):
  * timing: --repeat runs of `mpirun -n R /usr/bin/python3 demo_job.py MODE
    JSON`, without strace; the median of the import-window time (the job's
    own MAX over ranks) and the median wall time of the whole mpirun command.
  * trace (unless --no-trace): one run with every rank under
    `strace -f -qq -y -e trace=%file,%desc -o DIR/trace.<rank>`.
    (-y prints the path behind every file descriptor, so calls on an fd
    opened for a shared file can be counted too.)

What is counted (per rank, one count per syscall line):
  * shared prefixes: the existing directories on /usr/bin/python3's own
    sys.path (asked from a subprocess without PYTHONPATH, so the build tree is
    not one of them); a path lies under a prefix if it equals it or starts
    with it followed by "/".
  * "path calls" (the headline numbers): syscalls that take a file name
    (openat, open, stat, lstat, newfstatat, statx, access, faccessat2,
    readlink, execve, mkdir, unlink, ...) whose path argument lies under a
    shared prefix; a relative path is joined to the directory of its dirfd
    (as strace -y shows it). newfstatat(fd, "", AT_EMPTY_PATH) is an fstat
    and counts as an fd call.
  * "fd calls": any other traced syscall with a file descriptor argument that
    strace -y shows as a shared path (read, pread64, fstat, lseek, mmap,
    getdents64, close, fcntl, ioctl, ...). The table's second block adds them
    to the path calls.
  * "import window": the lines between the rank's begin and end marker
    (access("/mpiimport-demo-marker/begin/rank<N>")), in strace's order, all
    threads; "whole process": every line of the rank's trace.

Nothing is built or installed here: --build must already hold
<build>/python/mpiimport. Every subprocess has a timeout; the traces go to a
temporary directory that is removed at the end. Exit status: 0 when every run
succeeded and every rank's results checked out, 1 when a run failed (its
stderr is shown), 2 when the build, mpirun or strace is missing.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
JOB = os.path.join(HERE, "demo_job.py")
MODES = ("plain", "mpiimport", "replay")
MPIIMPORT_MODES = ("mpiimport", "replay")      # the modes that install() mpiimport
MARKER = "/mpiimport-demo-marker/%s/rank%d"

# Syscalls whose (first) string argument is a file name: strace's %file class.
PATH_SYSCALLS = frozenset("""
    open openat openat2 creat stat lstat stat64 lstat64 newfstatat fstatat64 statx
    access faccessat faccessat2 readlink readlinkat execve execveat chdir chroot
    mkdir mkdirat rmdir unlink unlinkat rename renameat renameat2 link linkat symlink
    symlinkat mknod mknodat chmod fchmodat chown lchown fchownat utime utimes utimensat
    futimesat truncate statfs statfs64 getxattr lgetxattr setxattr lsetxattr listxattr
    llistxattr removexattr lremovexattr inotify_add_watch fanotify_mark name_to_handle_at
    mount umount2 swapon swapoff acct pivot_root quotactl uselib
""".split())

LINE_RE = re.compile(r"^(\d+)\s+([a-z_0-9]+)\((.*)$")
QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
# an fd (or AT_FDCWD) followed by strace -y's <path>
FD_RE = re.compile(r"(?<![\w])(\d+|AT_FDCWD)<([^<>]*)>")


class Failure(Exception):
    """A run failed; the message says which and shows its output."""


# --------------------------------------------------------------------------- running
def job_env(build):
    env = dict(os.environ)
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["PYTHONPATH"] = os.path.join(build, "python")
    return env


def mode_env(env, mode, workdir):
    """The environment of one mode's runs: "mpiimport" never reads or writes a
    recorded list (MPIIMPORT_RECORD=0); "replay" records and replays one in a
    cache directory of its own inside workdir."""
    env = dict(env)
    if mode == "mpiimport":
        env["MPIIMPORT_RECORD"] = "0"
    elif mode == "replay":
        env["MPIIMPORT_RECORD"] = "1"
        env["MPIIMPORT_CACHE_DIR"] = os.path.join(workdir, "cache-replay")
    return env


def run(cmd, env, timeout, what):
    """Runs cmd in its own process group; returns (wall seconds, stdout, stderr).
    Raises Failure on a non-zero exit or a timeout (after ending the group)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = p.communicate(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                out, err = "", ""
        raise Failure("%s: timed out after %d s\ncommand: %s\nstderr:\n%s"
                      % (what, timeout, shlex.join(cmd), tail(err)))
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise Failure("%s: exit status %d\ncommand: %s\nstdout:\n%s\nstderr:\n%s"
                      % (what, p.returncode, shlex.join(cmd), tail(out), tail(err)))
    return wall, out, err


def tail(text, n=6000):
    text = text or ""
    return text if len(text) <= n else "[...]\n" + text[-n:]


def mpirun(args, ranks):
    return (["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", str(ranks)]
            + shlex.split(args.mpirun_args or ""))


def load_result(path, what, err):
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        raise Failure("%s: no result from rank 0 (%s)\nstderr:\n%s" % (what, e, tail(err)))
    if not res.get("ok"):
        raise Failure("%s: the job's checks failed\nstderr:\n%s" % (what, tail(err)))
    return res


def mpiimport_stats(res):
    """Every rank's mpiimport.stats() from a job's result, in rank order ([] in mode plain)."""
    return [p.get("mpiimport") or {} for p in res.get("per_rank") or []]


def replayed_ranks(res):
    """(ranks whose mpiimport.stats() says replayed, ranks) of one run."""
    st = mpiimport_stats(res)
    return sum(1 for x in st if x.get("replayed")), len(st)


def warmup_run(args, mode, env, workdir):
    """One untimed run that records the import list the later runs replay."""
    out = os.path.join(workdir, "%s.warmup.json" % mode)
    what = "%s warm-up run" % mode
    wall, _, err = run(mpirun(args, args.ranks) + [PYTHON, JOB, mode, out], env,
                       args.timeout, what)
    res = load_result(out, what, err)
    cache = env["MPIIMPORT_CACHE_DIR"]
    lists = (sorted(n for n in os.listdir(cache) if n.endswith(".mpiilist"))
             if os.path.isdir(cache) else [])
    log("  %-9s warm-up run (untimed, records the import list): mpirun %.3f s, %d list(s) in %s"
        % (mode, wall, len(lists), cache))
    if not lists:
        log("demo.py: note: the warm-up run recorded no import list in %s; the %s runs "
            "will not replay" % (cache, mode))
    return res


def timing_runs(args, mode, env, workdir):
    runs = []
    for i in range(args.repeat):
        out = os.path.join(workdir, "%s.timing%d.json" % (mode, i))
        what = "%s timing run %d/%d" % (mode, i + 1, args.repeat)
        wall, _, err = run(mpirun(args, args.ranks) + [PYTHON, JOB, mode, out], env,
                           args.timeout, what)
        res = load_result(out, what, err)
        runs.append({"wall_s": wall, "import_s": res["import_s_max"],
                     "numpy_scipy_s": res["numpy_scipy_s_max"], "mpi4py_s": res["mpi4py_s_max"],
                     "install_s": res["install_s_max"], "replayed": replayed_ranks(res)})
        log("  %-9s run %d/%d: import window %.3f s, mpirun %.3f s"
            % (mode, i + 1, args.repeat, res["import_s_max"], wall))
    return runs, res


def traced_run(args, mode, env, workdir, prefixes):
    tdir = os.path.join(workdir, "trace-" + mode)
    os.mkdir(tdir)
    out = os.path.join(workdir, mode + ".traced.json")
    inner = ("exec strace -f -qq -y -e trace=%%file,%%desc -o %s/trace.$OMPI_COMM_WORLD_RANK "
             "%s %s %s %s" % (shlex.quote(tdir), PYTHON, shlex.quote(JOB), mode, shlex.quote(out)))
    what = "%s traced run" % mode
    wall, _, err = run(mpirun(args, args.ranks) + ["sh", "-c", inner], env, args.timeout, what)
    res = load_result(out, what, err)
    ranks = []
    for r in range(args.ranks):
        path = os.path.join(tdir, "trace.%d" % r)
        if not os.path.exists(path):
            raise Failure("%s: no strace output for rank %d (%s)" % (what, r, path))
        c = count_trace(path, r, prefixes, keep_paths=args.explain is not None)
        if not (c["begin_seen"] and c["end_seen"]):
            raise Failure("%s: rank %d's trace lacks the %s marker" %
                          (what, r, "begin" if not c["begin_seen"] else "end"))
        ranks.append(c)
    log("  %-9s traced run: mpirun %.3f s (under strace)" % (mode, wall))
    return ranks, res


# --------------------------------------------------------------------------- counting
def shared_prefixes():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    p = subprocess.run([PYTHON, "-c", "import sys, json; print(json.dumps(sys.path))"],
                       env=env, capture_output=True, text=True, timeout=60, cwd="/")
    if p.returncode != 0:
        raise Failure("cannot ask %s for sys.path:\n%s" % (PYTHON, p.stderr))
    out = []
    for e in json.loads(p.stdout):
        if e and os.path.isabs(e) and os.path.exists(e):
            e = e.rstrip("/") or "/"
            if e not in out:
                out.append(e)
    if not out:
        raise Failure("no existing sys.path entries found for %s" % PYTHON)
    return out


def under(path, prefixes):
    for p in prefixes:
        if path == p or path.startswith(p + "/"):
            return True
    return False


def unescape(s):
    if "\\" not in s:
        return s
    try:
        return s.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        return s


def classify(name, argtext, prefixes):
    """('path' | 'fd' | None, the shared path) for one syscall's argument text."""
    if name in PATH_SYSCALLS:
        m = QUOTED_RE.search(argtext)
        if m is not None and m.group(1):
            path = unescape(m.group(1))
            if not path.startswith("/"):
                fd = FD_RE.match(argtext)       # the dirfd, if it is the first argument
                if fd is None:
                    return None, None
                path = os.path.join(fd.group(2), path)
            path = os.path.normpath(path)
            return ("path", path) if under(path, prefixes) else (None, None)
    for m in FD_RE.finditer(argtext):
        if m.group(1) != "AT_FDCWD" and under(m.group(2), prefixes):
            return "fd", m.group(2)
    return None, None


def count_trace(path, rank, prefixes, keep_paths=False):
    begin, end = MARKER % ("begin", rank), MARKER % ("end", rank)
    c = {"begin_seen": False, "end_seen": False,
         "window": {"path": 0, "fd": 0}, "whole": {"path": 0, "fd": 0},
         "lines": 0, "paths": {}}
    state = "before"                     # -> "window" -> "after"
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE_RE.match(line)
            if m is None:
                continue                 # "<... resumed>", signals: counted where they began
            name, rest = m.group(2), m.group(3)
            if name in ("access", "faccessat", "faccessat2") and "/mpiimport-demo-marker/" in rest:
                if '"%s"' % begin in rest:
                    c["begin_seen"], state = True, "window"
                elif '"%s"' % end in rest:
                    c["end_seen"], state = True, "after"
                continue
            c["lines"] += 1
            if rest.endswith(" <unfinished ...>"):
                argtext = rest[:-len(" <unfinished ...>")]
            else:
                cut = rest.rfind(") = ")
                argtext = rest[:cut] if cut >= 0 else rest
            kind, spath = classify(name, argtext, prefixes)
            if kind is None:
                continue
            c["whole"][kind] += 1
            if state == "window":
                c["window"][kind] += 1
            if keep_paths:
                key = (state, kind, name, spath)
                c["paths"][key] = c["paths"].get(key, 0) + 1
    return c


# --------------------------------------------------------------------------- report
def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def summarise(ranks, scope, kinds):
    vals = [sum(r[scope][k] for k in kinds) for r in ranks]
    nonroot = vals[1:]
    return {"root": vals[0],
            "nonroot_mean": statistics.mean(nonroot) if nonroot else float("nan"),
            "nonroot_max": max(nonroot) if nonroot else float("nan"),
            "total": sum(vals)}


def fmt_num(v):
    if isinstance(v, float):
        return "n/a" if v != v else "%.1f" % v
    return "%d" % v


def ratio(a, b):
    return "n/a" if not a else "%.3f" % (b / a)


def replayed_text(data, mode):
    """yes / no / partly: whether every rank of every run of mode replayed a list."""
    runs = [r["replayed"] for r in data[mode]["timing"]]
    if "traced" in data[mode]:
        runs.append(replayed_ranks(data[mode]["traced"]))
    done, total = sum(r[0] for r in runs), sum(r[1] for r in runs)
    if total and done == total:
        return "yes"
    if not done:
        return "no"
    return "partly (%d of %d)" % (done, total)


def build_rows(data, traced):
    """[(label, plain, mpiimport, replay, mpiimport/plain, replay/plain)] with
    section headings as (label,)."""
    rows = []
    if traced:
        for kinds, title in ((("path",), "File-system calls on shared prefixes (path calls)"),
                             (("path", "fd"), "Path calls + calls on fds of shared files")):
            rows.append((title,))
            for scope, sname in (("window", "import window"), ("whole", "whole process")):
                s = {m: summarise(data[m]["ranks"], scope, kinds) for m in MODES}
                for key, label in (("root", "rank 0"), ("nonroot_mean", "non-root ranks, mean"),
                                   ("nonroot_max", "non-root ranks, max"),
                                   ("total", "all ranks, total")):
                    a, b, c = s["plain"][key], s["mpiimport"][key], s["replay"][key]
                    rows.append(("%s, %s" % (label, sname), fmt_num(a), fmt_num(b), fmt_num(c),
                                 ratio(a, b), ratio(a, c)))
    rows.append(("Time (median of %d runs without strace)" % len(data["plain"]["timing"]),))
    for key, label in (("import_s", "import window, max over ranks [s]"),
                       ("numpy_scipy_s", "  of which numpy + scipy [s]"),
                       ("mpi4py_s", "  of which mpi4py (plain: incl. MPI_Init) [s]"),
                       ("install_s", "import mpiimport + install() [s]"),
                       ("wall_s", "mpirun wall time [s]")):
        a, b, c = (statistics.median(r[key] for r in data[m]["timing"]) for m in MODES)
        if key == "install_s":
            rows.append((label, "-", "%.3f" % b, "%.3f" % c, "-", "-"))
        else:
            rows.append((label, "%.3f" % a, "%.3f" % b, "%.3f" % c, ratio(a, b), ratio(a, c)))
    src = "traced run" if traced else "last timing run"
    rows.append(("mpiimport.stats()",))
    bc = []
    for m in MPIIMPORT_MODES:
        st = mpiimport_stats(data[m]["traced"] if traced else data[m]["result"])
        bc.append(fmt_num(st[0].get("bcast_count", 0)) if st and st[0] else "n/a")
    rows.append(("broadcasts per rank (rank 0's bcast_count, %s)" % src, "-", bc[0], bc[1],
                 "-", "-"))
    rows.append(("replayed (every rank of every run)", "-",
                 replayed_text(data, "mpiimport"), replayed_text(data, "replay"), "-", "-"))
    return rows


def reduction_line(data, mode="mpiimport"):
    a = summarise(data["plain"]["ranks"], "window", ("path",))["nonroot_mean"]
    b = summarise(data[mode]["ranks"], "window", ("path",))["nonroot_mean"]
    if not a:
        return ("reduction of non-root path calls (import window%s): n/a (plain made none)"
                % ("" if mode == "mpiimport" else ", " + mode))
    return ("reduction of non-root path calls (import window) = "
            "1 - %s_nonroot_window_mean / plain_nonroot_window_mean = 1 - %s / %s = %.1f %%"
            % (mode, fmt_num(b), fmt_num(a), 100.0 * (1.0 - b / a)))


def stats_line(res, which="traced run"):
    st = mpiimport_stats(res)
    if not st or not st[0]:
        return None
    mib = 1024.0 * 1024.0
    root = st[0]
    nonroot = st[1:]
    return ("mpiimport.stats() (%s): rank 0 read %d files (%.1f MiB), %d broadcasts "
            "(%.1f MiB), fs_calls %d; non-root ranks: fs_calls %d in all, fs_calls_saved %d "
            "in all; fallbacks on all ranks: %d"
            % (which, root.get("read_count", 0), root.get("read_bytes", 0) / mib,
               root.get("bcast_count", 0), root.get("bcast_bytes", 0) / mib,
               root.get("fs_calls", 0), sum(s.get("fs_calls", 0) for s in nonroot),
               sum(s.get("fs_calls_saved", 0) for s in nonroot),
               sum(s.get("fallbacks", 0) for s in st)))


def text_table(rows):
    w0 = max(len(r[0]) for r in rows if len(r) > 1) + 2
    head = "%-*s %12s %12s %12s %16s %13s" % (w0, "", "plain", "mpiimport", "replay",
                                             "mpiimport/plain", "replay/plain")
    lines = [head, "-" * len(head)]
    for r in rows:
        if len(r) == 1:
            lines.append(r[0] + ":")
        else:
            lines.append("  %-*s %12s %12s %12s %16s %13s" % ((w0 - 2,) + tuple(r)))
    return "\n".join(lines)


def md_table(rows):
    lines = ["| | plain | mpiimport | replay | mpiimport/plain | replay/plain |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if len(r) == 1:
            lines.append("| **%s** | | | | | |" % r[0])
        else:
            lines.append("| %s | %s | %s | %s | %s | %s |" % ((r[0].strip(),) + tuple(r[1:])))
    return "\n".join(lines)


def explain(data, n):
    """The most frequent shared-prefix calls of the non-root ranks: inside the
    window for every mode, and before and after it for mpiimport and replay."""
    out = []
    for mode, scope, where in (("plain", "window", "inside the import window"),
                               ("mpiimport", "window", "inside the import window"),
                               ("mpiimport", "before", "before the import window (start-up, "
                                "import mpiimport, install())"),
                               ("mpiimport", "after", "after the import window (work, exit)"),
                               ("replay", "window", "inside the import window"),
                               ("replay", "before", "before the import window (start-up, "
                                "import mpiimport, install() with the replay)"),
                               ("replay", "after", "after the import window (work, exit)")):
        ranks = data[mode]["ranks"]
        agg = {}
        for r in ranks[1:]:
            for (sc, kind, name, path), v in r["paths"].items():
                if sc == scope:
                    agg[(kind, name, path)] = agg.get((kind, name, path), 0) + v
        out.append("Top shared-prefix calls of non-root ranks %s, %s (summed over %d ranks, "
                   "%d calls in all; kind: path = path argument, fd = on an fd of a shared file):"
                   % (where, mode, len(ranks) - 1, sum(agg.values())))
        if not agg:
            out.append("  (none)")
        for (kind, name, path), v in sorted(agg.items(), key=lambda kv: (-kv[1], kv[0]))[:n]:
            out.append("  %7d  %-4s %-12s %s" % (v, kind, name, path))
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- main
def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=8, help="MPI ranks (default 8)")
    ap.add_argument("--build", default="./build", help="build directory (default ./build)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timing runs per mode (default 3; replay adds one untimed warm-up run)")
    ap.add_argument("--trace", action=argparse.BooleanOptionalAction, default=True,
                    help="one run per mode under strace (default: --trace)")
    ap.add_argument("--out", help="markdown file to append the results to")
    ap.add_argument("--explain", type=int, nargs="?", const=30, default=None, metavar="N",
                    help="list the N (default 30) most frequent shared-prefix calls of the "
                         "non-root ranks: inside the import window (every mode), before and "
                         "after it (mpiimport, replay)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per mpirun (default 600)")
    ap.add_argument("--mpirun-args", default="", help="extra mpirun arguments, one string")
    args = ap.parse_args(argv)
    if args.ranks < 2:
        ap.error("--ranks must be at least 2 (rank 0 and at least one other)")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.explain is not None and not args.trace:
        ap.error("--explain needs --trace")
    return args


def main(argv):
    args = parse_args(argv)
    t_start = time.perf_counter()
    build = os.path.abspath(args.build)
    pkg = os.path.join(build, "python", "mpiimport")
    if not os.path.isfile(os.path.join(pkg, "__init__.py")):
        log("demo.py: %s does not hold a built mpiimport (no %s).\nBuild it first:\n"
            "  cmake -S %s -B %s -DPython3_EXECUTABLE=%s -DTRANSPORT=mpi && cmake --build %s -j2"
            % (build, pkg, REPO, build, PYTHON, build))
        return 2
    for tool in ["mpirun"] + (["strace"] if args.trace else []):
        if shutil.which(tool) is None:
            log("demo.py: %s not found on PATH" % tool)
            return 2
    if not os.path.exists(PYTHON):
        log("demo.py: %s not found" % PYTHON)
        return 2
    set_here = ("MPIIMPORT_RECORD", "MPIIMPORT_CACHE_DIR")
    stray = sorted(k for k in os.environ if k.startswith("MPIIMPORT_") and k not in set_here)
    if stray:
        log("demo.py: note: passing on %s from the environment" % ", ".join(stray))
    overridden = sorted(k for k in set_here if k in os.environ)
    if overridden:
        log("demo.py: note: %s from the environment overridden (mode mpiimport: "
            "MPIIMPORT_RECORD=0; mode replay: MPIIMPORT_RECORD=1 and a private "
            "MPIIMPORT_CACHE_DIR)" % ", ".join(overridden))

    env = job_env(build)
    workdir = tempfile.mkdtemp(prefix="mpiimport-demo-")
    data = {m: {} for m in MODES}
    try:
        prefixes = shared_prefixes()
        log("demo.py: %d ranks, build %s, shared prefixes %s"
            % (args.ranks, build, ":".join(prefixes)))
        for mode in MODES:
            menv = mode_env(env, mode, workdir)
            if mode == "replay":
                data[mode]["warmup"] = warmup_run(args, mode, menv, workdir)
            data[mode]["timing"], data[mode]["result"] = timing_runs(args, mode, menv, workdir)
            if args.trace:
                data[mode]["ranks"], data[mode]["traced"] = traced_run(args, mode, menv, workdir,
                                                                       prefixes)
    except Failure as e:
        log("demo.py: FAILED: %s" % e)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = build_rows(data, args.trace)
    res = data["plain"]["result"]
    nproc = len(os.sched_getaffinity(0))
    title = ("mpiimport demo: %d ranks on one machine (nproc %d, oversubscribed), numpy %s, "
             "scipy %s" % (args.ranks, nproc, res.get("numpy"), res.get("scipy")))
    what = ("counted: syscalls naming a path under %s (strace -f -y -e trace=%%file,%%desc; "
            "one per syscall line; window = between the rank's begin/end markers)"
            % ":".join(prefixes))
    extra = []
    for mode in MPIIMPORT_MODES:
        if replayed_text(data, mode) != ("yes" if mode == "replay" else "no"):
            log("demo.py: note: mode %s replayed a recorded list: %s (expected %s)"
                % (mode, replayed_text(data, mode), "yes" if mode == "replay" else "no"))
    if args.trace:
        extra.append(reduction_line(data))
        extra.append(reduction_line(data, "replay"))
        for mode, which in (("mpiimport", "traced run"), ("replay", "replay, traced run")):
            s = stats_line(data[mode]["traced"], which)
            if s:
                extra.append(s)
    elapsed = time.perf_counter() - t_start
    extra.append("demo run time: %.1f s" % elapsed)

    print(title)
    if args.trace:
        print(what)
    print()
    print(text_table(rows))
    print()
    print("\n".join(extra))
    if args.explain is not None:
        print()
        print(explain(data, args.explain))

    if args.out:
        cmd = shlex.join([PYTHON] + [sys.argv[0]] + list(argv))
        md = ["", "## mpiimport demo, %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
              "", "Command: `%s` (in `%s`)" % (cmd, os.getcwd()), "",
              "%d ranks, `nproc` = %d: all ranks run oversubscribed on one machine, so times "
              "include contention for %d cores; numpy %s, scipy %s."
              % (args.ranks, nproc, nproc, res.get("numpy"), res.get("scipy")), ""]
        if args.trace:
            md += ["Counted: " + what.split(": ", 1)[1] + ".", ""]
        md += [md_table(rows), ""]
        md += ["- " + e for e in extra]
        md.append("")
        with open(args.out, "a") as f:
            f.write("\n".join(md))
        log("demo.py: results appended to %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
