"""An application for the image tests: imports numpy and a module of its own
tree, optionally one extra module on one rank, and reports per rank.
usage: app.py OUTDIR [EXTRA_RANK EXTRA_MODULE]"""
import json
import os
import sys

rank = int(os.environ.get("PMIX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
if os.environ.get("APP_INSTALL") == "1":
    import mpiimport
    assert mpiimport.install()
    os.access("/mpiimport-test-marker/installed/rank%d" % rank, os.F_OK)   # strace marker
import numpy
import mod_a
extra = None
if len(sys.argv) > 3 and int(sys.argv[2]) == rank:
    extra = __import__(sys.argv[3]).__name__
import mpiimport
st = mpiimport.stats()
if sys.argv[1] != "-":
    with open(os.path.join(sys.argv[1], "rank%d.json" % rank), "w") as f:
        json.dump({"value": mod_a.VALUE, "sum": float(numpy.arange(5.0).sum()), "extra": extra,
                   "installed": mpiimport.installed(),
                   "meta0": type(sys.meta_path[0]).__name__, "stats": st}, f, default=str)
