"""A job imports numpy, scipy.linalg, scipy.sparse and mpi4py through the hook;
every rank must see exactly what a plain import gives (files, specs, package
paths, loaders of the same importlib classes, computed results), rank 0 alone
must touch the file system, extension modules must run from the node-local
stage, and the stage must be gone after the job."""
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import JOBS, PYTHON, load_ranks, run_mpi, run_plain

MODULES = "numpy,scipy.linalg,scipy.sparse,mpi4py.MPI"
FAMILIES = ("numpy", "scipy", "mpi4py")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    run_plain([os.path.join(JOBS, "describe.py"), "plain", str(out), MODULES])
    return load_ranks(str(out), 1)[0]


def ours(mods):
    return {k: v for k, v in mods.items() if k.split(".")[0] in FAMILIES}


@pytest.mark.parametrize("nranks", [4, 8])
def test_same_modules_as_plain_import(plain, tmp_path, nranks):
    run_mpi(nranks, [os.path.join(JOBS, "describe.py"), "mpiimport", str(tmp_path), MODULES],
            extra_env={"MPIIMPORT_TIMEOUT": "60", "MPIIMPORT_RANKS_PER_NODE": "3"})
    ranks = load_ranks(str(tmp_path), nranks)
    want = ours(plain["modules"])
    assert len(want) > 100  # numpy + scipy + mpi4py really were imported
    for r in ranks:
        got = ours(r["modules"])
        assert sorted(got) == sorted(want), "rank %d imported another set of modules" % r["rank"]
        for name, w in want.items():
            g = got[name]
            for key in ("file", "path", "package", "cached"):
                assert g[key] == w[key], (r["rank"], name, key)
            if "spec" in w:
                ws, gs = dict(w["spec"]), dict(g["spec"])
                wl, gl = ws.pop("loader"), gs.pop("loader")
                assert gs == ws, (r["rank"], name)
                # same importlib loader class (ours subclasses it)
                if wl is not None:
                    assert wl[0] in gl, (r["rank"], name, wl[0], gl)
        assert r["results"]["numpy"] == plain["results"]["numpy"]
        assert r["results"]["scipy.linalg"] == plain["results"]["scipy.linalg"]
        assert r["results"]["scipy.sparse"] == plain["results"]["scipy.sparse"]
        assert r["results"]["mpi4py"] == nranks
        st = r["stats"]
        assert st["size"] == nranks and st["fallbacks"] == 0
        if r["rank"] == 0:
            assert st["read_count"] > 100 and st["fs_calls"] > 0
        else:
            assert st["fs_calls"] == 0, "rank %d touched the file system" % r["rank"]
            assert st["fs_calls_saved"] > 500
        assert r["meta_path"][0].startswith("<mpiimport.MpiFinder")
        # every extension module was dlopened from this node's stage
        exts = [v["file"] for k, v in got.items() if v["file"] and v["file"].endswith(".so")]
        assert exts and len(r["stage_maps"]) >= len(exts)
        for e in exts:
            assert any(m.endswith(e) for m in r["stage_maps"]), (r["rank"], e)
    # 3 ranks per simulated node: one stage directory per node
    roots = {r["stats"]["stage_root"] for r in ranks}
    assert len(roots) == (nranks + 2) // 3
    for root in roots:
        assert not os.path.exists(root), "stage %s left behind" % root


def test_nonroot_ranks_open_no_shared_files(tmp_path):
    """strace every rank: in the import window, non-root ranks make no
    file-system call under the shared prefixes; rank 0 makes them all."""
    if shutil.which("strace") is None:
        pytest.fail("strace is required (apt install strace)")
    prefixes = json.loads(subprocess.run(
        [PYTHON, "-c", "import sys,json,os; print(json.dumps([p for p in sys.path if p and os.path.exists(p)]))"],
        capture_output=True, text=True, check=True).stdout)
    traces = tmp_path / "traces"
    traces.mkdir()
    out = tmp_path / "out"
    n = 4
    script = ("exec strace -f -qq -e trace=%%file,%%desc -o %s/trace.${PMIX_RANK:-$OMPI_COMM_WORLD_RANK} %s %s mpiimport %s %s"
              % (traces, PYTHON, os.path.join(JOBS, "describe.py"), out, MODULES))
    from conftest import MPIRUN, job_env
    p = subprocess.run([MPIRUN, "--oversubscribe", "--allow-run-as-root", "-n", str(n), "sh", "-c", script],
                       env=job_env({"MPIIMPORT_TIMEOUT": "120"}), capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    path_re = re.compile(r'"([^"]*)"')
    counts = {}
    for r in range(n):
        inside, calls = False, []
        with open(traces / ("trace.%d" % r)) as f:
            for line in f:
                if "/mpiimport-test-marker/begin/" in line:
                    inside = True
                    continue
                if "/mpiimport-test-marker/end/" in line:
                    break
                m = path_re.search(line)
                if inside and m and any(m.group(1).startswith(pre) for pre in prefixes):
                    calls.append(line.strip())
        counts[r] = calls
    assert len(counts[0]) > 300, "rank 0 should read the modules: %d calls" % len(counts[0])
    for r in range(1, n):
        assert counts[r] == [], "rank %d: %d calls, e.g. %s" % (r, len(counts[r]), counts[r][:5])
