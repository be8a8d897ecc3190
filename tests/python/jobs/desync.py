"""Ranks import in different orders: rank 1 imports an extra module nobody else
imports; rank 0 imports one only it needs; then everyone imports the same set.
usage: desync.py OUTDIR"""
import json
import os
import sys

import mpiimport

outdir = sys.argv[1]
rank = int(os.environ.get("PMIX_RANK") or os.environ["OMPI_COMM_WORLD_RANK"])
assert mpiimport.install()
if rank == 1:
    import wave                      # only rank 1
    assert wave.Wave_read is not None
if rank == 0:
    import fractions                 # only rank 0
    assert fractions.Fraction(1, 3) * 3 == 1
import numpy                         # everyone
import scipy.sparse                  # everyone
value = float(numpy.arange(10.0).sum()) + float(scipy.sparse.eye(3).sum())
st = mpiimport.stats()
os.makedirs(outdir, exist_ok=True)
with open(os.path.join(outdir, "rank%d.json" % rank), "w") as f:
    json.dump({"rank": rank, "value": value, "wave": "wave" in sys.modules,
               "numpy_file": numpy.__file__, "stats": st}, f)
