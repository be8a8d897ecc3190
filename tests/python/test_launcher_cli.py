"""mpiimport-python takes python3's command line: -c, -m, - and a file (after
`--` too), the interpreter's options before them (-u -B -O -W -X -S -I ...,
alone or combined), -h / -V, and python3's usage errors. Each form runs under
mpirun with the build tree's launcher and is compared with what plain
/usr/bin/python3 gives for it: sys.argv, sys.path, __main__, sys.flags,
output, exit status and tracebacks; the hook is installed on every rank."""
import glob
import json
import os
import subprocess

import pytest

from conftest import MPIRUN, PYTHON, job_env

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD") or os.path.dirname(os.environ["PYTHONPATH"].split(":")[0])
LAUNCHER = os.path.join(BUILD, "bin", "mpiimport-python")
ENV = {"PYTHONPATH": "", "MPIIMPORT_TIMEOUT": "60"}  # the launcher finds mpiimport itself

# What the program sees, as one JSON line; at exit, whether __main__ is still
# the program's module and still has __file__.
PROBE = '''\
import atexit, json, sys, warnings
probe_marker = 1
print("PROBE " + json.dumps({
    "argv": sys.argv, "path": sys.path, "name": __name__,
    "file": globals().get("__file__"), "cached": "__cached__" in globals(),
    "package": __package__, "spec": __spec__ and __spec__.name,
    "loader": [c.__name__ for c in (__loader__ if isinstance(__loader__, type) else type(__loader__)).__mro__
               if c.__module__.startswith("_frozen_importlib")][0],  # the hook's subclass importlib's
    "builtins": type(__builtins__).__name__, "annotations": __annotations__,
    "main_is_this": vars(sys.modules["__main__"]) is globals(),
    "flags": {f: getattr(sys.flags, f) for f in sys.flags.__match_args__},
    "debug": __debug__, "write_through": sys.stdout.write_through,
    "dont_write_bytecode": sys.dont_write_bytecode, "xoptions": sys._xoptions,
    "warnoptions": sys.warnoptions,
    "filters": [[a, str(m), c.__name__, str(mod), n] for a, m, c, mod, n in warnings.filters],
    "site": "site" in sys.modules,
    "hook": "mpiimport" in sys.modules and sys.modules["mpiimport"].installed(),
}))
atexit.register(lambda: print("PROBE-EXIT", json.dumps(
    ["probe_marker" in vars(sys.modules["__main__"]), "__file__" in vars(sys.modules["__main__"])])))
'''


def launch(tmp_path, args, n=2, stdin=None, extra_env=None):
    """mpirun -n n mpiimport-python args... in tmp_path: (exit status, each
    rank's stdout, each rank's stderr, mpirun's stderr)."""
    out = tmp_path / ("mpirun-out-%d" % len(list(tmp_path.glob("mpirun-out-*"))))
    cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader,tcp",
           "--output-filename", str(out), "-n", str(n), LAUNCHER] + list(args)
    p = subprocess.run(cmd, cwd=str(tmp_path), input=stdin, env=job_env(dict(ENV, **(extra_env or {}))),
                       capture_output=True, text=True, timeout=300)

    def rank_file(rank, stream):
        found = glob.glob(os.path.join(str(out), "*", "rank.%d" % rank, stream))
        return open(found[0]).read() if found else ""

    return (p.returncode, [rank_file(r, "stdout") for r in range(n)],
            [rank_file(r, "stderr") for r in range(n)], p.stderr)


def plain(tmp_path, args, stdin=None):
    """/usr/bin/python3 args... in tmp_path: (exit status, stdout, stderr)."""
    p = subprocess.run([PYTHON] + list(args), cwd=str(tmp_path), input=stdin, env=job_env(ENV),
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def probe_report(stdout):
    """The probe's JSON line and its at-exit line, from one process's stdout."""
    lines = stdout.splitlines()
    report = [json.loads(l[len("PROBE "):]) for l in lines if l.startswith("PROBE ")]
    at_exit = [json.loads(l[len("PROBE-EXIT "):]) for l in lines if l.startswith("PROBE-EXIT ")]
    assert len(report) == 1 and len(at_exit) == 1, stdout
    return report[0], at_exit[0]


@pytest.fixture
def programs(tmp_path):
    """The probe as a script, a module, a directory with __main__.py."""
    (tmp_path / "prog.py").write_text(PROBE)
    (tmp_path / "probemod.py").write_text(PROBE)
    (tmp_path / "progdir").mkdir()
    (tmp_path / "progdir" / "__main__.py").write_text(PROBE)
    return tmp_path


FORMS = [
    ["-c", PROBE],
    ["-c", PROBE, "a", "-u", "--", "-c"],
    ["-c" + PROBE, "a"],
    ["-m", "probemod", "a", "-m"],
    ["-mprobemod"],
    ["prog.py", "a", "-c", "x"],
    ["progdir", "a"],
    ["--", "prog.py", "-O"],
    ["-u", "-c", PROBE],
    ["-B", "prog.py"],
    ["-O", "-m", "probemod"],
    ["-OO", "-c", PROBE],
    ["-W", "error", "-c", PROBE],
    ["-Wignore::DeprecationWarning", "-W", "error", "prog.py"],
    ["-X", "dev", "-c", PROBE],
    ["-Xutf8", "-m", "probemod"],
    ["-uB", "-c", PROBE],
    ["-uBOc", PROBE, "a"],
    ["-b", "-q", "--", "prog.py"],
    ["-E", "-s", "-m", "probemod"],
    ["-I", "-c", PROBE],
    ["-I", "prog.py"],
    ["-P", "prog.py"],
    ["-S", "-c", PROBE],
    ["-S", "-m", "probemod"],
    ["-uS", "prog.py"],
]


def _form_id(args):
    return " ".join(a.replace(PROBE, "PROBE") for a in args)


@pytest.mark.parametrize("args", FORMS, ids=[_form_id(f) for f in FORMS])
def test_form_matches_python3(programs, args):
    rc, want_out, _ = plain(programs, args)
    assert rc == 0, want_out
    want, want_at_exit = probe_report(want_out)
    assert want["hook"] is False
    status, outs, errs, mpirun_err = launch(programs, args)
    assert status == 0, (errs, mpirun_err[-3000:])
    for out, err in zip(outs, errs):
        got, got_at_exit = probe_report(out)
        assert got.pop("hook") is True, "mpiimport is not installed in the program"
        want_flags = dict(want["flags"], no_site=1)  # the interpreter always starts with -S
        assert got["flags"] == want_flags
        assert {k: v for k, v in got.items() if k != "flags"} == \
            {k: v for k, v in want.items() if k not in ("flags", "hook")}
        assert got_at_exit == want_at_exit


def test_program_from_stdin(tmp_path):
    """`-` reads the program from stdin: mpirun gives stdin to rank 0 only, so
    one rank (Open MPI 4.1's --stdin all does not end the others' input)."""
    for args in (["-", "a", "-c"], ["-u", "--", "-", "a"]):
        rc, want_out, _ = plain(tmp_path, args, stdin=PROBE)
        assert rc == 0
        status, outs, errs, mpirun_err = launch(tmp_path, args, n=1, stdin=PROBE)
        assert status == 0, (errs, mpirun_err[-3000:])
        got, got_at_exit = probe_report(outs[0])
        want, want_at_exit = probe_report(want_out)
        assert got.pop("hook") is True
        want.pop("hook")
        got["flags"]["no_site"] = want["flags"]["no_site"]
        assert (got, got_at_exit) == (want, want_at_exit)


@pytest.mark.parametrize("args", [
    ["-s", "-m", "json.tool", "--sort-keys", "data.json"],
    ["-I", "-m", "platform"],
], ids=["json.tool", "platform"])
def test_stdlib_module(tmp_path, args):
    (tmp_path / "data.json").write_text('{"b": [1, 2], "a": "x"}')
    rc, want_out, want_err = plain(tmp_path, args)
    assert rc == 0 and want_out, want_err
    status, outs, errs, mpirun_err = launch(tmp_path, args)
    assert status == 0, (errs, mpirun_err[-3000:])
    assert outs == [want_out, want_out]


ERRORS = {
    "syntax error": ["-c", "1 +"],
    "uncaught exception": ["-c", "def f():\n    return 1 / 0\nf()"],
    "SystemExit(3)": ["-c", "raise SystemExit(3)"],
    "SystemExit(message)": ["-c", "import sys; sys.exit('bye')"],
    "no such module": ["-m", "no_such_module_here"],
    "no such file": ["no_such_file.py"],
    "-x, exception on line 3": ["-x", "skip.py", "a"],
}


@pytest.mark.parametrize("args", list(ERRORS.values()), ids=list(ERRORS))
def test_failure_matches_python3(tmp_path, args):
    """Exit status and stderr (tracebacks without the launcher's frames) as python3's."""
    (tmp_path / "skip.py").write_text("this first line is not Python\nimport sys\nraise ValueError(sys.argv)\n")
    rc, want_out, want_err = plain(tmp_path, args)
    assert rc != 0
    status, outs, errs, mpirun_err = launch(tmp_path, args)
    assert status == rc, (errs, mpirun_err[-3000:])
    assert outs == [want_out, want_out]
    assert errs == [want_err, want_err]


USAGE_ERRORS = {
    "-c without its argument": ["-c"],
    "-uBm without its argument": ["-uBm"],
    "-W without its argument": ["-u", "-W"],
    "unknown option": ["-u", "-z", "-c", "pass"],
    "unknown long option": ["--frobnicate", "prog.py"],
    "-J": ["-J", "prog.py"],
    "--check-hash-based-pycs without its argument": ["--check-hash-based-pycs"],
}


@pytest.mark.parametrize("args", list(USAGE_ERRORS.values()), ids=list(USAGE_ERRORS))
def test_usage_error(tmp_path, args):
    """python3's message and status 2, on every rank, before mpiimport starts."""
    rc, _, want_err = plain(tmp_path, args)
    assert rc == 2
    status, outs, errs, mpirun_err = launch(tmp_path, args, extra_env={"MPIIMPORT_VERBOSE": "2"})
    assert status == 2, (errs, mpirun_err[-3000:])
    for out, err in zip(outs, errs):
        assert out == ""
        lines = err.splitlines()
        assert lines[0] == want_err.splitlines()[0]
        assert lines[1].startswith("usage: ") and lines[1].endswith(
            " [option] ... [-c cmd | -m mod | file | -] [arg] ...")
        assert "installed on" not in err


@pytest.mark.parametrize("args,message", [
    ([], "no program given"),
    (["--"], "no program given"),
    (["-i", "prog.py"], "-i is not supported"),
], ids=["no program", "-- alone", "-i"])
def test_refused(tmp_path, args, message):
    """What python3 would make interactive (a prompt on every rank) is refused, with status 2."""
    status, outs, errs, mpirun_err = launch(tmp_path, args, extra_env={"MPIIMPORT_VERBOSE": "2"})
    assert status == 2, (errs, mpirun_err[-3000:])
    for out, err in zip(outs, errs):
        assert out == "" and message in err and "installed on" not in err


@pytest.mark.parametrize("args", [["-h"], ["-uB", "--help"], ["-V"], ["--version"], ["-VV", "-c", "pass"],
                                  ["--help-xoptions"]])
def test_help_and_version(tmp_path, args):
    want = plain(tmp_path, args)
    assert want[0] == 0 and want[1]
    p = subprocess.run([LAUNCHER] + args, cwd=str(tmp_path), env=job_env(ENV), capture_output=True,
                       text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == want
