"""python3 -m mpiimport — pack an application's imports into one image file,
or show what an image holds.

    python3 -m mpiimport pack -o app.mpii [--] app.py [args...]
        Runs app.py once, in this one process, with mpiimport installed, and
        writes every file, listing, miss and compiled code object it served to
        app.mpii, and every other path under the shared prefixes the process
        opened, probed or loaded from its start on (the interpreter itself, its
        start-up, the dynamic loader's searches, data files): pack runs itself
        again under `mpiimport run`'s preload and audit libraries, recording. Then: MPIIMPORT_IMAGE=app.mpii mpirun ... python3 app.py
        (rank 0 reads that one file, checks it against the originals unless
        MPIIMPORT_TRUST_IMAGE=1, and broadcasts it once).
    python3 -m mpiimport pack --prefix DIR -o env.mpii
        Packs every directory listing and file under DIR (an environment that
        changes rarely), for `mpiimport run --image env.mpii -- CMD`.
        On a terminal, pack shows its progress (files, MiB, MiB/s).
    python3 -m mpiimport show app.mpii [--all]
        Summarises an image (or a recorded list): its entries by kind, and
        files and bytes by top-level package; --all lists every entry too.
    python3 -m mpiimport stage app.mpii        (one task per node:
        srun --ntasks-per-node=1 ..., mpirun --map-by ppr:1:node ...)
        Stages the image on this node (MPIIMPORT_STAGE_DIR, /dev/shm by
        default) for every later job step of the allocation. Those steps run
        with MPIIMPORT_IMAGE=app.mpii MPIIMPORT_STAGED=1: every rank serves from
        its node's stage, with no collective and no shared-file-system call for
        the image. Stage again after packing again.
    python3 -m mpiimport unstage app.mpii
        Removes this node's stage of the image.
    python3 -m mpiimport doctor [--json]
        Will mpiimport work here, and how? Under mpirun or srun: a self-test.
"""
import argparse
import os
import re
import runpy
import sys
import time

from . import _core, _hook


def _serve_loaded(session, finder):
    """Modules this process loaded before the hook existed (argparse, runpy
    and what they import) are in sys.modules, so the program would not import
    them through the hook and the image would lack them, while the job's ranks
    will need them: look each one up once through the hook, which on rank 0
    reads its code or bytes into the image (sys.modules is not touched)."""
    for name, module in sorted(list(sys.modules.items())):
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.has_location or not spec.origin:
            continue
        if session.shared_dir(os.path.dirname(spec.origin)) is None:
            continue
        parent = name.rpartition(".")[0]
        path = getattr(sys.modules.get(parent), "__path__", None) if parent else None
        try:
            finder.find_spec(name, path)
        except (ImportError, OSError, _core.Error):
            pass  # the program will import it (or fail) as it would without the image


class _Progress:
    """While pack reads, and only when stderr is a terminal: one line of
    stderr (files, MiB read, MiB/s), rewritten in place ('\r') five times a
    second by a thread; on leaving, the last state stays as a summary line.
    counts() -> (files, bytes) is called from that thread."""
    INTERVAL = 0.2

    def __init__(self, counts):
        self.counts, self.t0, self.thread = counts, time.monotonic(), None
        try:
            tty = os.isatty(sys.stderr.fileno())
        except (AttributeError, OSError, ValueError):  # no stderr, or not a file
            tty = False
        if tty:
            import threading
            self.done = threading.Event()
            self.thread = threading.Thread(target=self._run, daemon=True)

    def _write(self, end):
        files, nbytes = self.counts()
        mib = nbytes / 1048576.0
        rate = mib / max(time.monotonic() - self.t0, 1e-6)
        sys.stderr.write("\rmpiimport pack: %d files, %.1f MiB read, %.1f MiB/s\033[K%s" % (files, mib, rate, end))
        sys.stderr.flush()

    def _run(self):
        while not self.done.wait(self.INTERVAL):
            self._write("")

    def __enter__(self):
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.thread is not None:
            self.done.set()
            self.thread.join()
            self._write("\n")


def _read_counts(ctx):
    st = ctx.stats()
    return st["read_count"], st["read_bytes"]


# directories a link may point at that are never followed: pseudo file
# systems, whose "files" are not files
_PACK_NEVER = ("/proc", "/sys", "/dev", "/run")
# a real directory is packed under at most this many spellings (its own
# and those of links to it): link farms stay bounded; the rest pass through
_PACK_SPELLINGS_MAX = 8


def _pack_prefix(args):
    """pack --prefix DIR: every directory and regular file under DIR (a
    stack that changes rarely), each read by the core: listings, stat data
    and bytes. Paths are packed as the program spells them: `mpiimport
    run` answers paths lexically, so a symbolic link to a directory
    (DIR/lib -> lib64, DIR/x -> /elsewhere) is walked as DIR/lib/...: its
    target's files are packed under the link's spelling (the link itself
    stays a link: its directory's listing marks it, and lstat()/readlink()
    of it under `run` are the original's). Bounds: a link is not followed
    when its target is DIR itself or contains it ("/", "..", DIR's
    parents), is a directory already on the way down (a cycle), or lies in
    /proc, /sys, /dev or /run; a real directory is packed under at most
    _PACK_SPELLINGS_MAX spellings. What is not packed passes through under
    `run`, as without the image. Only regular files are read (a FIFO or a
    socket is listed, never opened)."""
    import stat as _stat
    top = os.path.abspath(args.prefix)
    real_top = os.path.realpath(top)
    ctx = _core.Context("self", _hook._suffix_table())
    files = nbytes = linked_dirs = linked_bytes = outside_dirs = refused = setid = 0
    spellings = {}  # (st_dev, st_ino) of a real directory -> times packed

    def refuse_target(p):
        """Why a link to a directory is not followed, or None."""
        t = os.path.realpath(p)
        if t == real_top or real_top.startswith(t.rstrip("/") + "/"):
            return "contains the prefix"
        if any(t == n or t.startswith(n + "/") for n in _PACK_NEVER):
            return "a pseudo file system"
        return None

    try:
        if ctx.dir_state(top) != "dir":
            sys.exit("mpiimport pack: --prefix %s: not a directory" % args.prefix)
        sb = os.stat(top)
        spellings[(sb.st_dev, sb.st_ino)] = 1
        # (path, the (dev, ino) of it and its ancestors up to DIR, through a link?)
        todo = [(top, frozenset([(sb.st_dev, sb.st_ino)]), False)]
        with _Progress(lambda: (files, nbytes)):
            while todo:
                d, chain, via_link = todo.pop()
                for name in ctx.listdir(d) or ():
                    p = d.rstrip("/") + "/" + name
                    try:
                        sb = os.stat(p)  # the target's (a dangling link: skipped)
                        link = os.path.islink(p)
                    except OSError:
                        continue
                    if _stat.S_ISDIR(sb.st_mode):
                        key = (sb.st_dev, sb.st_ino)
                        if key in chain or (link and refuse_target(p)) or \
                                spellings.get(key, 0) >= _PACK_SPELLINGS_MAX:
                            refused += link
                            continue  # listed (as a link to a directory), not descended
                        spellings[key] = spellings.get(key, 0) + 1
                        if link or via_link:
                            linked_dirs += 1
                            if not _hook._is_under(os.path.realpath(p), [real_top]):
                                outside_dirs += 1
                        todo.append((p, chain | {key}, via_link or link))
                        continue
                    if not _stat.S_ISREG(sb.st_mode):
                        continue  # a FIFO, a socket, a device: listed, never opened
                    if sb.st_mode & (_stat.S_ISUID | _stat.S_ISGID):
                        setid += 1
                        continue  # listed, runs from the original (a staged copy has no set-id bit)
                    try:
                        got = ctx.file(p)
                    except _core.Error:
                        got = None  # not a regular file any more: not served
                    if got is not None:
                        files += 1
                        nbytes += len(got[0] or b"")
                        if via_link:
                            linked_bytes += len(got[0] or b"")
        ctx.save(args.output, True, "prefix %s" % top)
    except (_core.Error, OSError) as e:
        sys.exit("mpiimport pack: --prefix %s: %s" % (args.prefix, e))
    finally:
        ctx.close()
    print("mpiimport pack: %s: %d files (%.1f MiB) under %s" % (args.output, files, nbytes / 1048576.0, top),
          file=sys.stderr)
    if setid:
        print("mpiimport pack: %d set-user/group-ID programs listed, not packed: they run from the original "
              "(a staged copy cannot carry the bit)" % setid, file=sys.stderr)
    if linked_dirs or refused:
        print("mpiimport pack: through symbolic links: %d directories (%d outside %s), %.1f MiB packed "
              "under the links' names; %d links to directories not followed"
              % (linked_dirs, outside_dirs, top, linked_bytes / 1048576.0, refused), file=sys.stderr)
    return 0


_RECORD_PATHS = "MPIIMPORT_RECORD_PATHS"    # read by the preload and audit libraries
_RECORD_DIR = "MPIIMPORT_PACK_RECORD_DIR"   # this pack's own: where they write


def _run_libs():
    """libmpiimport_preload.so and libmpiimport_audit.so: in lib/ of the tree
    the package lives in (the build tree: BUILD/python/mpiimport and
    BUILD/lib; an install: PREFIX/lib/pythonX.Y/.../mpiimport and
    PREFIX/lib), or None."""
    d = os.path.dirname(os.path.abspath(_core.__file__))
    for _ in range(5):
        d = os.path.dirname(d)
        libs = [os.path.join(d, "lib", "libmpiimport_%s.so" % n) for n in ("preload", "audit")]
        if all(os.path.isfile(p) for p in libs):
            return libs
    return None


def _record_whole_process():
    """Runs this pack again, from the interpreter's start on, with the
    preload and audit libraries recording every path the process looks at
    (returns only when that cannot be done: imports alone are packed)."""
    if os.environ.get(_RECORD_DIR):
        return
    libs = _run_libs()
    if libs is None or not getattr(sys, "orig_argv", None):
        sys.stderr.write("mpiimport pack: the preload and audit libraries are not beside this "
                         "package: packing the imports only\n")
        return
    import tempfile
    d = tempfile.mkdtemp(prefix="mpiimport-pack-")
    env = dict(os.environ)
    for var, lib in (("LD_PRELOAD", libs[0]), ("LD_AUDIT", libs[1])):
        env[var] = lib + (":" + env[var] if env.get(var) else "")
    env[_RECORD_PATHS] = os.path.join(d, "paths")
    env[_RECORD_DIR] = d
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def _recorded_files(prefix):
    """The files "<prefix>.<pid>.<who>" the preload and audit libraries wrote."""
    d, base = os.path.split(os.path.abspath(prefix))
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return [os.path.join(d, n) for n in names if n.startswith(base + ".")]


def _set_id(path):
    """Whether path is a set-user-ID or set-group-ID file (packed, it would
    run from a staged copy without the bit)."""
    try:
        return bool(os.stat(path).st_mode & (0o4000 | 0o2000))
    except OSError:
        return False


def _add_recorded(session, also=()):
    """What the recording run logged (and what runs under `mpiimport run`
    with MPIIMPORT_RECORD_PATHS=PREFIX logged as passing through: --recorded
    PREFIX), in the stack (session.serves: not in a live directory), into
    the session's context: files (bytes), directories (listings), and what
    is absent (its directory's listing answers). Returns how many paths
    were added."""
    ctx = session.ctx
    d = os.environ.pop(_RECORD_DIR, None)
    os.environ.pop(_RECORD_PATHS, None)
    files = [f for prefix in also for f in _recorded_files(prefix)]
    if d:
        files += [os.path.join(d, n) for n in os.listdir(d)]
    if not files:
        return 0
    paths = {sys.executable, os.path.realpath(sys.executable)}  # exec'd before the recording
    try:
        for name in files:
            with open(name, errors="surrogateescape") as f:
                paths.update(line.rstrip("\n") for line in f)
    finally:
        if d:
            import shutil
            shutil.rmtree(d, ignore_errors=True)
    # and each one's directory, listed: its listing answers every other name
    # there (the dynamic loader's probes of glibc-hwcaps/, tls/, ...)
    paths.update([os.path.dirname(p) for p in paths if p.startswith("/")])
    added = 0
    for p in sorted(paths):
        if not p.startswith("/") or not session.serves(p) or os.path.normpath(p) != p:
            continue  # ("a/../b" may cross a symlink: the stage answers only plain paths)
        try:
            state = ctx.dir_state(p)
            if state == "dir":
                ctx.listdir(p)
            elif state == "notdir" and (_set_id(p) or ctx.file(p) is None):
                continue  # (a set-ID program runs from the original: a staged copy has no set-ID bit)
        except _core.Error:
            continue  # not a regular file (a FIFO, a socket): never served
        added += 1
    return added


def _pack(args):
    if args.prefix:
        return _pack_prefix(args)
    _record_whole_process()
    script = os.path.abspath(args.program[0])
    sys.argv[:] = [script] + args.program[1:]
    sys.path[0] = os.path.dirname(script)
    if not _hook.install(_transport="self"):
        sys.exit("mpiimport pack: could not start (see above)")
    session = _hook._state.session
    status = 0
    with _Progress(lambda: _read_counts(session.ctx)):
        _serve_loaded(session, _hook._state.finder)
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        recorded = _add_recorded(session, args.recorded or ())
    try:
        session.ctx.save(os.path.abspath(args.output), True, "packed image of %s [%s]" % (script, _hook.interpreter_tag()))
    except _core.Error as e:
        sys.exit("mpiimport pack: cannot write %s: %s" % (args.output, e))
    files, nbytes = _read_counts(session.ctx)
    whole = ("; the whole process (start-up, dynamic loader, open()) touched %d paths under the "
             "shared prefixes" % recorded) if recorded else ""
    sys.stderr.write("mpiimport pack: %s: %d files read (%.1f MiB) for %s%s\n"
                     % (args.output, files, nbytes / 1048576.0, script, whole))
    return status


_STDLIB_DIR = re.compile(r"python\d+(\.\d+)?$")  # lib/python3.11: the standard library


def _site_index(dirs):
    """Index in dirs (a path's directory components) of the directory its
    top-level package sits in: the first *-packages directory (site-packages,
    dist-packages), else the first pythonX.Y directory (the standard library;
    its lib-dynload too); None if neither."""
    at = next((i for i, d in enumerate(dirs) if d.endswith("-packages")), None)
    if at is None:
        at = next((i for i, d in enumerate(dirs) if _STDLIB_DIR.match(d)), None)
        if at is not None and dirs[at + 1:at + 2] == ["lib-dynload"]:
            at += 1
    return at


def _top_level(path, prefix, packages):
    """The line of `show` a file or code entry counts in. Under a site
    directory (see _site_index): the first component after it, a module's
    file named as the module (argparse for __pycache__/argparse.cpython-311.pyc,
    _ctypes for _ctypes.cpython-311-x86_64-linux-gnu.so). Else, in an image of
    `pack --prefix DIR`: the first component under DIR (a site directory
    under DIR counts first: lib/python3.11/site-packages/numpy/... is numpy,
    lib/libz.so is lib). Else: the directory its top-level module or package
    sits in (an application's own directory, a PYTHONPATH entry; out of
    __pycache__, and out of each regular package, one whose __init__.py the
    image holds), as DIR/."""
    rel = path[len(prefix):] if prefix and path.startswith(prefix) else None
    parts = (path if rel is None else rel).split("/")
    at = _site_index(parts[:-1])
    if at is None and rel is None:
        d = os.path.dirname(path)
        if os.path.basename(d) == "__pycache__":
            d = os.path.dirname(d)
        while d + "/__init__.py" in packages and os.path.dirname(d) != d:
            d = os.path.dirname(d)
        return d.rstrip("/") + "/"
    parts = parts[at + 1:] if at is not None else parts
    if parts[0] == "__pycache__" and len(parts) > 1:
        parts = parts[1:]
    if len(parts) == 1 and parts[0].endswith((".py", ".pyc", ".so", ".pyd")):
        return parts[0].split(".")[0]
    return parts[0]


def _by_package(label, entries):
    """{line: (entries, bytes)} over the image's file and code entries, with
    the bytes the image holds for them (a stat-only entry holds none); see
    _top_level for the lines. The prefix of a `pack --prefix` image is in its
    label ("prefix DIR"), and the image lists it."""
    prefix = label[len("prefix "):] if label.startswith("prefix ") else None
    if prefix is not None and ("listing", prefix) not in {(e[0], e[2]) for e in entries}:
        prefix = None  # a label cut short (1024 bytes): no prefix rule
    prefix = prefix and prefix.rstrip("/") + "/"
    packages = {e[2] for e in entries if e[0] in ("file", "code") and e[2].endswith("/__init__.py")}
    out = {}
    for kind, flags, path, data_len, size, mtime in entries:
        if kind in ("file", "code"):
            top = _top_level(path, prefix, packages)
            n, b = out.get(top, (0, 0))
            out[top] = (n + 1, b + data_len)
    return out


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1024.0


def _show(args):
    """show IMAGE: what the image is, its entries by kind, and one line per
    top-level package (entries, bytes; biggest first) with their total.
    --all: then every entry, in the image's order."""
    try:
        label, entries = _core.read_image(args.image)
    except _core.Error as e:
        sys.exit("mpiimport show: %s" % e)
    totals = {}
    for kind, flags, path, data_len, size, mtime in entries:
        n, b = totals.get(kind, (0, 0))
        totals[kind] = (n + 1, b + data_len)
    print("%s: %s, %d entries, %.2f MiB of data, format version %d"
          % (args.image, label or "image", len(entries), sum(b for _, b in totals.values()) / 1048576.0, 1))
    for kind in ("file", "code", "listing", "miss"):
        if kind in totals:
            print("  %-8s %6d  %10d bytes" % (kind, totals[kind][0], totals[kind][1]))
    packages = _by_package(label, entries)
    print("by top-level package (%d; file and code entries, bytes held, biggest first):" % len(packages))
    row = "  %-32s %6d %12d bytes %10s"
    for name, (n, b) in sorted(packages.items(), key=lambda kv: (-kv[1][1], kv[0])):
        print(row % (name, n, b, _size(b)))
    n, b = sum(n for n, _ in packages.values()), sum(b for _, b in packages.values())
    print(row % ("(total)", n, b, _size(b)))
    if args.all:
        print("every entry (kind, bytes held, path):")
        for kind, flags, path, data_len, size, mtime in entries:
            note = " (stat only)" if flags & _core.FILE_STAT_ONLY else (
                " (bytes not stored)" if flags & _core.FILE_DATA_OMITTED else "")
            print("  %-8s %10d  %s%s" % (kind, data_len, path, note))
    return 0


def _node_name():
    try:
        return os.uname().nodename
    except OSError:
        return "this node"


def _stage(args):
    try:
        already, files, nbytes, root = _core.stage_image(args.image)
    except (_core.Error, ValueError) as e:
        if "not ours" in str(e):   # the stage's name is taken: never the image's fault
            print("mpiimport stage: %s: the stage's name for %s is not ours (another user's, or open to "
                  "others, or a link): nothing staged; jobs run plainly until it is gone"
                  % (_node_name(), args.image), file=sys.stderr)
            return 1
        print("mpiimport stage: %s: %s (nothing staged; check the image with `python3 -m mpiimport "
              "show %s`)" % (_node_name(), e, args.image), file=sys.stderr)
        return 1
    if already:
        print("mpiimport stage: %s: %s is staged already in %s" % (_node_name(), args.image, root))
    else:
        print("mpiimport stage: %s: staged %s (%d files, %.1f MiB) in %s"
              % (_node_name(), args.image, files, nbytes / 1048576.0, root))
    print("mpiimport stage: run the job steps with MPIIMPORT_IMAGE=%s MPIIMPORT_STAGED=1; "
          "`python3 -m mpiimport unstage %s` removes it" % (args.image, args.image))
    return 0


def _unstage(args):
    try:
        removed, root = _core.unstage_image(args.image)
    except (_core.Error, ValueError) as e:
        print("mpiimport unstage: %s: %s" % (_node_name(), e), file=sys.stderr)
        return 1
    print("mpiimport unstage: %s: %s %s" % (_node_name(), "removed" if removed else "nothing staged at",
                                            root))
    return 0


def _doctor_doc():
    from . import _doctor
    return _doctor.__doc__


class _Parser(argparse.ArgumentParser):
    """A usage error (an unknown command, a missing or bad argument): the
    usage, the error, where to look next; exit status 2."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, "%s: error: %s\nTry `%s --help` for what it takes.\n" % (self.prog, message, self.prog))


_PACK_HELP = """examples:
  python3 -m mpiimport pack -o app.mpii -- app.py [args...]
      runs app.py once, here, and writes what it imported to app.mpii
  python3 -m mpiimport pack --prefix /opt/env -o env.mpii
      packs every directory listing and file under /opt/env
On a terminal, pack shows files, MiB read and MiB/s as it goes."""

_SHOW_HELP = """Prints the image's label, its entries by kind, and one line per top-level
package with its file and code entries and the bytes the image holds for
them, biggest first, then their total. The line of an entry: under a site
directory (*-packages, or pythonX.Y for the standard library) the first name
after it (a module's file as the module); else, in a `pack --prefix DIR`
image, the first name under DIR; else the directory its top-level module or
package sits in (an application's own, a PYTHONPATH entry), as DIR/.
--all then lists every entry."""


def main(argv=None):
    raw = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog="python3 -m mpiimport", description=__doc__, formatter_class=raw)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           title="commands (python3 -m mpiimport COMMAND --help for each)")
    pk = sub.add_parser("pack", help="run a program once and write its imports to an image",
                        description="Write a packed image: of what a program imports, or of a whole directory.",
                        epilog=_PACK_HELP, formatter_class=raw)
    pk.add_argument("-o", "--output", required=True, metavar="IMAGE", help="the image file to write")
    pk.add_argument("--prefix", metavar="DIR", help="pack every file under DIR instead of running a program")
    pk.add_argument("--recorded", metavar="PREFIX", action="append",
                    help="also pack what jobs logged as passing through (`mpiimport run` with "
                         "MPIIMPORT_RECORD_PATHS=PREFIX: files PREFIX.<pid>.*); repeatable")
    pk.add_argument("program", nargs=argparse.REMAINDER, metavar="[--] PROGRAM [ARGS...]",
                    help="the Python script to run, and its arguments")
    sh = sub.add_parser("show", help="summarise an image by top-level package (--all: every entry)",
                        description="Summarise a packed image or a recorded list.", epilog=_SHOW_HELP,
                        formatter_class=raw)
    sh.add_argument("image", help="a packed image (.mpii) or a recorded list (.mpiilist)")
    sh.add_argument("--all", action="store_true", help="also list every entry")
    st = sub.add_parser("stage", help="stage an image on this node for later job steps (one task per node)",
                        description="Stage a packed image on this node (MPIIMPORT_STAGE_DIR, /dev/shm by "
                        "default) for the later job steps of the allocation; run one task per node.")
    st.add_argument("image", help="the packed image (python3 -m mpiimport pack)")
    us = sub.add_parser("unstage", help="remove this node's stage of an image",
                        description="Remove this node's stage of a packed image.")
    us.add_argument("image", help="the packed image that was staged")
    dr = sub.add_parser("doctor", help="will mpiimport work here, and how? (under mpirun: a self-test)",
                        description=_doctor_doc(), formatter_class=raw)
    dr.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args, extra = p.parse_known_args(argv)
    if extra:  # named by the command they were given to
        sub.choices[args.command].error("unrecognized arguments: %s" % " ".join(extra))
    if args.command == "doctor":
        from . import _doctor
        return _doctor.run(args.json)
    if args.command == "stage":
        return _stage(args)
    if args.command == "unstage":
        return _unstage(args)
    if args.command == "pack":
        if args.program and args.program[0] == "--":
            args.program = args.program[1:]
        if args.prefix and args.program:
            pk.error("give either --prefix DIR or a program, not both")
        if not args.prefix and not args.program:
            pk.error("name the program to run (pack -o IMAGE -- app.py [args]) "
                     "or a directory (pack --prefix DIR -o IMAGE)")
        if args.prefix and not os.path.isdir(args.prefix):
            pk.error("--prefix %s: not a directory" % args.prefix)
        if args.program and not os.path.isfile(args.program[0]):
            pk.error("%s: no such file (the program is a Python script)" % args.program[0])
        return _pack(args)
    if not os.path.exists(args.image):
        sh.error("%s: no such file" % args.image)
    try:
        return _show(args)
    except BrokenPipeError:  # show IMAGE | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
