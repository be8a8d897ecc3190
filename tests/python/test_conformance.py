"""Import-system conformance: what an outside import-system test suite found
different from plain Python, one test per class (each compares every rank of
an mpiimport job with the same job run plainly), and `import mpiimport` +
install() touching no file on any path (built-in and frozen modules only)."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import JOBS, MPIRUN, PYTHON, job_env, load_ranks, run_mpi

JOB = os.path.join(JOBS, "conformance.py")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def both(tmp_path, case, tree, n=2, extra_env=None):
    """The case under mpiimport (n ranks) and plainly (MPIIMPORT_DISABLE=1):
    (ranks with mpiimport, ranks without)."""
    env = {"MPIIMPORT_SHARED_PREFIXES": str(tree) + ":/usr/lib/python3.11:/usr/lib/python3",
           "MPIIMPORT_TIMEOUT": "60"}
    env.update(extra_env or {})
    got = {}
    for mode in ("mpiimport", "plain"):
        out = tmp_path / ("out-" + mode)
        out.mkdir()
        e = dict(env, MPIIMPORT_DISABLE="1") if mode == "plain" else env
        run_mpi(n, [JOB, case, str(tree), str(out)], extra_env=e)
        got[mode] = load_ranks(str(out), n)
    for r in got["mpiimport"]:
        assert r["installed"] is True
    for r in got["plain"]:
        assert r["installed"] is False
    return got["mpiimport"], got["plain"]


def same(ranks, plain, keys):
    for r in ranks:
        for k in keys:
            assert r[k] == plain[0][k], (k, r[k], plain[0][k])


def test_import_mpiimport_and_install_use_only_builtin_and_frozen_modules():
    code = ("import sys, _imp; before = set(sys.modules); import mpiimport; ok = mpiimport.install(); "
            "new = sorted(set(sys.modules) - before); "
            "print('RESULT', ok, [m for m in new if not (m in sys.builtin_module_names or "
            "_imp.is_frozen(m) or m == 'mpiimport' or m.startswith('mpiimport.'))])")
    for record in ("0", "1"):
        p = run_mpi(2, ["-c", code], extra_env={"MPIIMPORT_RECORD": record})
        lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT")]
        assert lines == ["RESULT True []"] * 2, p.stdout + p.stderr


def test_path_hooks_and_the_importer_cache_are_consulted(tmp_path):
    tree = tmp_path / "tree"
    write(str(tree / "hooked" / "plain_mod.py"), "VALUE = 'must not be found here'\n")
    write(str(tree / "cached" / "plain_mod.py"), "VALUE = 'must not be found here either'\n")
    write(str(tree / "plain" / "plain_mod.py"), "VALUE = 'plain'\n")
    ranks, plain = both(tmp_path, "path_hooks", tree)
    want = plain[0]
    assert want["magic_one"].startswith("made by the user's hook") and want["plain_mod"] == "plain"
    assert ["hook", "hooked"] in want["calls"] and ["hook", "plain"] in want["calls"]
    assert ["find", "cached", "plain_mod"] in want["calls"]
    assert want["hooked_finder"] == "Finder" and want["plain_finder_is_filefinder"]
    same(ranks, plain, ["magic_one", "plain_mod", "in_hooked", "calls", "hooked_finder",
                        "plain_finder_is_filefinder", "magic_two_origin"])
    for r in ranks:
        assert r["stats"]["fallbacks"] == 0, r["stats"]


def test_a_failed_import_fixed_on_disk_is_imported_afresh(tmp_path):
    tree = tmp_path / "tree"
    write(str(tree / "retry_syntax.py"), "VALUE = (\n")
    write(str(tree / "retry_name.py"), "VALUE = undefined_name\n")
    write(str(tree / "retry_reload.py"), "VALUE = 'first'\n")
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(tree)], check=False)
    plain_tree = tmp_path / "plain_tree"
    shutil.copytree(str(tree), str(plain_tree))
    ranks, _ = both(tmp_path, "reimport", tree, n=3)
    # the plain run of the same job, on a fresh copy of the tree
    out = tmp_path / "plain2"
    out.mkdir()
    run_mpi(3, [JOB, "reimport", str(plain_tree), str(out)], extra_env={"MPIIMPORT_DISABLE": "1"})
    plain = load_ranks(str(out), 3)
    assert plain[0]["retry_syntax"] == ["SyntaxError", "fixed a syntax error"]
    assert plain[0]["retry_name"] == ["NameError", "fixed a NameError, longer text"]
    assert plain[0]["retry_reload"] == ["ok:first", "reloaded with a new value"]
    same(ranks, plain, ["retry_syntax", "retry_name", "retry_reload"])
    # every rank compiled the broken source itself once (counted, not warned: the
    # one fallback each); none waited for code that never came (that would be
    # a second, timed-out fallback)
    for r in ranks:
        assert r["stats"]["fallbacks"] == 1, r["stats"]


def test_a_directory_made_at_run_time_behaves_as_with_pathfinder(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    ranks, plain = both(tmp_path, "runtime_dir", tree, extra_env={"MPIIMPORT_SHARED_PREFIXES": ""})
    assert plain[0]["before"] == "missing" and plain[0]["spec"] == "@/rt_pkg/sub.py"
    same(ranks, plain, ["before", "spec"])


def make_dist_tree(tree):
    info = tree / "fake_dist-1.2.dist-info"
    write(str(info / "METADATA"), "Metadata-Version: 2.1\nName: fake-dist\nVersion: 1.2\n")
    write(str(info / "entry_points.txt"), "[fake.group]\nbeta = fake_mod:b\nalpha = fake_mod:a\n")
    write(str(info / "RECORD"), "fake_mod.py,,\nfake_pkg/__init__.py,,\nfake_dist-1.2.dist-info/METADATA,,\n")
    write(str(tree / "fake_mod.py"), "a = b = None\n")
    write(str(tree / "fake_pkg" / "__init__.py"), "")
    write(str(tree / "fake_pkg" / "inner.py"), "")
    write(str(tree / "not_a_pkg" / "data.txt"), "data\n")
    write(str(tree / "ext_like.cpython-311-x86_64-linux-gnu.so"), "not really\n")


def traced_shared_calls(trace, tree, begin, end):
    """Calls whose path lies under tree (not the node's stage, which holds a
    copy of it under /dev/shm)."""
    inside, calls = False, []
    with open(trace) as f:
        for line in f:
            if begin in line:
                inside = True
            elif end in line:
                break
            elif inside and ('"%s/' % tree in line or '"%s"' % tree in line):
                calls.append(line.strip())
    return calls


def test_metadata_and_pkgutil_are_served(tmp_path):
    if shutil.which("strace") is None:
        pytest.fail("strace is required (apt install strace)")
    tree = tmp_path / "tree"
    make_dist_tree(tree)
    ranks, plain = both(tmp_path, "metadata", tree)
    want = plain[0]
    assert want["version"] == "1.2" and want["eps"] == ["alpha", "beta"]
    assert want["iter_dir"] == [["ext_like", False], ["fake_mod", False], ["fake_pkg", True]]
    assert "fake_pkg.inner" in want["walk"]
    same(ranks, plain, ["version", "eps", "dists", "files", "iter_dir", "iter_all", "walk"])
    # and non-root ranks read none of it: strace every rank
    traces, out = tmp_path / "traces", tmp_path / "out-traced"
    traces.mkdir()
    out.mkdir()
    script = "exec strace -f -qq -e trace=%%file,%%desc -o %s/trace.${PMIX_RANK:-$OMPI_COMM_WORLD_RANK} %s %s metadata %s %s" % (
        traces, PYTHON, JOB, tree, out)
    env = job_env({"MPIIMPORT_SHARED_PREFIXES": str(tree) + ":/usr/lib/python3.11:/usr/lib/python3",
                   "MPIIMPORT_TIMEOUT": "60"})
    p = subprocess.run([MPIRUN, "--oversubscribe", "--allow-run-as-root", "-n", "2", "sh", "-c", script],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    root_calls = traced_shared_calls(traces / "trace.0", tree, "/mpiimport-test-marker/begin/",
                                     "/mpiimport-test-marker/end/")
    calls = traced_shared_calls(traces / "trace.1", tree, "/mpiimport-test-marker/begin/",
                                "/mpiimport-test-marker/end/")
    assert len(root_calls) > 3, root_calls
    assert calls == [], calls[:10]
    assert json.load(open(out / "rank1.json"))["version"] == "1.2"
