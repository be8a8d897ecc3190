"""python3 -m mpiimport as a command line: pack's progress on a terminal (and
none elsewhere), show's summary by top-level package (and every entry with
--all), --help for every command, usage errors with exit status 2."""
import os
import re
import select
import subprocess
import time

from conftest import PYTHON, job_env

PROGRESS = re.compile(r"\rmpiimport pack: (\d+) files, ([\d.]+) MiB read, ([\d.]+) MiB/s")
ROW = re.compile(r"^  (\S+)\s+(\d+)\s+(\d+) bytes\s+\S+ \S+$")


def cli(args, **kw):
    return subprocess.run([PYTHON, "-m", "mpiimport"] + list(args), env=job_env(), capture_output=True,
                          text=True, timeout=300, **kw)


def with_pty_stderr(args):
    """Runs python3 -m mpiimport ARGS with a pseudo-terminal as stderr:
    (status, what it wrote there, seconds it took)."""
    master, slave = os.openpty()
    p = subprocess.Popen([PYTHON, "-m", "mpiimport"] + list(args), env=job_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    t0 = time.monotonic()
    got, deadline = b"", t0 + 300
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            got += chunk
    finally:
        os.close(master)
    return p.wait(timeout=60), got.decode(errors="replace"), time.monotonic() - t0


def make_tree(tmp_path):
    """Two packages and a module of known sizes: {line: (files, bytes)}, {path: size}."""
    top = tmp_path / "env"
    files = {"alpha/__init__.py": 100, "alpha/big.bin": 50000, "alpha/sub/__init__.py": 0,
             "alpha/sub/mod.py": 2000, "beta/__init__.py": 10, "beta/data.txt": 3000, "top.py": 7}
    for rel, size in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(b"#" * size)
    want = {"alpha": (4, 52100), "beta": (2, 3010), "top": (1, 7)}
    return top, want, {str(top / rel): size for rel, size in files.items()}


def summary(stdout):
    lines = stdout.splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith("by top-level package"))
    rows = []
    for line in lines[at + 1:]:
        m = ROW.match(line)
        if not m:
            break
        rows.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return lines[at], rows


def test_pack_progress_on_a_terminal_only(tmp_path):
    top, want, sizes = make_tree(tmp_path)
    image = tmp_path / "env.mpii"
    final = "mpiimport pack: %s: 7 files (0.1 MiB) under %s" % (image, top)
    status, err, _ = with_pty_stderr(["pack", "--prefix", str(top), "-o", str(image)])
    assert status == 0, err
    got = PROGRESS.findall(err)
    assert got and got[-1][0] == "7", err
    assert final in err, err
    # a program that takes a while: updated in place, at most ~5 times a second
    app = tmp_path / "app.py"
    app.write_text("import json, time\ntime.sleep(1.2)\n")
    status, err, took = with_pty_stderr(["pack", "-o", str(tmp_path / "app.mpii"), "--", str(app)])
    assert status == 0, err
    got = PROGRESS.findall(err)
    assert 3 <= len(got) <= took * 5 + 2, (took, err)
    assert int(got[-1][0]) > 0 and float(got[-1][1]) > 0, err
    assert "app.mpii: %s files read" % got[-1][0] in err, err
    # stderr a pipe: no progress, only the last line
    for args in (["pack", "--prefix", str(top), "-o", str(image)],
                 ["pack", "-o", str(tmp_path / "app.mpii"), "--", str(app)]):
        p = cli(args)
        assert p.returncode == 0, p.stderr
        assert "\r" not in p.stderr and "MiB/s" not in p.stderr, p.stderr
        assert len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith("mpiimport pack: %s: " % (tmp_path / "app.mpii")), p.stderr
    assert cli(["pack", "--prefix", str(top), "-o", str(image)]).stderr.strip() == final


def test_show_summarises_by_top_level_package(tmp_path):
    top, want, sizes = make_tree(tmp_path)
    image = tmp_path / "env.mpii"
    assert cli(["pack", "--prefix", str(top), "-o", str(image)]).returncode == 0
    p = cli(["show", str(image)])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("%s: prefix %s, " % (image, top)), p.stdout
    header, rows = summary(p.stdout)
    assert header.startswith("by top-level package (3;"), p.stdout
    assert rows == [(name, n, b) for name, (n, b) in want.items()] + [("(total)", 7, 55117)], p.stdout
    assert re.search(r"^  file\s+7\s+55117 bytes$", p.stdout, re.M), p.stdout
    assert str(top / "alpha" / "big.bin") not in p.stdout  # entries only with --all

    p = cli(["show", str(image), "--all"])
    assert p.returncode == 0, p.stderr
    assert summary(p.stdout)[1] == rows
    listed = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^  file\s+(\d+)  (/\S+)$", line)
        if m:
            listed[m.group(2)] = int(m.group(1))
    assert listed == sizes, p.stdout
    listings = {l.split()[-1] for l in p.stdout.splitlines() if l.startswith("  listing ")}
    assert {str(top), str(top / "alpha"), str(top / "alpha" / "sub"), str(top / "beta")} <= listings


def test_help_for_every_command_and_usage_errors(tmp_path):
    p = cli(["no-such-command"])
    assert p.returncode == 2 and "python3 -m mpiimport --help" in p.stderr, p.stderr
    commands = re.findall(r"'([a-z]+)'", p.stderr.split("choose from", 1)[1])
    assert {"pack", "show", "stage", "unstage", "doctor"} <= set(commands), p.stderr
    p = cli(["--help"])
    assert p.returncode == 0 and p.stdout.startswith("usage: python3 -m mpiimport"), p.stderr
    for c in commands:
        assert c in p.stdout
        h = cli([c, "--help"])
        assert h.returncode == 0 and h.stdout.startswith("usage: python3 -m mpiimport %s" % c), (c, h.stderr)
        assert h.stderr == "", (c, h.stderr)
    for args, hint in [([], "python3 -m mpiimport --help"),
                       (["pack"], "pack --help"),
                       (["pack", "-o", str(tmp_path / "x.mpii")], "pack --prefix DIR"),
                       (["pack", "-o", str(tmp_path / "x.mpii"), "--", str(tmp_path / "nope.py")], "pack --help"),
                       (["pack", "-o", str(tmp_path / "x.mpii"), "--prefix", str(tmp_path), "app.py"], "not both"),
                       (["show"], "show --help"),
                       (["show", str(tmp_path / "nope.mpii")], "no such file"),
                       (["show", "a", "b"], "show --help"),
                       (["doctor", "--frobnicate"], "doctor --help")]:
        p = cli(args)
        assert p.returncode == 2 and "error:" in p.stderr and hint in p.stderr, (args, p.stderr)
        assert p.stdout == "" and "Traceback" not in p.stderr, (args, p.stderr)
    assert not (tmp_path / "x.mpii").exists()
