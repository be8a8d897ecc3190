"""A library is mapped at most once per process: an extension module the
dynamic loader already loaded as another module's dependency (DT_NEEDED
through an absolute RUNPATH, as Spack builds link) is reused from its
original path, as a plain import does, never loaded a second time from the
node's stage (two copies would mean two copies of its global state)."""
import json
import os
import subprocess
import sysconfig

import pytest

from conftest import PYTHON, run_mpi

MOD0 = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static long counter;
void mod0_extern(void) { counter++; }
static PyObject *get(PyObject *m, PyObject *a) { (void)m; (void)a; return PyLong_FromLong(counter); }
static PyMethodDef methods[] = {{"get", get, METH_NOARGS, "the counter"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "mod0", NULL, -1, methods};
PyMODINIT_FUNC PyInit_mod0(void) { return PyModule_Create(&def); }
"""

MOD1 = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
extern void mod0_extern(void);
static PyObject *bump(PyObject *m, PyObject *a) { (void)m; (void)a; mod0_extern(); Py_RETURN_NONE; }
static PyMethodDef methods[] = {{"bump", bump, METH_NOARGS, "mod0's counter + 1"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "mod1", NULL, -1, methods};
PyMODINIT_FUNC PyInit_mod1(void) { return PyModule_Create(&def); }
"""

JOB = r"""
import json, os, sys
if os.environ.get('JOB_INSTALL') == '1':
    import mpiimport
    mpiimport.install()
import mod1          # loads mod0's library as its dependency (absolute RUNPATH)
mod1.bump()
import mod0          # the same library: reused
maps = set()
with open('/proc/self/maps') as f:
    for line in f:
        parts = line.split()
        if len(parts) >= 6 and os.path.basename(parts[5]).startswith('mod0.'):
            maps.add(parts[5])
print('ONCE', json.dumps({'counter': mod0.get(), 'maps': sorted(maps), 'file': mod0.__file__}), flush=True)
"""


def build(tmp_path):
    cc = "cc"
    inc = sysconfig.get_paths()["include"]
    suffix = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "mod0.c").write_text(MOD0)
    (tmp_path / "mod1.c").write_text(MOD1)
    lib0 = site / ("mod0" + suffix)
    subprocess.run([cc, "-shared", "-fPIC", "-I", inc, str(tmp_path / "mod0.c"), "-o", str(lib0),
                    "-Wl,-soname," + lib0.name], check=True)
    subprocess.run([cc, "-shared", "-fPIC", "-I", inc, str(tmp_path / "mod1.c"), "-o",
                    str(site / ("mod1" + suffix)), str(lib0), "-Wl,-rpath," + str(site),
                    "-Wl,--enable-new-dtags"], check=True)
    (tmp_path / "job.py").write_text(JOB)
    return site


def results(p, n):
    got = [json.loads(l[5:]) for l in p.stdout.splitlines() if l.startswith("ONCE ")]
    assert len(got) == n, p.stdout + p.stderr
    return got


def test_an_extension_loaded_as_a_dependency_is_not_loaded_again(tmp_path):
    site = build(tmp_path)
    env = {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MPIIMPORT_SHARED_PREFIXES": str(site) + ":/usr/lib/python3", "MPIIMPORT_TIMEOUT": "60"}
    plain = run_mpi(1, [str(tmp_path / "job.py")], extra_env=env)
    (want,) = results(plain, 1)
    assert want["counter"] == 1 and len(want["maps"]) == 1, want
    served = run_mpi(3, [str(tmp_path / "job.py")], extra_env=dict(env, JOB_INSTALL="1"), timeout=300)
    for got in results(served, 3):
        assert got == want, (got, want, served.stderr)
