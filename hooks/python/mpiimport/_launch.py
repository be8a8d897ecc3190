"""mpiimport-python — start a Python program with site initialisation done by
rank 0 alone, as the 2014 prototype's `python -S` and three-stage site.py did.

    mpirun -n 1024 mpiimport-python app.py [args]      (or -m module [args])

The interpreter starts with -S (no site scan). This module then (1) imports
mpiimport and installs it (collective), (2) runs site.main() — Python's own
site initialisation, unchanged — with the file-system questions it asks
(os.listdir, os.path.isdir/exists/isfile, io.open_code of .pth files) answered
through mpiimport: rank 0 reads, every rank gets the answers in one message,
so sys.path, the .pth effects and site.ENABLE_USER_SITE are those of a normal
start-up, and (3) runs the program as `python3 app.py` would.
Without a parallel launcher it simply runs site.main() and the program.
"""
import io
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[0] = os.path.dirname(_here)          # to import mpiimport itself
import mpiimport                               # noqa: E402
from mpiimport import _core, _hook             # noqa: E402

del sys.path[0]


class _SiteFS:
    """os / os.path / io stand-ins for site.py, answering through the session."""

    def __init__(self, session):
        self.s = session

    def _ask(self, fn, path):
        return self.s.need("site", fn, os.path.abspath(path))

    def listdir(self, path):
        names = self._ask(self.s.ctx.listdir, path)
        if names is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        return list(names)

    def isdir(self, path):
        return self._ask(self.s.ctx.dir_state, path) == "dir"

    def exists(self, path):
        return self._ask(self.s.ctx.dir_state, path) != "missing"

    def isfile(self, path):
        return self._ask(self.s.ctx.file, path) is not None  # a directory is a miss here

    def open_code(self, path):
        r = self._ask(self.s.ctx.file, path)
        if r is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        return io.BytesIO(r[0])


class _Delegate:
    def __init__(self, real, **over):
        self.__dict__.update(over)
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)


def _site_main(session):
    import site
    if session is None:
        site.main()
        return
    fs = _SiteFS(session)
    saved = site.os, site.io, getattr(site, "open", None)
    site.os = _Delegate(os, listdir=fs.listdir,
                        path=_Delegate(os.path, isdir=fs.isdir, exists=fs.exists, isfile=fs.isfile))
    site.io = _Delegate(io, open_code=fs.open_code)
    site.open = lambda path, *a, **k: io.TextIOWrapper(fs.open_code(path), encoding=k.get("encoding"))
    try:
        with session.lock:
            try:
                site.main()
            finally:
                session.flush("site")
    except _hook._Fallback as e:
        session.fallback("site", str(e))
        site.os, site.io = saved[0], saved[1]
        site.main()
    finally:
        site.os, site.io = saved[0], saved[1]
        if saved[2] is None:
            del site.open
        else:
            site.open = saved[2]


def main():
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 2
    installed = mpiimport.install()
    _site_main(_hook._state.session if installed else None)
    import runpy
    if argv[0] == "-m":
        if len(argv) < 2:
            sys.stderr.write("mpiimport-python: -m needs a module name\n")
            return 2
        sys.argv[:] = argv[1:]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        script = argv[0]
        sys.argv[:] = argv
        sys.path.insert(0, os.path.dirname(os.path.realpath(script)))
        runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
