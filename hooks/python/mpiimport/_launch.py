"""mpiimport-python — python3's command line, with site initialisation done by
rank 0 alone, as the 2014 prototype's `python -S` and three-stage site.py did.

    mpirun -n 1024 mpiimport-python [option] ... [-c cmd | -m mod | file | -] [arg] ...

The wrapper script (mpiimport-python.in) gives the options that act on the
interpreter itself (-u, -B, -O, -W, -X, ...) to the interpreter, which it
always starts with -S (no site scan), and gives this module the rest:

    _launch.py [-S] [-x] (-c cmd | -m mod | - | [--] file) [arg] ...

This module then (1) sets sys.argv and a fresh __main__ as python3 does before
site, (2) imports mpiimport and installs it (collective), (3) unless -S was
given, runs site.main() — Python's own site initialisation, unchanged — with
the file-system questions it asks (os.listdir, os.path.isdir/exists/isfile,
io.open_code of .pth files) answered through mpiimport: rank 0 reads, every
rank gets the answers in one message, so sys.path, the .pth effects and
site.ENABLE_USER_SITE are those of a normal start-up, and (4) puts sys.path[0]
in place and runs the program in __main__ as CPython 3.11 does
(Modules/main.c, Python/pythonrun.c): -c and - exec their code, -m and a
directory or zip file go through runpy, a file is compiled (a .pyc loaded)
with -x skipping its first line. An exception the program does not catch is
reported without this module's frames.
Without a parallel launcher it simply runs site.main() and the program.
"""
import _frozen_importlib            # CPython's import machinery (frozen): the
import _frozen_importlib_external   # loaders python3 gives __main__ come from it
import builtins
import io
import os
import sys

_package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not sys.flags.safe_path:
    del sys.path[0]                            # this file's directory
sys.path.insert(0, _package_dir)               # to import mpiimport itself
import mpiimport                               # noqa: E402
from mpiimport import _hook                    # noqa: E402

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


def _command_line(argv):
    """The wrapper's  [-S] [-x] (-c cmd | -m mod | - | [--] file) [arg] ...  as
    (options, program, sys.argv): program is the command, the module or the
    file named; sys.argv's first item says which form it is ('-c', '-m', '-'
    or the file), as python3 sets it. Without a program, exits with status 2:
    python3 would read one from stdin, or prompt, on every rank."""
    options = set()
    while argv[:1] in (["-S"], ["-x"]):
        options.add(argv.pop(0))
    if argv[:1] in (["-c"], ["-m"]) and len(argv) > 1:
        return options, argv[1], [argv[0]] + argv[2:]
    if argv[:1] == ["--"]:
        del argv[0]
    if argv:
        return options, argv[0], argv
    sys.stderr.write("mpiimport-python: no program given (there is no interactive prompt: "
                     "give -c cmd, -m mod, a file, or - to read the program from stdin)\n"
                     "usage: mpiimport-python [option] ... [-c cmd | -m mod | file | -] [arg] ...\n")
    sys.exit(2)


def _fresh_main():
    """A new __main__ module, as CPython's add_main_module makes it, in place
    of this one: the program runs in it, and it stays after the program."""
    main = type(sys)("__main__")
    main.__annotations__ = {}
    main.__builtins__ = builtins
    main.__loader__ = _frozen_importlib.BuiltinImporter
    sys.modules["__main__"] = main
    return main


def _path0(argv0):
    """sys.path[0] for the program, as CPython computes it from sys.argv[0]
    (_PyPathConfig_ComputeSysPath0): '' for -c, the current directory for -m,
    the real directory of the file (or '' for -) otherwise."""
    if argv0 == "-c":
        return ""
    if argv0 == "-m":
        return os.getcwd()
    try:
        argv0 = os.path.realpath(argv0, strict=True)
    except OSError:
        pass
    return os.path.dirname(argv0)


def _run_filename(path):
    """The file's name as python3 makes it absolute (_Py_abspath: the current
    directory joined to it, not normalised): __file__ and the code's name."""
    if path in ("", "."):
        return os.getcwd()
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def _path_importer(path):
    """What PyImport_GetImporter gives for path: sys.path_importer_cache's
    entry, made by the first of sys.path_hooks that takes it (None if none)."""
    if path in sys.path_importer_cache:
        return sys.path_importer_cache[path]
    sys.path_importer_cache[path] = None
    for hook in sys.path_hooks:
        try:
            importer = hook(path)
        except ImportError:
            continue
        sys.path_importer_cache[path] = importer
        return importer
    return None


def _file_code(filename, skip_first_line):
    """The code of a program file and the loader class python3 names for it:
    a .pyc file (by name, or by its magic number) is unmarshalled as
    run_pyc_file does, anything else compiled as source."""
    with io.open_code(filename) as f:
        data = f.read()
    external = _frozen_importlib_external
    magic = external.MAGIC_NUMBER
    if filename.endswith(".pyc") or (not skip_first_line and data[:2] == magic[:2]):
        import marshal
        if data[:4] != magic:
            raise RuntimeError("Bad magic number in .pyc file")
        try:
            code = marshal.loads(data[16:])
        except (EOFError, ValueError, TypeError):
            code = None
        if type(code) is not type(_file_code.__code__):  # not a code object
            raise RuntimeError("Bad code object in .pyc file")
        return code, external.SourcelessFileLoader
    if skip_first_line:
        data = b"".join(data.partition(b"\n")[1:])  # the newline stays: line numbers do not change
    return compile(data, filename, "exec"), external.SourceFileLoader


def _exec_as_file(main, filename, code):
    """Runs code in __main__ with __file__ (and __cached__) set while it runs,
    as _PyRun_SimpleFileObject does."""
    namespace = main.__dict__
    namespace.update(__file__=filename, __cached__=None)
    try:
        exec(code, namespace)
    finally:
        namespace.pop("__file__", None)
        namespace.pop("__cached__", None)


def _run_program(main, program, skip_first_line):
    """Puts sys.path[0] in place and runs the program as pymain_run_python
    does; returns an exit status when the file cannot be opened."""
    form = sys.argv[0] if sys.argv[0] in ("-c", "-m", "-") else "file"
    if form == "file":
        filename = _run_filename(program)
        if _path_importer(filename) is not None:  # a directory or zip file: run its __main__
            sys.path.insert(0, filename)
            import runpy
            runpy._run_module_as_main("__main__", False)
            return 0
    if not sys.flags.safe_path:
        sys.path.insert(0, _path0(sys.argv[0]))
    if form == "-c":
        exec(compile(program + "\n", "<string>", "exec"), main.__dict__)
    elif form == "-m":
        import runpy
        runpy._run_module_as_main(program, True)
    elif form == "-":
        with io.open(0, "rb", closefd=False) as stdin:  # fd 0, as python3 reads it
            source = stdin.read()
        _exec_as_file(main, "<stdin>", compile(source, "<stdin>", "exec"))
    else:
        try:
            code, loader = _file_code(filename, skip_first_line)
        except OSError as e:
            sys.stderr.write("%s: can't open file %r: [Errno %d] %s\n"
                             % (sys.executable, filename, e.errno, e.strerror))
            return 2
        main.__loader__ = loader("__main__", filename)
        _exec_as_file(main, filename, code)
    return 0


def _report_without_launcher_frames():
    """Makes the report of the program's uncaught exception (sys.excepthook,
    called by the interpreter as this module ends) start at the program's
    first frame, as python3's does."""
    hook = sys.excepthook
    launcher = globals()

    def excepthook(exc_type, exc, tb):
        while tb is not None and tb.tb_frame.f_globals is launcher:
            tb = tb.tb_next
        hook(exc_type, exc.with_traceback(tb), tb)

    sys.excepthook = excepthook


def main():
    options, program, argv = _command_line(sys.argv[1:])
    sys.argv[:] = argv
    main_module = _fresh_main()
    installed = mpiimport.install()
    if "-S" not in options:
        _site_main(_hook._state.session if installed else None)
    try:
        return _run_program(main_module, program, "-x" in options)
    except BaseException:
        _report_without_launcher_frames()
        raise


if __name__ == "__main__":
    sys.exit(main())
