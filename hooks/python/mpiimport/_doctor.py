"""python3 -m mpiimport doctor — will mpiimport work here, and how?

Checks, in the style of ompi_info / fi_info / ucx_info: the build and its
transports, the launcher and its PMIx server, the settings (MPIIMPORT_*), node
grouping, the stage directory (writable, free space), the cache directory
(owner, mode), the site hook, the shared prefixes in effect; under a parallel
launcher, a self-test on every rank (the collective start, one broadcast,
one import, one staged extension module). Each check is ok, warn or FAIL;
the exit status is 1 when any check failed on this rank, else 0. --json
prints the same as one JSON object (rank 0; another rank prints only what
failed there)."""
import os
import sys

from . import _core, _hook

OK, WARN, FAIL = "ok", "warn", "FAIL"
_PMIX_VARS = ("PMIX_NAMESPACE", "PMIX_SERVER_URI", "PMIX_SERVER_URI2", "PMIX_SERVER_URI3",
              "PMIX_SERVER_URI4", "PMIX_SERVER_URI21")
_EXTENSIONS = ("_decimal", "_ctypes", "_lzma", "_bz2", "_sqlite3", "_ssl", "_multibytecodec")


def _check(checks, name, status, detail, **facts):
    checks.append(dict(name=name, status=status, detail=detail, **facts))


def _launcher(checks):
    env = os.environ
    if "OMPI_COMM_WORLD_SIZE" in env:
        who, size = "mpirun (Open MPI)", env["OMPI_COMM_WORLD_SIZE"]
    elif "SLURM_PROCID" in env:
        who, size = "srun (Slurm)", env.get("SLURM_NTASKS", "?")
    elif "PMI_RANK" in env or "PMIX_RANK" in env:
        who, size = "a PMI launcher", env.get("PMI_SIZE", "?")
    else:
        _check(checks, "launcher", WARN, "none: install() does nothing outside mpirun or srun; run "
               "`mpirun -n 2 python3 -m mpiimport doctor` for the self-test", launcher=None)
        return False
    pmix = [v for v in _PMIX_VARS if v in env]
    if pmix:
        _check(checks, "launcher", OK, "%s, %s ranks; PMIx server: %s" % (who, size, pmix[0]),
               launcher=who, size=size, pmix=True)
        return True
    if "SLURM_PROCID" in env:
        _check(checks, "launcher", FAIL, "%s, %s ranks, but no PMIx server: launch with "
               "`srun --mpi=pmix` (the mpi transport cannot start without it; ofi and ucx bootstrap "
               "through PMIx too)" % (who, size), launcher=who, size=size, pmix=False)
        return False
    _check(checks, "launcher", WARN, "%s, %s ranks; no PMIx variables (the ofi and ucx transports "
           "need a PMIx server)" % (who, size), launcher=who, size=size, pmix=False)
    return True


def _settings(checks):
    config, errors, skipped = _hook._load_config()
    if errors:
        _check(checks, "settings", FAIL, "; ".join(errors) + (" (fix it, or unset it for the default)"),
               errors=errors)
    if config is None:
        return None
    if not errors:
        shown = {k: v for k, v in sorted(config.items()) if v not in ("", None)}
        _check(checks, "settings", OK, ", ".join("%s=%s" % kv for kv in shown.items()), config=shown)
    if config["disable"]:
        _check(checks, "disabled", WARN, "MPIIMPORT_DISABLE is set: install() does nothing")
    return config


def _transports(checks, config):
    names = [n for n in _core.transports() if n != "self"]  # self: one process (pack) only
    chosen = config["transport"] if config and config["transport"] else names[0]
    if chosen not in names:
        _check(checks, "transports", FAIL, "MPIIMPORT_TRANSPORT=%s was not compiled into this build; "
               "compiled: %s" % (chosen, ", ".join(names)), compiled=names)
    else:
        _check(checks, "transports", OK, "compiled: %s; in use: %s%s" % (
            ", ".join(names), chosen, " (the default)" if chosen == names[0] else ""),
            compiled=names, chosen=chosen)


def _node_grouping(checks, config):
    rpn = config["ranks_per_node"] if config else 0
    local = os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE")
    if rpn:
        _check(checks, "nodes", WARN, "simulated: nodes of %d consecutive ranks (MPIIMPORT_RANKS_PER_NODE; "
               "for tests on one machine)" % rpn, ranks_per_node=rpn)
    else:
        _check(checks, "nodes", OK, "real node grouping%s" % (
            " (%s ranks on this node)" % local if local else ""), ranks_per_node=0)


def _stage_dir(checks, config):
    d = config["stage_dir"] if config else "/dev/shm"
    try:
        st = os.statvfs(d)
    except OSError as e:
        _check(checks, "stage directory", FAIL, "%s: %s; set MPIIMPORT_STAGE_DIR to a node-local "
               "directory you can write" % (d, e.strerror), path=d)
        return
    free = st.f_bavail * st.f_frsize
    if not os.path.isdir(d) or not os.access(d, os.W_OK | os.X_OK):
        _check(checks, "stage directory", FAIL, "%s is not a directory this user can write; set "
               "MPIIMPORT_STAGE_DIR to a node-local one" % d, path=d, free_bytes=free)
    elif free < 1 << 30:
        _check(checks, "stage directory", WARN, "%s: only %.0f MiB free (extension modules of a large "
               "stack need hundreds)" % (d, free / 1048576.0), path=d, free_bytes=free)
    else:
        _check(checks, "stage directory", OK, "%s, writable, %.1f GiB free" % (d, free / 1073741824.0),
               path=d, free_bytes=free)


def _cache_dir(checks, config):
    d = config["cache_dir"] if config else ""
    if not config or not config["record"]:
        _check(checks, "cache directory", OK, "recorded lists off (MPIIMPORT_RECORD=0)", path=d)
        return
    if not d:
        _check(checks, "cache directory", WARN, "no cache directory (no HOME?): lists are not recorded")
        return
    why = _hook._unsafe_cache(d, "x.mpiilist")
    if why:
        _check(checks, "cache directory", FAIL, "%s: recorded lists are not used: %s; `chmod go-w %s`, "
               "or set MPIIMPORT_CACHE_DIR to a private directory" % (d, why, d), path=d)
    elif not os.path.exists(d):
        _check(checks, "cache directory", OK, "%s (made 0700 at the first recording)" % d, path=d)
    else:
        lists = [n for n in os.listdir(d) if n.endswith(".mpiilist")]
        _check(checks, "cache directory", OK, "%s, private, %d recorded list(s)" % (d, len(lists)),
               path=d, lists=len(lists))


def _site_hook(checks):
    import site
    dirs = list(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        dirs.append(site.getusersitepackages())
    dirs += [p for p in sys.path if p and p not in dirs]
    found = [d for d in dirs if os.path.isfile(os.path.join(d, "mpiimport.pth"))]
    on = os.environ.get("MPIIMPORT", "0") not in ("", "0")
    if not found:
        _check(checks, "site hook", OK, "not installed (call mpiimport.install(), or use "
               "mpiimport-python); `cmake --install` puts mpiimport.pth into the site directory",
               installed=False)
    elif on:
        _check(checks, "site hook", OK, "%s: active (MPIIMPORT=%s): every python3 under a launcher "
               "installs mpiimport at start-up" % (os.path.join(found[0], "mpiimport.pth"),
                                                   os.environ["MPIIMPORT"]), installed=True, active=True)
    else:
        _check(checks, "site hook", OK, "%s: inactive (set MPIIMPORT=1, e.g. `mpirun -x MPIIMPORT=1`)"
               % os.path.join(found[0], "mpiimport.pth"), installed=True, active=False)


def _prefixes(checks, config):
    if not config:
        return
    prefixes = _hook._prefixes(config)
    live = _hook._live_dirs(config)
    how = "MPIIMPORT_SHARED_PREFIXES" if config["shared_prefixes"] else "the stack at install()"
    _check(checks, "shared prefixes", OK, "%s: %s%s" % (
        how, ":".join(prefixes),
        "; live (read plainly, not a snapshot): %s" % ":".join(live) if live else ""),
        prefixes=prefixes, live=live)


def _self_test(checks):
    """Collective: install, one import served (a broadcast), one extension
    module staged and loaded, then the collective end."""
    if not _hook.install():
        _check(checks, "self-test", FAIL, "install() returned False (see the message above)")
        return
    st0 = _hook.stats()
    name = next((n for n in _EXTENSIONS if n not in sys.modules), None)
    problems = []
    try:
        __import__("colorsys")
        if name is not None:
            module = __import__(name)
            if not getattr(module, "__file__", "").endswith(".so"):
                name = None
    except ImportError as e:
        problems.append("import failed: %s" % e)
    st = _hook.stats()
    size, rank = st["size"], st["rank"]
    if st["fallbacks"] > st0["fallbacks"]:
        problems.append("%d import(s) fell back to plain Python" % (st["fallbacks"] - st0["fallbacks"]))
    if size > 1 and st["bcast_count"] <= st0["bcast_count"] and not st["replayed"]:
        problems.append("no broadcast happened")
    staged = False
    if name is not None:
        with open("/proc/self/maps") as f:
            staged = any(st["stage_root"] in line and name in line for line in f)
        if not staged:
            problems.append("%s was not loaded from the node's stage %s" % (name, st["stage_root"]))
    _hook.uninstall()
    end = _hook.stats()
    # the node's first rank removes the stage, after the node barrier
    local = os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    if local == "0" and os.path.exists(end["stage_root"]):
        problems.append("the stage %s was left behind" % end["stage_root"])
    if problems:
        _check(checks, "self-test", FAIL, "rank %d of %d: %s" % (rank, size, "; ".join(problems)))
    else:
        _check(checks, "self-test", OK, "rank %d of %d, transport %s: start, %d broadcast(s) of %.1f KiB, "
               "import served%s, session ended, stage removed" % (
                   rank, size, end["transport"], end["bcast_count"], end["bcast_bytes"] / 1024.0,
                   ", %s staged and loaded from the stage" % name if name else ""),
               rank=rank, size=size, bcast_count=end["bcast_count"])


def run(as_json=False):
    checks = []
    _check(checks, "mpiimport", OK, "%s, Python %s (%s), package %s" % (
        sys.modules["mpiimport"].__version__, sys.version.split()[0], sys.executable,
        os.path.dirname(os.path.abspath(_hook.__file__))))
    under_launcher = _launcher(checks)
    config = _settings(checks)
    _transports(checks, config)
    _node_grouping(checks, config)
    _stage_dir(checks, config)
    _cache_dir(checks, config)
    _site_hook(checks)
    _prefixes(checks, config)
    if under_launcher and config is not None and not config["disable"]:
        _self_test(checks)
    rank = _hook._launcher_rank_size()[0]
    failed = [c for c in checks if c["status"] == FAIL]
    if rank == 0 or failed:
        shown = checks if rank == 0 else failed
        if as_json:
            import json
            print(json.dumps({"rank": rank, "ok": not failed, "checks": shown}, indent=1, default=str))
        else:
            width = max(len(c["name"]) for c in shown)
            for c in shown:
                print("%s%*s: [%s] %s" % ("rank %d: " % rank if rank else "", width, c["name"],
                                          c["status"], c["detail"]))
            if rank == 0:
                print("%s: %s" % ("doctor".rjust(width), "%d check(s) failed" % len(failed) if failed
                                  else "mpiimport will work here"))
    sys.stdout.flush()
    return 1 if failed else 0
