"""`mpiimport run`: any program, its dynamic loader served from the node's
staged image (LD_AUDIT). A generated workload: utility libraries in a
"shared" directory, linked to each other and to the program through an
absolute RUNPATH (as Spack builds are), a Python extension module linked to
them the same way. Under `mpiimport run --image` every rank opens nothing in
the shared directory (strace, whole process), each library is mapped once,
and a node without the stage runs the program plainly and says so."""
import os
import subprocess
import sys
import sysconfig

import pytest

from conftest import PYTHON, job_env, launch_prefix, run_mpi

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LAUNCHER = os.path.join(BUILD, "bin", "mpiimport")

APP = r"""
#include <stdio.h>
#include <string.h>
int mid_value(void);
int main(void)
{
    int maps = 0;
    char line[4096], seen[8][4096];
    FILE *f = fopen("/proc/self/maps", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *path = strchr(line, '/');
        if (!path || (!strstr(path, "libmid.so") && !strstr(path, "libutil.so")))
            continue;
        int known = 0;
        for (int i = 0; i < maps; i++)
            known |= strcmp(seen[i], path) == 0;
        if (!known && maps < 8)
            strcpy(seen[maps++], path);
    }
    if (f)
        fclose(f);
    printf("value %d files %d\n", mid_value(), maps);
    return 0;
}
"""

EXT = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
int mid_value(void);
static PyObject *value(PyObject *m, PyObject *a) { (void)m; (void)a; return PyLong_FromLong(mid_value()); }
static PyMethodDef methods[] = {{"value", value, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "extmod", NULL, -1, methods};
PyMODINIT_FUNC PyInit_extmod(void) { return PyModule_Create(&def); }
"""

JOB = r"""
import os
import mpiimport
try:
    os.stat('/mpiimport-test-mark')   # in the trace: install() and the imports follow
except OSError:
    pass
ok = mpiimport.install()
import extmod
st = mpiimport.stats()
print('job', ok, st['transport'], extmod.value(), flush=True)
"""


def cc(*args):
    subprocess.run(["cc"] + list(args), check=True)


@pytest.fixture
def workload(tmp_path):
    if not os.path.exists(LAUNCHER):
        pytest.skip("mpiimport launcher not built")
    shared = tmp_path / "shared"
    lib, site = shared / "lib", shared / "site"
    lib.mkdir(parents=True)
    site.mkdir()
    (tmp_path / "util.c").write_text("int util_value(void) { return 41; }\n")
    (tmp_path / "mid.c").write_text("int util_value(void);\nint mid_value(void) { return util_value() + 1; }\n")
    (tmp_path / "app.c").write_text(APP)
    (tmp_path / "ext.c").write_text(EXT)
    rpath = ["-Wl,-rpath," + str(lib), "-Wl,--enable-new-dtags"]
    cc("-shared", "-fPIC", str(tmp_path / "util.c"), "-o", str(lib / "libutil.so"))
    cc("-shared", "-fPIC", str(tmp_path / "mid.c"), "-o", str(lib / "libmid.so"), "-L" + str(lib), "-lutil", *rpath)
    cc(str(tmp_path / "app.c"), "-o", str(tmp_path / "app"), "-L" + str(lib), "-lmid", *rpath)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    cc("-shared", "-fPIC", "-I", sysconfig.get_paths()["include"], str(tmp_path / "ext.c"),
       "-o", str(site / ("extmod" + suffix)), "-L" + str(lib), "-lmid", *rpath)
    (tmp_path / "job.py").write_text(JOB)
    stage_dir = tmp_path / "shm"
    stage_dir.mkdir(mode=0o700)
    env = {"MPIIMPORT_STAGE_DIR": str(stage_dir), "MPIIMPORT_TIMEOUT": "60",
           "PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MPIIMPORT_SHARED_PREFIXES": str(shared)}
    image = tmp_path / "shared.mpii"
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "--prefix", str(shared), "-o", str(image)],
                       env=job_env(env), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "3 files" in p.stderr, p.stderr
    return tmp_path, shared, image, env


def traced_run(tmp_path, env, name, cmd, n=2):
    trace = tmp_path / name
    trace.mkdir()
    launcher = "import os, sys; os.execvp('strace', ['strace'] + sys.argv[1:])"
    p = run_mpi(n, ["-c", launcher, "-ff", "-qq", "-e", "trace=%file,read", "-o", str(trace / "t")] + cmd,
                extra_env=env, timeout=300)
    return p, [open(trace / f).read() for f in sorted(os.listdir(trace))]


def opens_under(traces, prefix, after_mark=False):
    out = []
    for t in traces:
        marked = not after_mark
        for line in t.splitlines():
            marked = marked or "/mpiimport-test-mark" in line
            if marked and ('"' + prefix) in line and line.startswith(("openat(", "open(")):
                out.append(line)
    return out


def test_run_serves_the_dynamic_loader_from_the_stage(workload):
    tmp_path, shared, image, env = workload
    # plainly, every rank opens the libraries in the shared directory
    p, traces = traced_run(tmp_path, env, "plain", [str(tmp_path / "app")])
    assert p.stdout.count("value 42 files 2") == 2, p.stdout + p.stderr
    assert len(opens_under(traces, str(shared))) >= 2 * 2
    # staged once on the node, then run: nothing opened there, each library mapped once
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0 and "staged" in s.stdout, s.stdout + s.stderr
    p, traces = traced_run(tmp_path, env, "run", [LAUNCHER, "run", "--image", str(image), "--",
                                                  str(tmp_path / "app")])
    assert p.stdout.count("value 42 files 2") == 2, p.stdout + p.stderr
    assert opens_under(traces, str(shared)) == [], opens_under(traces, str(shared))[:10]
    # what is left: ld.so's stat() of each search directory it found no file in (hwcaps
    # subdirectories), once per process; it cannot be audited
    stats = [l for t in traces for l in t.splitlines() if '"' + str(shared) in l]
    assert all(l.startswith(("newfstatat(", "stat(")) for l in stats), stats[:10]
    assert len(stats) <= 2 * 12, stats


def test_run_with_python_serves_the_extension_and_its_libraries_from_one_stage(workload):
    tmp_path, shared, image, env = workload
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    p, traces = traced_run(tmp_path, env, "py", [LAUNCHER, "run", "--image", str(image), "--", PYTHON,
                                                 str(tmp_path / "job.py")])
    assert p.stdout.count("job True staged 42") == 2, p.stdout + p.stderr
    # from install() on: the extension from the stage (the import hook), its
    # libraries from the stage (the audit library); the interpreter's start-up
    # before it still lists the shared site directory (not served yet)
    after = opens_under(traces, str(shared), after_mark=True)
    assert after == [], after[:10]
    sos = [l for l in opens_under(traces, str(shared)) if ".so" in l]
    assert sos == [], sos


def test_run_on_a_node_without_the_stage_runs_plainly_and_says_so(workload):
    tmp_path, shared, image, env = workload
    p = subprocess.run([LAUNCHER, "run", "--image", str(image), "--", str(tmp_path / "app")],
                       env=job_env(env), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "value 42 files 2" in p.stdout, p.stdout + p.stderr
    assert "not staged on this node" in p.stderr and "running" in p.stderr, p.stderr
    bad = subprocess.run([LAUNCHER, "run", "--", "true"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--image" in bad.stderr


def test_run_serves_a_plain_python_process_without_the_hook(tmp_path):
    """The preload library alone: a Python process that never imports
    mpiimport finds, lists, stats and reads its package and a data file from
    the stage (a `pack --prefix` image: its staged directories list what the
    originals list), and makes no call into the shared tree at all."""
    if not os.path.exists(LAUNCHER):
        pytest.skip("mpiimport launcher not built")
    shared = tmp_path / "shared"
    pkg = shared / "site" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 'pkg value'\n")
    (pkg / "data.txt").write_text("data bytes\n")
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(shared)], check=True)
    stage_dir = tmp_path / "shm"
    stage_dir.mkdir(mode=0o700)
    env = {"MPIIMPORT_STAGE_DIR": str(stage_dir), "PYTHONPATH": str(shared / "site")}
    image = tmp_path / "env.mpii"
    build_env = job_env(dict(env, PYTHONPATH=os.environ.get("PYTHONPATH", "")))
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "--prefix", str(shared), "-o", str(image)],
                       env=build_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    code = ("import pkg, os; d = os.path.dirname(pkg.__file__); "
            "print('got', pkg.X, open(os.path.join(d, 'data.txt')).read().strip(), pkg.__file__, "
            "os.path.exists(os.path.join(d, 'nothing.txt')), sorted(os.listdir(d)))")
    p, traces = traced_run(tmp_path, env, "plainpy", [LAUNCHER, "run", "--image", str(image), "--",
                                                      PYTHON, "-c", code])
    want = "got pkg value data bytes %s False %s" % (pkg / "__init__.py", sorted(os.listdir(pkg)))
    assert p.stdout.count(want) == 2, p.stdout + p.stderr
    calls = [l for t in traces for l in t.splitlines() if '"' + str(shared) in l and "execve(" not in l]
    assert calls == [], calls


# ---- staging as a job step, and `run --stage`: rank 0 alone reads the image ----

def needs_pmix_transport():
    """The staging collective runs over ofi or ucx (never mpi): skip on a
    build that has neither (its message is tested by the launcher tests)."""
    p = subprocess.run([PYTHON, "-c", "import mpiimport; print(' '.join(mpiimport.transports()))"],
                       env=job_env(), capture_output=True, text=True, timeout=60)
    if not set(p.stdout.split()) & {"ofi", "ucx"}:
        pytest.skip("this build has no transport that starts without MPI (ofi, ucx)")


def launch(n, cmd, env, timeout=300):
    """mpirun (or srun) -n n CMD (any program), as simulated nodes of two ranks."""
    full = launch_prefix(n) + cmd
    return subprocess.run(full, env=job_env(dict(env, MPIIMPORT_RANKS_PER_NODE="2")),
                          capture_output=True, text=True, timeout=timeout)


def image_opens(trace_dir, image):
    return [l for f in sorted(os.listdir(trace_dir)) for l in open(trace_dir / f).read().splitlines()
            if l.startswith(("openat(", "open(")) and '"%s"' % image in l]


MPI_JOB = r"""
from mpi4py import MPI
import extmod
print('mpi', MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size, extmod.value(), flush=True)
"""


def test_a_stage_step_reads_the_image_on_rank_0_only_and_the_next_step_starts_mpi(workload):
    needs_pmix_transport()
    tmp_path, shared, image, env = workload
    trace = tmp_path / "stage-trace"
    trace.mkdir()
    p = launch(4, ["strace", "-ff", "-qq", "-e", "trace=openat,open", "-o", str(trace / "t"),
                   LAUNCHER, "stage", str(image)], env)
    assert p.returncode == 0, p.stdout + p.stderr
    # one line per node leader (ranks 0 and 2); one image file read in the whole job
    leaders = [l for l in p.stdout.splitlines() if l.startswith("mpiimport stage: rank ")]
    assert sorted(l.split()[3] for l in leaders) == ["0", "2"], p.stdout
    assert len(image_opens(trace, image)) == 1, image_opens(trace, image)
    # the next step: an MPI program served from the stage, its MPI_Init unaffected
    (tmp_path / "mpi_job.py").write_text(MPI_JOB)
    q = launch(4, [LAUNCHER, "run", "--image", str(image), "--", PYTHON, str(tmp_path / "mpi_job.py")], env)
    assert q.returncode == 0 and q.stdout.count("mpi ") == 4 and q.stdout.count(" 4 42") == 4, q.stdout + q.stderr
    assert "plainly" not in q.stderr, q.stderr
    u = subprocess.run([LAUNCHER, "unstage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert u.returncode == 0 and "removed" in u.stdout


def test_run_stage_makes_the_steps_own_stage_and_its_last_process_removes_it(workload):
    needs_pmix_transport()
    tmp_path, shared, image, env = workload
    stage_dir = env["MPIIMPORT_STAGE_DIR"]
    trace = tmp_path / "run-trace"
    trace.mkdir()
    p = launch(4, ["strace", "-ff", "-qq", "-e", "trace=%file", "-o", str(trace / "t"), LAUNCHER, "run",
                   "--stage", "--image", str(image), "--", str(tmp_path / "app")], env)
    assert p.returncode == 0 and p.stdout.count("value 42 files 2") == 4, p.stdout + p.stderr
    assert "plainly" not in p.stderr, p.stderr
    traces = [open(trace / f).read() for f in sorted(os.listdir(trace))]
    inside = str(shared) + "/"
    assert opens_under(traces, inside) == [], opens_under(traces, inside)[:10]
    assert len(image_opens(trace, image)) == 1
    assert os.listdir(stage_dir) == [], os.listdir(stage_dir)   # nothing left on the node
    # one process, no launcher: the same, staged by itself
    q = subprocess.run([LAUNCHER, "run", "--stage", "--image", str(image), "--", str(tmp_path / "app")],
                       env=job_env(env), capture_output=True, text=True, timeout=60)
    assert q.returncode == 0 and "value 42 files 2" in q.stdout and q.stderr == "", q.stdout + q.stderr
    assert os.listdir(stage_dir) == []


def test_run_stage_of_a_damaged_image_runs_plainly_and_leaves_nothing(workload):
    needs_pmix_transport()
    tmp_path, shared, image, env = workload
    bad = tmp_path / "bad.mpii"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    p = launch(4, [LAUNCHER, "run", "--stage", "--image", str(bad), "--", str(tmp_path / "app")], env)
    assert p.returncode == 0 and p.stdout.count("value 42 files 2") == 4, p.stdout + p.stderr
    assert p.stderr.count("was not staged") == 4 and "checksum" in p.stderr, p.stderr
    assert os.listdir(env["MPIIMPORT_STAGE_DIR"]) == []
    missing = tmp_path / "missing.mpii"
    q = launch(2, [LAUNCHER, "run", "--stage", "--image", str(missing), "--", "true"], env)
    assert q.returncode == 0 and "rank 0 cannot read the image" in q.stderr, q.stderr


# ---- the whole process: pack records it, run serves it ----

APP3 = r"""
import ctypes, os, sys
import extmod
aux = ctypes.CDLL("libaux.so")          # found through LD_LIBRARY_PATH
here = os.path.dirname(os.path.abspath(__file__))
data = open(os.path.normpath(os.path.join(here, "..", "data", "input.txt"))).read().strip()
print("app3", extmod.value(), aux.aux_value(), data, sys.executable, flush=True)
top = os.path.dirname(here)
link = os.path.join(top, "bin", "python-link")
# what the program sees of the tree: listings (partly packed ones too), links, its environment
print("seen", sorted(os.listdir(here)), sorted(os.listdir(os.path.join(top, "ldlib"))),
      os.path.islink(link), os.readlink(link), os.path.islink(__file__), os.path.realpath(link),
      os.environ.get("LD_LIBRARY_PATH"), [e.name for e in sorted(os.scandir(top), key=lambda e: e.name)
                                          if e.is_dir()], flush=True)
# a child process: the same interpreter, the same library through LD_LIBRARY_PATH
import subprocess
child = subprocess.run([sys.executable, "-c", "import ctypes, os; "
                        "print('child', ctypes.CDLL('libaux.so').aux_value(), os.environ['LD_LIBRARY_PATH'])"],
                       capture_output=True, text=True)
print(child.stdout.strip() or child.stderr, flush=True)
"""


def test_pack_records_the_whole_process_and_run_serves_it(workload):
    """The interpreter executed from the shared directory, a library found
    through LD_LIBRARY_PATH and dlopen()ed, a data file read with open(), an
    extension module and its RUNPATH libraries: `pack -- app.py` records all
    of it (its preload and audit libraries), and under `mpiimport run` no
    rank makes any call into the shared directory (strace, whole process),
    the interpreter included: it is executed from its staged copy with the
    original argv[0], so sys.executable is the original path."""
    tmp_path, shared, image, env = workload
    (shared / "bin").mkdir()
    (shared / "ldlib").mkdir()
    (shared / "data").mkdir()
    python = shared / "bin" / "python3"
    python.write_bytes(open(os.path.realpath(PYTHON), "rb").read())
    python.chmod(0o755)
    os.symlink("python3", shared / "bin" / "python-link")
    (shared / "site" / "not_imported.txt").write_text("listed, never read\n")
    (tmp_path / "aux.c").write_text("int aux_value(void) { return 7; }\n")
    cc("-shared", "-fPIC", str(tmp_path / "aux.c"), "-o", str(shared / "ldlib" / "libaux.so"))
    (shared / "data" / "input.txt").write_text("input bytes\n")
    (shared / "site" / "app3.py").write_text(APP3)
    run_env = dict(env, PYTHONHOME="/usr", LD_LIBRARY_PATH=str(shared / "ldlib"))
    img = tmp_path / "whole.mpii"
    p = subprocess.run([str(python), "-m", "mpiimport", "pack", "-o", str(img), "--",
                        str(shared / "site" / "app3.py")], env=job_env(run_env), capture_output=True,
                       text=True, timeout=120)
    want = "app3 42 7 input bytes %s" % python
    assert p.returncode == 0 and want in p.stdout, p.stdout + p.stderr
    # the reference: the same program plainly, under the same launcher (mpirun
    # given as an absolute path adds its own directories to LD_LIBRARY_PATH)
    plain = launch(1, [str(python), str(shared / "site" / "app3.py")], run_env)
    seen = [l for l in plain.stdout.splitlines() if l.startswith("seen ")]
    child = [l for l in plain.stdout.splitlines() if l.startswith("child ")]
    assert plain.returncode == 0 and len(seen) == 1 and "not_imported.txt" in seen[0], plain.stdout + plain.stderr
    assert len(child) == 1 and child[0].startswith("child 7 "), plain.stdout
    assert "the whole process (start-up, dynamic loader, open()) touched" in p.stderr, p.stderr
    s = subprocess.run([LAUNCHER, "stage", str(img)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    trace = tmp_path / "whole-trace"
    trace.mkdir()
    q = launch(2, ["strace", "-ff", "-qq", "-e", "trace=%file,%process", "-o", str(trace / "t"), LAUNCHER, "run",
                   "--image", str(img), "--", str(python), str(shared / "site" / "app3.py")], run_env)
    assert q.returncode == 0 and q.stdout.count(want) == 2, q.stdout + q.stderr
    # the same listings, links and environment as the plain process saw
    assert q.stdout.count(seen[0]) == 2, (seen[0], q.stdout)
    assert q.stdout.count(child[0]) == 2, (child[0], q.stdout)
    lines = [l for f in os.listdir(trace) for l in open(trace / f).read().splitlines()]
    inside = '"' + str(shared) + "/"
    calls = [l for l in lines if inside in l.split(", [")[0]]   # the path argument, not argv
    # nothing is opened, listed, stat()ed or executed there: what is left is the
    # program's own lstat()/readlink() of a real symbolic link (a stage holds no
    # links: they pass through), and ld.so's stat() of the search directories of
    # the extension's absolute RUNPATH (shared/lib: glibc-hwcaps/ and legacy
    # subdirectories, once per process; ld.so makes it itself, unauditable).
    # LD_LIBRARY_PATH's (shared/ldlib) are searched in the stage: none there.
    links = [l for l in calls if "/bin/python-link" in l and ("readlink(" in l or "NOFOLLOW" in l)]
    ldso_stats = [l for l in calls if "newfstatat(" in l and "/shared/lib/" in l and ".so" not in l.split('"')[1]]
    rest = [l for l in calls if l not in ldso_stats and l not in links]
    assert rest == [], rest[:20]
    assert len(links) <= 2 * 4 and len(ldso_stats) <= 2 * 12, (links, ldso_stats)
    # executed from the staged copy, through the root the process holds
    # (/proc/self/fd/N: the directory it checked, whatever happens to its name)
    execs = [l for l in lines if "execve(" in l and str(shared / "bin") in l]
    assert execs and all(l.split("execve(")[1].split(",")[0].startswith('"/proc/self/fd/') for l in execs), execs


def test_what_passes_through_is_recorded_for_the_next_pack(workload):
    """Under `mpiimport run` with MPIIMPORT_RECORD_PATHS, a file the image
    lacks (a data file another program reads) passes through and is logged;
    `pack --recorded` puts it into the next image, which then serves it."""
    tmp_path, shared, image, env = workload
    (shared / "site" / "extra.txt").write_text("extra bytes\n")
    app_b = shared / "site" / "app_b.py"
    app_b.write_text("import os, extmod\nhere = os.path.dirname(os.path.abspath(__file__))\n"
                     "print('b', extmod.value(), open(os.path.join(here, 'extra.txt')).read().strip())\n")
    # an image of the first program (job.py): it lists site/, without extra.txt's bytes
    image = tmp_path / "first.mpii"
    q = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(image), "--", str(tmp_path / "job.py")],
                       env=job_env(env), capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stderr
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    rec = tmp_path / "rec"
    rec.mkdir()
    p = subprocess.run([LAUNCHER, "run", "--image", str(image), "--", PYTHON, str(app_b)],
                       env=job_env(dict(env, MPIIMPORT_RECORD_PATHS=str(rec / "r"))), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "b 42 extra bytes" in p.stdout, p.stdout + p.stderr
    logged = "".join(f.read_text() for f in rec.iterdir())
    assert str(shared / "site" / "extra.txt") + "\n" in logged, logged
    assert str(shared / "lib" / "libmid.so") + "\n" not in logged   # served: not logged
    # the next pack (of the first program) takes in what was logged
    img2 = tmp_path / "next.mpii"
    q = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(img2), "--recorded", str(rec / "r"), "--",
                        str(tmp_path / "job.py")], env=job_env(env), capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stderr
    shown = subprocess.run([PYTHON, "-m", "mpiimport", "show", "--all", str(img2)], env=job_env(env),
                           capture_output=True, text=True)
    assert str(shared / "site" / "extra.txt") in shown.stdout, shown.stdout
    s = subprocess.run([LAUNCHER, "stage", str(img2)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    p, traces = traced_run(tmp_path, env, "next", [LAUNCHER, "run", "--image", str(img2), "--", PYTHON,
                                                  str(app_b)])
    assert p.stdout.count("b 42 extra bytes") == 2, p.stdout + p.stderr
    assert [l for l in opens_under(traces, str(shared / "site" / "extra.txt"))] == []


XSTAT = r"""
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
/* The pre-2.33 names, as a binary built against an older glibc calls them
 * (not linkable today: found at run time, in the default scope). */
typedef int (*xstat_fn)(int, const char *, struct stat *);
int main(int argc, char **argv)
{
    xstat_fn xs = (xstat_fn)dlsym(RTLD_DEFAULT, "__xstat"), lxs = (xstat_fn)dlsym(RTLD_DEFAULT, "__lxstat");
    struct stat a, b;
    int r1 = xs ? xs(1, argv[1], &a) : -2, r2 = lxs ? lxs(1, argv[1], &b) : -2;
    errno = 0;
    int r3 = xs ? xs(1, argv[2], &a) : -2;
    printf("xstat %d %d %lld %d %s\n", r1, r2, (long long)b.st_size, r3, strerror(errno));
    return 0;
}
"""


def test_the_pre_2_33_stat_names_are_served(workload):
    tmp_path, shared, image, env = workload
    (tmp_path / "xstat.c").write_text(XSTAT)
    cc(str(tmp_path / "xstat.c"), "-o", str(tmp_path / "xstat"), "-ldl")
    s = subprocess.run([LAUNCHER, "stage", str(image)], env=job_env(env), capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    lib = shared / "lib" / "libutil.so"
    p, traces = traced_run(tmp_path, env, "xstat-trace", [LAUNCHER, "run", "--image", str(image), "--",
                                                   str(tmp_path / "xstat"), str(lib), str(shared / "lib" / "none.so")])
    want = "xstat 0 0 %d -1 No such file or directory" % lib.stat().st_size
    assert p.stdout.count(want) == 2, p.stdout + p.stderr
    calls = [l for t in traces for l in t.splitlines() if '"' + str(shared) + "/" in l and "execve(" not in l]
    assert calls == [], calls
