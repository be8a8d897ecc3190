"""Faults a real job meets, one case per run. usage: faults.py CASE OUTDIR
  fork      after install() and numpy: os.fork() (the child imports a new
            module and exits normally), then a multiprocessing pool with the
            fork start method whose workers import another; the rank goes on
            importing in lock-step afterwards.
  threads   one thread imports in lock-step while others read get_data /
            path_stats of served modules (a traceback's linecache) in a loop.
Each rank writes OUTDIR/rank<N>.json."""
import json
import os
import sys

case, outdir = sys.argv[1], sys.argv[2]
rank = int(os.environ.get("PMIX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
import mpiimport  # noqa: E402

result = {"installed": mpiimport.install()}
if case == "fork":
    import numpy  # noqa: F401
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        import importlib
        importlib.invalidate_caches()   # the parent's finder is still on sys.meta_path
        import fractions
        import mpiimport as m
        os.write(w, json.dumps({"value": str(fractions.Fraction(1, 3)), "installed": m.installed(),
                                "stats_installed": m.stats()["installed"]}).encode())
        os.close(w)
        sys.exit(0)   # a normal exit: atexit handlers run in the child
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    result["child"] = json.loads(data.decode())
    result["child_status"] = status
    import multiprocessing
    ctx = multiprocessing.get_context("fork")

    def work(x):
        import decimal
        return str(decimal.Decimal(x) / 4)

    with ctx.Pool(2) as pool:
        result["pool"] = pool.map(work, [1, 2, 3])
    import statistics  # the rank itself goes on in lock-step
    result["after"] = statistics.mean([1, 2, 3])
elif case == "threads":
    import threading
    import linecache
    import importlib.util
    stop = threading.Event()
    errors = []
    checked = [0]
    targets = []
    for name in ("json.decoder", "json.scanner", "email.parser", "email.feedparser"):
        spec = importlib.util.find_spec(name)
        # the bytecode cache: bytes rank 0 sent, answered from the C context's knowledge
        pyc = importlib.util.cache_from_source(spec.origin)
        with open(pyc, "rb") as f:
            targets.append((spec.loader, spec.origin, pyc, f.read(), os.stat(spec.origin).st_size))

    def reader():
        while not stop.is_set():
            for loader, origin, pyc, want, size in targets:
                try:
                    got = loader.get_data(pyc)
                    stats = loader.path_stats(origin)
                except Exception as e:  # noqa: BLE001 - reported
                    errors.append(repr(e))
                    continue
                if got != want or stats["size"] != size:
                    errors.append("wrong bytes for %s" % pyc)
                checked[0] += 1
                linecache.getlines(origin)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    import numpy  # noqa: F401
    import scipy.sparse  # noqa: F401
    stop.set()
    for t in threads:
        t.join()
    result["errors"] = errors[:5]
    result["checked"] = checked[0]
if result["installed"]:
    st = mpiimport.stats()
    result["stats"] = {k: st[k] for k in ("fallbacks", "fs_calls", "stage_root", "installed")}
with open(os.path.join(outdir, "rank%d.json" % rank), "w") as f:
    json.dump(result, f, sort_keys=True)
