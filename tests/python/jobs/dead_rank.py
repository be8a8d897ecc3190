"""A rank dies (SIGKILL, no clean-up) right after install(); the others go on
importing numpy and scipy.sparse and must finish with the right modules, one
warning each at most, within a bounded time.
usage: dead_rank.py OUTDIR VICTIM"""
import json
import os
import signal
import sys

import mpiimport

outdir, victim = sys.argv[1], int(sys.argv[2])
rank = int(os.environ.get("PMIX_RANK") or os.environ["OMPI_COMM_WORLD_RANK"])
assert mpiimport.install()
if rank == victim:
    os.kill(os.getpid(), signal.SIGKILL)
import numpy                         # the survivors
import scipy.sparse
value = float(numpy.arange(10.0).sum()) + float(scipy.sparse.eye(3).sum())
st = mpiimport.stats()
os.makedirs(outdir, exist_ok=True)
with open(os.path.join(outdir, "rank%d.json" % rank), "w") as f:
    json.dump({"rank": rank, "value": value, "numpy_file": numpy.__file__,
               "stats": {k: v for k, v in st.items() if isinstance(v, (int, float, str))}}, f)
