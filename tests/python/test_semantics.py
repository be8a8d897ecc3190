"""What a module looks like through mpiimport equals a plain import, on a tree
that exercises the corners of CPython's import system, and the bytecode rules:
a stale cache is compiled once, by rank 0, and the new source is what runs."""
import os
import py_compile
import shutil
import time
import zipfile

import pytest

from conftest import JOBS, load_ranks, run_mpi, run_plain


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def make_tree(root):
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    write(os.path.join(a, "pkg", "__init__.py"), "VALUE = 'pkg'\n")
    write(os.path.join(a, "pkg", "sub.py"), "VALUE = 'sub'\n")
    write(os.path.join(a, "pkg", "data.txt"), "resource bytes\n")
    write(os.path.join(a, "nspkg", "one.py"), "WHO = 'a'\n")
    write(os.path.join(b, "nspkg", "two.py"), "WHO = 'b'\n")
    # a stale cache: compiled for an older source of another size and mtime
    stale = os.path.join(a, "stale.py")
    write(stale, "VALUE = 'old'\n")
    py_compile.compile(stale, doraise=True)
    time.sleep(1.1)
    write(stale, "VALUE = 'new and longer'\n")
    # a sourceless module
    src = os.path.join(b, "onlypyc_src.py")
    write(src, "VALUE = 'sourceless'\n")
    py_compile.compile(src, cfile=os.path.join(b, "onlypyc.pyc"), doraise=True)
    os.unlink(src)
    with zipfile.ZipFile(os.path.join(root, "mods.zip"), "w") as z:
        z.writestr("zipped.py", "VALUE = 'zip'\n")


def test_semantics_match_plain(tmp_path):
    plain_tree, mpi_tree = tmp_path / "plain_tree", tmp_path / "mpi_tree"
    make_tree(str(plain_tree))
    make_tree(str(mpi_tree))
    run_plain([os.path.join(JOBS, "semantics.py"), str(plain_tree), str(tmp_path / "p"), "plain"])
    plain = load_ranks(str(tmp_path / "p"), 1)[0]
    n = 4
    run_mpi(n, [os.path.join(JOBS, "semantics.py"), str(mpi_tree), str(tmp_path / "m"), "mpiimport"],
            extra_env={"MPIIMPORT_TIMEOUT": "60",
                       "MPIIMPORT_SHARED_PREFIXES": str(mpi_tree) + ":/usr/lib/python3"})
    ranks = load_ranks(str(tmp_path / "m"), n)

    def norm(x):  # the two trees differ only by their root
        return __import__("json").loads(__import__("json").dumps(x).replace(str(plain_tree), "@").replace(str(mpi_tree), "@"))

    want = norm(plain)
    assert want["stale"][0] == "new and longer"
    assert want["nspkg"][0] == ["@/a/nspkg", "@/b/nspkg"]
    for r in ranks:
        got = norm({k: v for k, v in r.items() if k != "stats"})
        for key in want:
            assert got[key] == want[key], (key, got[key], want[key])
    # rank 0 compiled the stale module once and wrote its cache; nobody else read files
    for i, r in enumerate(ranks):
        assert r["stats"]["fallbacks"] == 0
        if i:
            assert r["stats"]["fs_calls"] == 0, r["stats"]
    stale_pyc = os.path.join(str(mpi_tree), "a", "__pycache__", "stale.cpython-311.pyc")
    with open(stale_pyc, "rb") as f:
        header = f.read(16)
    size = os.stat(os.path.join(str(mpi_tree), "a", "stale.py")).st_size
    assert int.from_bytes(header[12:16], "little") == size
