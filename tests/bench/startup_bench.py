#!/usr/bin/python3
"""Start-up benchmark (issue 5): what a whole job's start-up costs with a packed
image, against one process importing the same modules from a warm local disk,
and what the site hook costs a plain `python3 -c pass`.

    /usr/bin/python3 tests/bench/startup_bench.py --build BUILD [--ranks 32]
        [--workload numpy] [--meta-us 50] [--repeat 3] [--pass-runs 40]
        [--out docs/startup_bench.md]
    (scripts/startup_bench.sh builds first, then runs this)

Cells, each --repeat times (median reported), all with run_bench.py's job
(tests/bench/run_bench.py: the same timing points and checks):
  * local 1      — one process, plain import, Python and packages from /usr on
                   local disk, page cache warm (one unmeasured run first);
  * local R      — R ranks under mpirun, plain, same warm local files: the
                   floor this machine's cores set for R interpreters;
  * emufs R plain  — R ranks, plain, everything read through emufs (the
                   emulated shared file system at --meta-us per operation);
  * emufs R image  — R ranks, `python3 -m mpiimport pack` once (one process),
                   then MPIIMPORT_IMAGE + MPIIMPORT_TRUST_IMAGE=1.
Wall time is from launch until the last rank is past its imports. Ratios
against `local 1` answer the issue's target (<= 1.5 x); against `local R` they
show what is left once the cores are accounted for. For the emufs cells the
report also gives the server operations of rank 0 and of the busiest other
rank between the end of start-up and the end of `install()` (run_bench.py's
install window; empty in plain mode).

Site hook: `python3 -c pass`, --pass-runs times each, interleaved, with the
user site directory (PYTHONUSERBASE) holding the installed hook (mpiimport.pth
and the package, as `cmake --install` puts them in a site directory) and with
an empty one; MPIIMPORT unset, no launcher. Mean, median and standard
deviation of the wall time per run, and the difference.
"""
import argparse
import datetime
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
sys.path.insert(0, HERE)
import run_bench as rb  # noqa: E402  (the emulated file system and the job)

ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = rb.PYTHON


def local_env(args, workload):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MPIIMPORT_"))}
    env.update({
        "PYTHONPATH": os.path.join(args.build, "python"),
        "PYTHONNOUSERSITE": "1",
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "BENCH_MODE": "plain",
        "BENCH_MARK": os.path.join(args.workdir, "no-such-mark"),
        "BENCH_MARK2": os.path.join(args.workdir, "no-such-mark2"),
        "BENCH_CODE": rb.WORKLOADS[workload],
        "BENCH_CHECK": rb.WORKLOAD_CHECK[workload],
    })
    return env


def run_local(args, job, ranks):
    """Plain run from local disk: wall from launch until the last rank's imports are done."""
    env = local_env(args, args.workload)
    if ranks == 1:
        cmd = [PYTHON, job]
    else:
        cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader,tcp",
               "-n", str(ranks), PYTHON, job]
    t0 = time.time()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=args.timeout)
    recs = [rb.ast.literal_eval(line[6:]) for line in p.stdout.splitlines() if line.startswith("BENCH ")]
    if p.returncode != 0 or len(recs) != ranks:
        raise rb.RunError("local run at %d ranks: exit %d, %d/%d reported\n%s" % (
            ranks, p.returncode, len(recs), ranks, p.stderr[-2000:]))
    if any(not (r["file"] or "").startswith("/usr/") for r in recs):
        raise rb.RunError("local run: module not from /usr: %s" % recs[0]["file"])
    return max(r["t_done"] for r in recs) - t0


def site_hook_cost(args):
    """python3 -c pass with the hook in the user site directory vs an empty one."""
    ver = "python%d.%d" % sys.version_info[:2]
    base_on = os.path.join(args.workdir, "userbase-hook")
    base_off = os.path.join(args.workdir, "userbase-empty")
    site_on = os.path.join(base_on, "lib", ver, "site-packages")
    os.makedirs(site_on)
    os.makedirs(os.path.join(base_off, "lib", ver, "site-packages"))
    shutil.copytree(os.path.join(args.build, "python", "mpiimport"), os.path.join(site_on, "mpiimport"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    pth = os.path.join(ROOT, "hooks", "python", "mpiimport.pth")
    shutil.copy(pth, site_on)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "MPIIMPORT", "OMPI_", "PMIX_"))}
    # Check that the hook really is picked up when asked for (MPIIMPORT=1 makes the
    # .pth import mpiimport._site), so the "on" runs measure an installed hook.
    probe = subprocess.run([PYTHON, "-c", "import sys; print('mpiimport._site' in sys.modules)"],
                           env=dict(env, PYTHONUSERBASE=base_on, MPIIMPORT="1"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if probe.stdout.strip() != "True":
        raise rb.RunError("site hook not active with MPIIMPORT=1 from %s: %s %s" % (
            site_on, probe.stdout.strip(), probe.stderr.strip()[-500:]))
    times = {"hook installed": [], "no hook": []}
    for i in range(args.pass_runs + 3):
        for label, base in (("hook installed", base_on), ("no hook", base_off)):
            t0 = time.perf_counter()
            r = subprocess.run([PYTHON, "-c", "pass"], env=dict(env, PYTHONUSERBASE=base))
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                raise rb.RunError("python3 -c pass failed (%s)" % label)
            if i >= 3:                          # three warm-up rounds
                times[label].append(dt * 1e3)
    return times


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--emufs", help="default: BUILD/tests/bench/emufs")
    ap.add_argument("--src", default="/usr")
    ap.add_argument("--ranks", type=int, default=32)
    ap.add_argument("--workload", default="numpy", choices=sorted(rb.WORKLOADS))
    ap.add_argument("--meta-us", type=int, default=50)
    ap.add_argument("--read-mbps", type=float, default=500.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pass-runs", type=int, default=40)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--mpiimport-timeout", type=int, default=300)
    ap.add_argument("--transport", default="mpi")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "startup_bench.md"))
    ap.add_argument("--workdir", default=None, help="where the mount and the job go (default: a temp dir)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    args.emufs = args.emufs or os.path.join(args.build, "tests", "bench", "emufs")
    args.mpirun_args = ""
    if not os.access(args.emufs, os.X_OK):
        rb.log("startup_bench: no emufs at %s (build first)" % args.emufs)
        return 2
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load0 = os.getloadavg()
    t_all = time.time()
    args.workdir = tempfile.mkdtemp(prefix="mpiimport-startup-", dir=args.workdir)
    args.log_dir = args.workdir
    job = os.path.join(args.workdir, "job.py")
    with open(job, "w") as f:
        f.write(rb.JOB)
    R = args.ranks
    res = {}
    try:
        rb.log("startup_bench: local 1 / local %d (warm page cache)" % R)
        run_local(args, job, 1)                               # warm the page cache
        res["local 1"] = [run_local(args, job, 1) for _ in range(args.repeat)]
        res["local %d" % R] = [run_local(args, job, R) for _ in range(args.repeat)]
        with rb.EmuFS(args.emufs, args.src, args.meta_us, args.read_mbps, args.workdir) as fs:
            rb.log("startup_bench: emufs %d plain" % R)
            runs = [rb.run_once(args, fs, job, args.workload, "plain", None, R) for _ in range(args.repeat)]
            res["emufs %d plain" % R] = [r["wall_s"] for r in runs]
            ops_plain = runs[-1]["totals"]["meta_ops"]
            win_plain = runs[-1]["install_window"]
            rb.log("startup_bench: emufs %d image (pack once, then %d runs)" % (R, args.repeat))
            image = os.path.join(args.workdir, "app.mpii")
            rb.pack_image(args, fs, job, args.workload, args.transport, image)
            runs = [rb.run_once(args, fs, job, args.workload, "image", args.transport, R, None, image)
                    for _ in range(args.repeat)]
            for r in runs:
                if not (r["mpiimport_stats"].get(0) or {}).get("replayed"):
                    raise rb.RunError("image: rank 0 did not replay the image")
            res["emufs %d image" % R] = [r["wall_s"] for r in runs]
            ops_image = runs[-1]["totals"]["meta_ops"]
            win_image = runs[-1]["install_window"]
            startup_ops = sum(runs[-1]["startup"].values())
        rb.log("startup_bench: site hook on python3 -c pass (%d runs each)" % args.pass_runs)
        hook = site_hook_cost(args)
    except (rb.RunError, rb.SetupError) as e:
        rb.log("startup_bench: FAILED: %s" % e)
        return 1
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    elapsed = time.time() - t_all
    load1 = os.getloadavg()

    base, floor = med(res["local 1"]), med(res["local %d" % R])
    lines = [
        "# Start-up benchmark (issue 5)",
        "",
        "Generated by `%s` on %s (%s, nproc = %d, %s), %.0f s in all. Load average at the start "
        "%.2f %.2f %.2f, at the end %.2f %.2f %.2f." % (
            " ".join(["tests/bench/startup_bench.py"] + sys.argv[1:]), started, platform.node(),
            os.cpu_count() or 0, "Python %s" % platform.python_version(), elapsed, *load0, *load1),
        "",
        "Workload `%s`; emufs at %d µs per metadata operation, %g MB/s; transport %s; every cell "
        "%d runs, median shown. Wall time: launch until the last rank is past its imports."
        % (rb.WORKLOADS[args.workload].replace("\n", "; "), args.meta_us, args.read_mbps,
           args.transport, args.repeat),
        "",
        "| cell | wall s (median) | all runs | × local 1 | × local %d |" % R,
        "|---|--:|---|--:|--:|",
    ]
    for k in ("local 1", "local %d" % R, "emufs %d plain" % R, "emufs %d image" % R):
        v = med(res[k])
        lines.append("| %s | %.3f | %s | %.2f | %.2f |" % (
            k, v, ", ".join("%.3f" % x for x in res[k]), v / base, v / floor))
    lines += [
        "",
        "Server metadata operations in the last run: plain %d, image %d (of which %d before any hook "
        "can act: the interpreter's own start-up, summed over ranks)." % (ops_plain, ops_image, startup_ops),
        "",
        "Between the end of start-up and the end of `install()` (`import mpiimport` + `install()`; "
        "the same, empty, window in plain mode), in the last run: %s." % "; ".join(
            "%s: a non-root rank makes %s server operations (max over ranks ≠ 0), rank 0 makes %d" % (
                label, max((v["meta_ops"] for k, v in win.items() if k != 0), default="-"),
                win[0]["meta_ops"])
            for label, win in (("plain", win_plain), ("image", win_image))),
        "",
        "## Site hook cost: `python3 -c pass`",
        "",
        "| | runs | mean ms | median ms | stdev ms |",
        "|---|--:|--:|--:|--:|",
    ]
    for k in ("no hook", "hook installed"):
        xs = hook[k]
        lines.append("| %s | %d | %.2f | %.2f | %.2f |" % (
            k, len(xs), statistics.mean(xs), med(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0))
    d = med(hook["hook installed"]) - med(hook["no hook"])
    sd = statistics.stdev(hook["no hook"]) if len(hook["no hook"]) > 1 else 0.0
    lines += ["", "Difference of medians: %+.2f ms (%+.1f %%); one standard deviation of the plain "
              "runs: %.2f ms." % (d, 100.0 * d / med(hook["no hook"]), sd), ""]
    text = "\n".join(lines)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    rb.log("startup_bench: wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
