"""The Lmod modulefile (hooks/modulefile): `cmake --install` puts
share/modulefiles/mpiimport/<version>.lua under the prefix. With it loaded,
`mpirun -n 4 /usr/bin/python3 app.py` is accelerated with no change to app.py
and no other setting (the module's sitecustomize does mpiimport.pth's work,
since a .pth file on PYTHONPATH is never read, and runs the sitecustomize it
hides), and `module unload mpiimport` gives the environment back exactly."""
import glob
import json
import os
import shlex
import subprocess

import pytest

from conftest import MPIRUN, PYTHON, job_env

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD") or os.path.dirname(os.environ["PYTHONPATH"].split(":")[0])
LMOD_INIT = "/usr/share/lmod/lmod/init/bash"  # Debian's lmod package
# Lmod's own record of what is loaded: set by load, left or cleared by unload.
BOOKKEEPING = ("_ModuleTable", "__LMOD_REF_COUNT_", "__LMOD_STACK_", "LOADEDMODULES", "_LMFILES_")

# Nothing about mpiimport in how it starts: it only looks, from inside.
APP = """import json, email.mime.text, sys
import mpiimport, sitecustomize
st = mpiimport.stats()
print("RANK " + json.dumps({"rank": st["rank"], "installed": st["installed"], "transport": st["transport"],
      "loads": st["load_count"], "fallbacks": st["fallbacks"], "finder": type(sys.meta_path[0]).__name__,
      "package": mpiimport.__file__, "sitecustomize": getattr(sitecustomize, "__file__", None),
      "mime": email.mime.text.MIMEText("x")["Content-Type"]}), flush=True)
"""


def _env_file(path):
    with open(path, "rb") as f:
        items = [e.decode("utf-8", "surrogateescape") for e in f.read().split(b"\0") if e]
    env = dict(e.split("=", 1) for e in items)
    return {k: v for k, v in env.items() if k != "_" and not k.startswith(BOOKKEEPING)}


def _ranks(out):
    return sorted((json.loads(l[5:]) for l in out.splitlines() if l.startswith("RANK ")),
                  key=lambda r: r["rank"])


def test_module_load_accelerates_python3_and_unload_restores(tmp_path):
    if not os.path.isfile(LMOD_INIT):
        pytest.skip("lmod is not installed (%s missing): apt-get install lmod, or scripts/install-deps.sh"
                    % LMOD_INIT)
    prefix = tmp_path / "prefix"
    p = subprocess.run(["cmake", "--install", BUILD, "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    modulefiles = glob.glob(str(prefix / "share" / "modulefiles" / "mpiimport" / "*.lua"))
    assert len(modulefiles) == 1, modulefiles
    version = os.path.basename(modulefiles[0])[:-len(".lua")]

    # The sitecustomize the interpreter imports without the module (Debian's):
    # with the module it must still be the one that ends up imported.
    plain = subprocess.run([PYTHON, "-c", "import sitecustomize; print(sitecustomize.__file__)"],
                           env=dict(job_env(), PYTHONPATH=""), capture_output=True, text=True, timeout=60)
    theirs = plain.stdout.strip() if plain.returncode == 0 else None

    app, dumps, home = tmp_path / "app", tmp_path / "env", tmp_path / "home"
    for d in (app, dumps, home):
        d.mkdir()
    (app / "app.py").write_text(APP)
    user_dir = tmp_path / "user-python"  # a PYTHONPATH of the user's own, kept through load/unload
    user_dir.mkdir()

    env = job_env()
    env.pop("MPIIMPORT", None)
    env["PYTHONPATH"] = str(user_dir)  # not the build tree's package: only the installed one
    env["HOME"] = str(home)  # whatever Lmod or Python may cache, it does so under tmp_path
    # Lmod collapses repeated entries of a path it edits (e.g. PATH, unless
    # LMOD_DUPLICATE_PATHS=yes), for any module: start from a PATH without them.
    seen = []
    for entry in env["PATH"].split(":"):
        if entry not in seen:
            seen.append(entry)
    env["PATH"] = ":".join(seen)

    mpirun = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader,tcp",
              "-n", "4", PYTHON, "app.py"]
    q = shlex.quote
    script = "\n".join([
        "set -e",
        "source %s" % q(LMOD_INIT),
        "module use %s" % q(str(prefix / "share" / "modulefiles")),
        "env -0 > %s/before" % q(str(dumps)),
        "module load mpiimport",
        "module is-loaded mpiimport/%s" % q(version),
        "env -0 > %s/loaded" % q(str(dumps)),
        "echo SERIAL; %s app.py" % q(PYTHON),
        "echo MPI; %s" % " ".join(q(a) for a in mpirun),
        "module unload mpiimport",
        "env -0 > %s/after" % q(str(dumps)),
        # a value of MPIIMPORT the user had set is given back too
        "export MPIIMPORT=0",
        "env -0 > %s/before0" % q(str(dumps)),
        "module load mpiimport",
        "env -0 > %s/loaded0" % q(str(dumps)),
        "module unload mpiimport",
        "env -0 > %s/after0" % q(str(dumps)),
    ])
    p = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=str(app), env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout[-4000:], p.stderr[-4000:])
    serial_out, mpi_out = p.stdout.split("\nMPI\n", 1)

    # Loaded: bin on PATH, MPIIMPORT=1, the site hook and the package first on PYTHONPATH.
    before, loaded = _env_file(dumps / "before"), _env_file(dumps / "loaded")
    pythonpath = loaded["PYTHONPATH"].split(":")
    assert loaded["MPIIMPORT"] == "1"
    assert loaded["PATH"] == str(prefix / "bin") + ":" + before["PATH"]
    assert pythonpath[0] == str(prefix / "share" / "mpiimport" / "site"), pythonpath
    assert (prefix / pythonpath[1] / "mpiimport" / "_site.py").is_file(), pythonpath
    assert pythonpath[2:] == [str(user_dir)]
    changed = {k for k in set(before) | set(loaded) if before.get(k) != loaded.get(k)}
    assert changed == {"PATH", "PYTHONPATH", "MPIIMPORT"}, changed

    # Every rank: installed from the module's prefix at start-up, served its imports.
    ranks = _ranks(mpi_out)
    assert [r["rank"] for r in ranks] == [0, 1, 2, 3], (mpi_out, p.stderr[-4000:])
    transport = os.environ.get("MPIIMPORT_TRANSPORT")  # ctest: one run per transport
    for r in ranks:
        assert r["installed"] and r["finder"] == "MpiFinder", r
        assert r["transport"] == (transport or r["transport"]) and r["transport"], r
        assert r["package"].startswith(str(prefix) + os.sep), r
        assert r["loads"] > 0 and r["fallbacks"] == 0, r
        assert r["mime"] == 'text/plain; charset="us-ascii"', r
        if theirs is not None:  # the hidden sitecustomize still ran, under its own name
            assert r["sitecustomize"] == theirs, r
    # Without a launcher python3 is plain, module or not.
    (serial,) = _ranks(serial_out)
    assert not serial["installed"] and serial["finder"] != "MpiFinder", serial

    # Unloaded: the environment as before the load, apart from Lmod's bookkeeping.
    assert _env_file(dumps / "after") == before
    before0, loaded0 = _env_file(dumps / "before0"), _env_file(dumps / "loaded0")
    assert before0["MPIIMPORT"] == "0" and loaded0["MPIIMPORT"] == "1"
    assert _env_file(dumps / "after0") == before0
