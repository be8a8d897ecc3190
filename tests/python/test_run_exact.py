"""`mpiimport run` answers every path spelling as the file system would
(issue 17 item 0: ".", "..", "//", trailing "/", "file/."), and a process
sees its own writes in a directory the image lists, as do its children
(item 3). Each is compared with a plain run of the same script."""
import os
import subprocess

import pytest

from conftest import PYTHON, job_env, launch_prefix

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LAUNCHER = os.path.join(BUILD, "bin", "mpiimport")

SPELLINGS = r"""
import os, sys
d = sys.argv[1]
for p in [d + "/.", d + "/", d + "//pkg", d + "/pkg/..", d + "/pkg/../pkg/__init__.py",
          d + "/pkg/./__init__.py", d + "/pkg/__init__.py/", d + "/pkg/__init__.py/.",
          d + "/pkg/none/.", d + "/pkg/none/../__init__.py", d + "/pkg/__init__.py/../x"]:
    for f in (os.stat, os.lstat):
        try:
            st = f(p)
            r = "ok %o" % (st.st_mode & 0o170000)
        except OSError as e:
            r = "errno %d" % e.errno
        print(f.__name__, p, r)
"""

WRITES = r"""
import os, subprocess, sys, time
d = sys.argv[1] + "/pkg"
out = []
def look(tag):
    names = sorted(os.listdir(d))
    out.append("%s %s" % (tag, names))
    for n in ["new.txt", "data.txt", "moved.txt", "gone.txt", "newdir"]:
        p = os.path.join(d, n)
        if os.path.isfile(p):
            out.append("%s %s %d %r" % (tag, n, os.stat(p).st_size, open(p).read()))
        else:
            out.append("%s %s exists=%s dir=%s" % (tag, n, os.path.exists(p), os.path.isdir(p)))
    kid = subprocess.run([sys.executable, "-c", "import os,sys; d=sys.argv[1]; print(sorted(os.listdir(d)), "
                          "[open(os.path.join(d, n)).read() for n in ('new.txt', 'data.txt') "
                          "if os.path.exists(os.path.join(d, n))])", d], capture_output=True, text=True)
    out.append("%s child %s" % (tag, kid.stdout.strip()))
    # a child given an environment of its own, built from os.environ (a copy
    # taken at start-up, before this process wrote anything)
    kid = subprocess.run([sys.executable, "-c", "import os,sys; d=sys.argv[1]; print(sorted(os.listdir(d)))", d],
                         env=dict(os.environ, PROBE_CHILD="1"), capture_output=True, text=True)
    out.append("%s child-env %s" % (tag, kid.stdout.strip()))
    sh = subprocess.run(["sh", "-c", "cat new.txt data.txt; ls", ], cwd=d, capture_output=True, text=True)
    out.append("%s sh %r" % (tag, sh.stdout))
look("before")
with open(os.path.join(d, "new.txt"), "w") as f:
    f.write("created")
with open(os.path.join(d, "data.txt"), "w") as f:
    f.write("longer data than before")
look("longer")
with open(os.path.join(d, "data.txt"), "w") as f:
    f.write("short")
os.truncate(os.path.join(d, "new.txt"), 3)
os.rename(os.path.join(d, "gone.txt"), os.path.join(d, "moved.txt"))
os.mkdir(os.path.join(d, "newdir"))
look("changed")
os.unlink(os.path.join(d, "moved.txt"))
os.rmdir(os.path.join(d, "newdir"))
look("removed")
print("\n".join(out))
"""


def make_image(tmp_path):
    if not os.path.exists(LAUNCHER):
        pytest.skip("mpiimport launcher not built")
    shared = tmp_path / "shared"
    pkg = shared / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "data.txt").write_text("old data\n")
    (pkg / "gone.txt").write_text("to be moved\n")
    stage_dir = tmp_path / "shm"
    stage_dir.mkdir(mode=0o700)
    env = {"MPIIMPORT_STAGE_DIR": str(stage_dir)}
    image = tmp_path / "tree.mpii"
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "--prefix", str(shared), "-o", str(image)],
                       env=job_env(env), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    return shared, image, env


def run_both(tmp_path, script, image, env, arg):
    path = tmp_path / "probe.py"
    path.write_text(script)
    runp = subprocess.run([LAUNCHER, "run", "--image", str(image), "--", PYTHON, str(path), arg],
                          env=job_env(env), capture_output=True, text=True, timeout=120)
    assert runp.returncode == 0, runp.stderr
    return runp.stdout


def test_every_spelling_answers_as_the_file_system(tmp_path):
    shared, image, env = make_image(tmp_path)
    path = tmp_path / "probe.py"
    path.write_text(SPELLINGS)
    plain = subprocess.run([PYTHON, str(path), str(shared)], capture_output=True, text=True, check=True)
    got = run_both(tmp_path, SPELLINGS, image, env, str(shared))
    assert got == plain.stdout, got + "\n---- plain\n" + plain.stdout


def test_a_process_and_its_children_see_its_own_writes(tmp_path):
    shared, image, env = make_image(tmp_path)
    got = run_both(tmp_path, WRITES, image, env, str(shared))
    # the same script plainly on a fresh copy of the same tree
    for n, t in [("data.txt", "old data\n"), ("gone.txt", "to be moved\n")]:
        (shared / "pkg" / n).write_text(t)
    (shared / "pkg" / "new.txt").unlink()
    path = tmp_path / "probe.py"
    plain = subprocess.run([PYTHON, str(path), str(shared)], capture_output=True, text=True, check=True)
    assert got == plain.stdout, got + "\n---- plain\n" + plain.stdout


MPI_APP = "from mpi4py import MPI\nprint('rank', MPI.COMM_WORLD.Get_rank(), flush=True)\n"


def test_an_mpi4py_program_with_its_mpi_in_the_image_runs(tmp_path):
    if not os.path.exists(LAUNCHER):
        pytest.skip("mpiimport launcher not built")
    app = tmp_path / "app.py"
    app.write_text(MPI_APP)
    stage_dir = tmp_path / "shm"
    stage_dir.mkdir(mode=0o700)
    env = {"MPIIMPORT_STAGE_DIR": str(stage_dir)}
    image = tmp_path / "app.mpii"
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(image), "--", str(app)],
                       env=job_env(env), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    q = subprocess.run(launch_prefix(2) + [LAUNCHER, "run", "--image", str(image), "--", PYTHON, str(app)],
                       env=job_env(env), capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stdout + q.stderr
    assert sorted(l for l in q.stdout.splitlines() if l.startswith("rank")) == ["rank 0", "rank 1"], q.stdout


FORTIFIED = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    /* flags not known at compile time: a _FORTIFY_SOURCE build calls __openat_2 */
    int fd = openat(AT_FDCWD, argv[1], atoi(argv[2]));
    char buf[64] = "";
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    printf("%s", n > 0 ? buf : "none\n");
    return fd >= 0 ? 0 : 1;
}
"""


def test_a_fortified_program_is_served_too(tmp_path):
    """Old code: __openat_2 (what a _FORTIFY_SOURCE build calls for openat)
    was not interposed: the program read the original on the shared file
    system."""
    shared, image, env = make_image(tmp_path)
    src = tmp_path / "fortified.c"
    src.write_text(FORTIFIED)
    exe = tmp_path / "fortified"
    subprocess.run(["cc", "-O2", "-D_FORTIFY_SOURCE=2", str(src), "-o", str(exe)], check=True)
    syms = subprocess.run(["nm", "-D", str(exe)], capture_output=True, text=True).stdout
    if "__openat_2" not in syms:
        pytest.skip("this compiler's fortified openat does not call __openat_2")
    data = str(shared / "pkg" / "data.txt")
    trace = tmp_path / "trace"
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat", "-o", str(trace), LAUNCHER, "run",
                        "--image", str(image), "--", str(exe), data, "0"], env=job_env(env),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "old data\n", r.stdout + r.stderr
    opened = [l for l in trace.read_text().splitlines() if '"' + data + '"' in l]
    assert opened == [], opened
