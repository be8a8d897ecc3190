"""Site-level activation: mpiimport.pth, installed into Python's site
directory, imports this module only when MPIIMPORT is set (and not "0"), so
that `mpirun -x MPIIMPORT=1 python3 app.py` is accelerated with no change to
app.py. Without MPIIMPORT the .pth line costs one dictionary lookup."""
from ._hook import install

install()
