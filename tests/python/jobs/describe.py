"""Imports a list of modules (with or without mpiimport) and writes, per rank,
what every imported module looks like and a few computed results.

usage: describe.py MODE OUTDIR MODULE[,MODULE...]   (MODE: plain | mpiimport)"""
import json
import os
import sys

mode, outdir, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
rank = int(os.environ.get("PMIX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
before = set(sys.modules)
installed = False
if mode == "mpiimport":
    import mpiimport
    installed = mpiimport.install()
    assert installed, "mpiimport.install() returned False"
    before = set(sys.modules)

os.access("/mpiimport-test-marker/begin/rank%d" % rank, os.F_OK)
import importlib
for name in names:
    importlib.import_module(name)
os.access("/mpiimport-test-marker/end/rank%d" % rank, os.F_OK)


def loader_classes(loader):
    return [c.__module__ + "." + c.__qualname__ for c in type(loader).__mro__]


def describe(mod):
    spec = getattr(mod, "__spec__", None)
    d = {"file": getattr(mod, "__file__", None),
         "path": list(mod.__path__) if hasattr(mod, "__path__") else None,
         "package": getattr(mod, "__package__", None),
         "cached": getattr(mod, "__cached__", None)}
    if spec is not None:
        d["spec"] = {"name": spec.name, "origin": spec.origin, "cached": spec.cached,
                     "parent": spec.parent, "has_location": spec.has_location,
                     "locations": list(spec.submodule_search_locations)
                     if spec.submodule_search_locations is not None else None,
                     "loader": loader_classes(spec.loader) if spec.loader else None}
    return d


modules = {k: describe(v) for k, v in sorted(sys.modules.items())
           if k not in before and v is not None}

results = {}
if "numpy" in sys.modules:
    import numpy
    a = numpy.arange(1.0, 17.0).reshape(4, 4) + 3 * numpy.eye(4)
    results["numpy"] = float(numpy.linalg.det(a))
if "scipy.linalg" in sys.modules:
    import numpy
    import scipy.linalg
    p, l, u = scipy.linalg.lu(numpy.arange(1.0, 10.0).reshape(3, 3) + numpy.eye(3))
    results["scipy.linalg"] = [round(float(x), 12) for x in u.ravel()]
if "scipy.sparse" in sys.modules:
    import scipy.sparse
    m = scipy.sparse.diags([1.0, 2.0, 3.0]).tocsr()
    results["scipy.sparse"] = float((m @ m).sum())
if "mpi4py.MPI" in sys.modules:
    from mpi4py import MPI
    results["mpi4py"] = MPI.COMM_WORLD.allreduce(1) if mode == "mpiimport" or MPI.COMM_WORLD.Get_size() > 1 else None

stats = {}
stage_maps = []
if installed:
    import mpiimport
    stats = mpiimport.stats()
    with open("/proc/self/maps") as f:
        stage_maps = sorted({line.split()[-1] for line in f
                             if stats["stage_root"] in line})

os.makedirs(outdir, exist_ok=True)
with open(os.path.join(outdir, "rank%d.json" % rank), "w") as f:
    json.dump({"rank": rank, "modules": modules, "results": results, "stats": stats,
               "stage_maps": stage_maps, "meta_path": [repr(x) for x in sys.meta_path]}, f,
              indent=1, sort_keys=True)
