"""python3 -m mpiimport — pack an application's imports into one image file,
or show what an image holds.

    python3 -m mpiimport pack -o app.mpii [--] app.py [args...]
        Runs app.py once, in this one process, with mpiimport installed, and
        writes every file, listing, miss and compiled code object it served to
        app.mpii. Then: MPIIMPORT_IMAGE=app.mpii mpirun ... python3 app.py
        (rank 0 reads that one file, checks it against the originals unless
        MPIIMPORT_TRUST_IMAGE=1, and broadcasts it once).
    python3 -m mpiimport pack --prefix DIR -o env.mpii
        Packs every directory listing and file under DIR (an environment that
        changes rarely), for `mpiimport run --image env.mpii -- CMD`.
    python3 -m mpiimport show app.mpii [--all]
        Lists the entries of an image (or of a recorded list) and their sizes.
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
    """On a terminal, pack shows what it has read so far (files, MiB, rate),
    twice a second, on one line of stderr."""

    def __init__(self, session):
        import threading
        self.session, self.t0 = session, time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _line(self):
        st = self.session.ctx.stats()
        mib = st["read_bytes"] / 1048576.0
        dt = max(time.monotonic() - self.t0, 1e-6)
        return "mpiimport pack: %d files, %.1f MiB read, %.1f MiB/s" % (st["read_count"], mib, mib / dt)

    def _run(self):
        while not self.done.wait(0.5):
            sys.stderr.write("\r" + self._line() + "\033[K")
            sys.stderr.flush()

    def stop(self):
        self.done.set()
        self.thread.join()
        sys.stderr.write("\r" + self._line() + "\033[K\n")
        sys.stderr.flush()


def _pack_prefix(args):
    """pack --prefix DIR: every directory and regular file under DIR (a
    stack that changes rarely), each read once by the core: listings, stat
    data and bytes. Symlinked directories are listed, not descended into."""
    top = os.path.abspath(args.prefix)
    ctx = _core.Context("self", _hook._suffix_table())
    files = nbytes = 0
    try:
        if ctx.dir_state(top) != "dir":
            sys.exit("mpiimport pack: --prefix %s: not a directory" % args.prefix)
        todo = [top]
        while todo:
            d = todo.pop()
            for name in ctx.listdir(d) or ():
                p = d.rstrip("/") + "/" + name
                if ctx.dir_state(p) == "dir":
                    if not os.path.islink(p):
                        todo.append(p)
                    continue
                try:
                    got = ctx.file(p)
                except _core.Error:
                    got = None  # not a regular file (a FIFO, a socket): not served
                if got is not None:
                    files += 1
                    nbytes += len(got[0] or b"")
        ctx.save(args.output, True, "prefix %s" % top)
    except (_core.Error, OSError) as e:
        sys.exit("mpiimport pack: --prefix %s: %s" % (args.prefix, e))
    finally:
        ctx.close()
    print("mpiimport pack: %s: %d files (%.1f MiB) under %s" % (args.output, files, nbytes / 1048576.0, top),
          file=sys.stderr)
    return 0


def _pack(args):
    if args.prefix:
        if args.program:
            sys.exit("mpiimport pack: give either --prefix DIR or a program, not both")
        return _pack_prefix(args)
    if not args.program:
        sys.exit("mpiimport pack: name the program to run: pack -o OUT -- app.py [args]")
    script = os.path.abspath(args.program[0])
    if not os.path.isfile(script):
        sys.exit("mpiimport pack: %s: no such file" % args.program[0])
    sys.argv[:] = [script] + args.program[1:]
    sys.path[0] = os.path.dirname(script)
    if not _hook.install(_transport="self"):
        sys.exit("mpiimport pack: could not start (see above)")
    session = _hook._state.session
    progress = _Progress(session) if sys.stderr.isatty() else None
    _serve_loaded(session, _hook._state.finder)
    status = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        if progress is not None:
            progress.stop()
    try:
        session.ctx.save(os.path.abspath(args.output), True, "packed image of %s" % script)
    except _core.Error as e:
        sys.exit("mpiimport pack: cannot write %s: %s" % (args.output, e))
    st = session.ctx.stats()
    sys.stderr.write("mpiimport pack: %s: %d files read (%.1f MiB) for %s\n"
                     % (args.output, st["read_count"], st["read_bytes"] / 1048576.0, script))
    return status


def _by_package(entries):
    """{top-level package: (entries, bytes)} for file and code entries: the
    path component after the longest root that is a sys.path directory (or a
    *-packages directory, or the standard library)."""
    roots = sorted({os.path.normpath(p) for p in sys.path if p and os.path.isabs(p)}, key=len, reverse=True)
    out = {}
    for kind, flags, path, data_len, size, mtime in entries:
        if kind not in ("file", "code"):
            continue
        rel = None
        for r in roots:
            if path.startswith(r + "/"):
                rel = path[len(r) + 1:]
                break
        if rel is None:
            parts = path.split("/")
            at = next((i for i in range(len(parts) - 1, -1, -1)
                       if parts[i].endswith("-packages") or parts[i].startswith("python3")), None)
            # outside any such root (an application's own directory): the directory
            d = os.path.dirname(path)
            d = os.path.dirname(d) if os.path.basename(d) == "__pycache__" else d
            rel = "/".join(parts[at + 1:]) if at is not None else d + "/"
        top = rel if rel.startswith("/") else rel.split("/")[0]
        for suffix in (".py", ".pyc"):
            if top.endswith(suffix):
                top = top[:-len(suffix)]
        top = top.split(".cpython-")[0]
        n, b = out.get(top, (0, 0))
        out[top] = (n + 1, b + data_len)
    return out


def _show(args):
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
    packages = _by_package(entries)
    print("by top-level package (files and code; %d packages):" % len(packages))
    for name, (n, b) in sorted(packages.items(), key=lambda kv: (-kv[1][1], kv[0]))[:None if args.all else 25]:
        print("  %-32s %6d  %9.2f MiB" % (name, n, b / 1048576.0))
    if not args.all and len(packages) > 25:
        print("  ... %d more (--all lists every package and every entry)" % (len(packages) - 25))
    if args.all:
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


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m mpiimport", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="run a program once and write its imports to an image")
    pk.add_argument("-o", "--output", required=True)
    pk.add_argument("--prefix", help="pack every file under this directory instead of running a program")
    pk.add_argument("program", nargs=argparse.REMAINDER)
    sh = sub.add_parser("show", help="list an image's entries")
    sh.add_argument("image")
    sh.add_argument("--all", action="store_true")
    st = sub.add_parser("stage", help="stage an image on this node for later job steps (one task per node)")
    st.add_argument("image")
    us = sub.add_parser("unstage", help="remove this node's stage of an image")
    us.add_argument("image")
    dr = sub.add_parser("doctor", help="will mpiimport work here, and how? (under mpirun: a self-test)",
                        description=_doctor_doc())
    dr.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = p.parse_args(argv)
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
        return _pack(args)
    return _show(args)


if __name__ == "__main__":
    sys.exit(main())
