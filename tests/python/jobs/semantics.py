"""Import semantics on a synthetic tree (argv[1]) that tests/python/test_semantics.py
builds: packages, namespace portions in two path entries, a stale bytecode
cache, a sourceless module, a zip on sys.path, resources, misses.
usage: semantics.py TREE OUTDIR MODE"""
import importlib
import importlib.machinery
import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
import sys

tree, outdir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
rank = int(os.environ.get("PMIX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
sys.path[:0] = [os.path.join(tree, "a"), os.path.join(tree, "b"), os.path.join(tree, "mods.zip")]
if mode == "mpiimport":
    import mpiimport
    assert mpiimport.install()

out = {}
import pkg
import pkg.sub
out["pkg"] = [pkg.__file__, pkg.__path__, pkg.__spec__.origin, pkg.__spec__.cached, pkg.sub.VALUE]
out["resource"] = importlib.resources.files("pkg").joinpath("data.txt").read_text()
out["metadata"] = [importlib.metadata.version("numpy"),
                   sorted(importlib.metadata.distribution("numpy").metadata.keys())[:3]]
import nspkg.one
import nspkg.two
out["nspkg"] = [list(nspkg.__path__), nspkg.__spec__.origin, nspkg.__file__ if hasattr(nspkg, "__file__") else None,
                nspkg.one.WHO, nspkg.two.WHO, type(nspkg.__loader__).__name__]
import stale
out["stale"] = [stale.VALUE, stale.__cached__]
import onlypyc
out["onlypyc"] = [onlypyc.VALUE, onlypyc.__file__, isinstance(onlypyc.__loader__, importlib.machinery.SourcelessFileLoader)]
import zipped
out["zipped"] = [zipped.VALUE, zipped.__file__]
try:
    import does_not_exist_anywhere
    out["miss"] = "imported?!"
except ModuleNotFoundError as e:
    out["miss"] = [str(e), e.name]
out["find_spec_miss"] = importlib.util.find_spec("also_missing") is None
try:
    import pkg.nosuch
except ModuleNotFoundError as e:
    out["submiss"] = str(e)
# a module written after start-up, found after invalidate_caches() on every rank
if rank == 0:
    with open(os.path.join(tree, "a", "late_%s.py" % mode), "w") as f:
        f.write("VALUE = 'late'\n")
if mode == "mpiimport":
    from mpi4py import MPI
    MPI.COMM_WORLD.Barrier()
importlib.invalidate_caches()
late = importlib.import_module("late_%s" % mode)
out["late"] = late.VALUE
if mode == "mpiimport":
    out["stats"] = mpiimport.stats()
os.makedirs(outdir, exist_ok=True)
with open(os.path.join(outdir, "rank%d.json" % rank), "w") as f:
    json.dump(out, f, indent=1)
