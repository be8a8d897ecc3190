"""An extension module that finds its bundled library through a
$ORIGIN-relative RUNPATH (the numpy.libs/ layout of wheels): both are staged at
their original layout, both are mapped from the stage, and __file__ stays the
original path."""
import json
import os
import subprocess
import sysconfig

from conftest import PYTHON, load_ranks, run_mpi

EXT_SRC = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
int helper_value(void);
static PyObject *value(PyObject *self, PyObject *args) { return PyLong_FromLong(helper_value()); }
static PyMethodDef methods[] = {{"value", value, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&mod); }
"""

JOB = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import mpiimport
assert mpiimport.install()
import bund._ext
rank = int(os.environ.get("PMIX_RANK") or os.environ["OMPI_COMM_WORLD_RANK"])
root = mpiimport.stats()["stage_root"]
maps = sorted({l.split()[-1] for l in open("/proc/self/maps") if "/" in l})
with open(os.path.join(sys.argv[2], "rank%d.json" % rank), "w") as f:
    json.dump({"value": bund._ext.value(), "file": bund._ext.__file__, "root": root,
               "maps": [m for m in maps if "bund" in m]}, f)
"""


def build(tmp):
    site = os.path.join(tmp, "site")
    libs, pkg = os.path.join(site, "bund.libs"), os.path.join(site, "bund")
    os.makedirs(libs)
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    with open(os.path.join(tmp, "helper.c"), "w") as f:
        f.write("int helper_value(void) { return 4242; }\n")
    with open(os.path.join(tmp, "ext.c"), "w") as f:
        f.write(EXT_SRC)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", os.path.join(libs, "libhelper.so"),
                    os.path.join(tmp, "helper.c")], check=True)
    inc = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    suffix = subprocess.run([PYTHON, "-c", "import importlib.machinery as m; print(m.EXTENSION_SUFFIXES[0])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["gcc", "-shared", "-fPIC", "-I", inc, "-o", os.path.join(pkg, "_ext" + suffix),
                    os.path.join(tmp, "ext.c"), "-L", libs, "-lhelper",
                    "-Wl,-rpath,$ORIGIN/../bund.libs", "-Wl,--enable-new-dtags"], check=True)
    return site, suffix


def test_bundled_library_is_staged_beside_its_module(tmp_path):
    site, suffix = build(str(tmp_path))
    job = tmp_path / "job.py"
    job.write_text(JOB)
    out = tmp_path / "out"
    out.mkdir()
    run_mpi(3, [str(job), site, str(out)],
            extra_env={"MPIIMPORT_SHARED_PREFIXES": site + ":/usr/lib/python3", "MPIIMPORT_TIMEOUT": "30"})
    for r in load_ranks(str(out), 3):
        assert r["value"] == 4242
        assert r["file"] == os.path.join(site, "bund", "_ext" + suffix)
        want = {r["root"] + os.path.join(site, "bund", "_ext" + suffix),
                r["root"] + os.path.join(site, "bund.libs", "libhelper.so")}
        assert set(r["maps"]) == want, r["maps"]
