"""The demo's workload: what every MPI rank runs, with or without mpiimport.

    mpirun -n R /usr/bin/python3 scripts/demo_job.py MODE RESULT.json
    MODE: plain | mpiimport | replay

scripts/demo.py launches this script (timed, and once more under strace) and
compares the modes; it lives in its own file so that exactly the same code
runs in every mode and under both kinds of run.

Modes "mpiimport" and "replay" run the same code here; they differ only in
the environment demo.py gives them: "mpiimport" runs with MPIIMPORT_RECORD=0
(no recorded list is read or written: one broadcast per import, lock-step),
"replay" with MPIIMPORT_RECORD=1 and a private MPIIMPORT_CACHE_DIR that an
earlier run has filled (rank 0 replays the recorded list in one broadcast).

Steps, on every rank:
  1. modes "mpiimport" and "replay": `import mpiimport; mpiimport.install()`
     (collective); exit with an error if it returns False.
  2. The import window: a begin marker, `import numpy, scipy.linalg,
     scipy.sparse` and `from mpi4py import MPI`, an end marker. The markers
     are os.access() calls on a path that does not exist
     (/mpiimport-demo-marker/{begin,end}/rank<N>): harmless, and visible in
     strace, so demo.py can cut each rank's trace at the window. The window
     is timed with time.perf_counter.
  3. Real work with the imported modules (an LU factorisation, a sparse
     product, a numpy sum), checked against known answers and compared
     across ranks.
  4. MPI allreduce (MAX) of the window time; rank 0 gathers every rank's
     timings and, in modes "mpiimport" and "replay", every rank's
     mpiimport.stats() (which holds, among the rest, bcast_count and
     replayed), and writes them as JSON to RESULT.json.

Note on the window time: in mode "plain", `from mpi4py import MPI` starts MPI
(MPI_Init_thread) inside the window; in mode "mpiimport", install() has already
started it before the window (so has it in mode "replay"). The JSON therefore also holds the time of the
numpy/scipy imports alone ("numpy_scipy_s_max"), of the mpi4py import alone
("mpi4py_s_max"), and of `import mpiimport` + install() ("install_s_max", 0 in
mode "plain"); all are maxima over the ranks. In mode "replay", install() is
where rank 0 re-reads the recorded files and sends them in one broadcast.
"""
import json
import os
import sys
import time

USAGE = "usage: demo_job.py plain|mpiimport|replay RESULT.json"
MPIIMPORT_MODES = ("mpiimport", "replay")     # the modes that install() mpiimport

if len(sys.argv) != 3 or sys.argv[1] not in ("plain",) + MPIIMPORT_MODES:
    sys.exit(USAGE)
MODE, RESULT = sys.argv[1], sys.argv[2]
RANK = int(os.environ.get("OMPI_COMM_WORLD_RANK",
                          os.environ.get("PMIX_RANK", os.environ.get("PMI_RANK", "0"))))
MARKER = "/mpiimport-demo-marker/%s/rank%d"

install_s = 0.0
if MODE in MPIIMPORT_MODES:
    t = time.perf_counter()
    import mpiimport
    if not mpiimport.install():
        sys.exit("demo_job.py: rank %d: mpiimport.install() returned False "
                 "(not under mpirun? MPIIMPORT_DISABLE set?)" % RANK)
    install_s = time.perf_counter() - t

# ---- the import window ----------------------------------------------------
os.access(MARKER % ("begin", RANK), os.F_OK)
t0 = time.perf_counter()
import numpy                          # noqa: E402
import scipy.linalg                   # noqa: E402
import scipy.sparse                   # noqa: E402
t1 = time.perf_counter()
from mpi4py import MPI                # noqa: E402
t2 = time.perf_counter()
os.access(MARKER % ("end", RANK), os.F_OK)
# ---------------------------------------------------------------------------

window_s = t2 - t0
numpy_scipy_s = t1 - t0
mpi4py_s = t2 - t1

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
if rank != RANK:
    sys.exit("demo_job.py: rank from the environment (%d) differs from MPI's (%d)" % (RANK, rank))

# ---- real work, checked ---------------------------------------------------
errors = []
a = numpy.array([[4.0, 3.0, 2.0, 1.0],
                 [3.0, 4.0, 3.0, 2.0],
                 [2.0, 3.0, 4.0, 3.0],
                 [1.0, 2.0, 3.0, 4.0]])
p, l, u = scipy.linalg.lu(a)
if not numpy.allclose(p @ l @ u, a):
    errors.append("scipy.linalg.lu: P L U != A")
det = float(numpy.prod(numpy.diag(u)) * numpy.linalg.det(p))
if abs(det - 20.0) > 1e-9:                       # det of this matrix is 20
    errors.append("determinant from LU is %r, expected 20" % det)
n = 1000
lap = scipy.sparse.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
ones = numpy.ones(n)
row_sums = lap @ ones                            # 1 at both ends, 0 inside
if not (row_sums[0] == 1.0 and row_sums[-1] == 1.0 and not row_sums[1:-1].any()):
    errors.append("sparse Laplacian row sums are wrong")
total = float(numpy.arange(1, 100001, dtype=numpy.float64).sum())
if total != 100000 * 100001 / 2:
    errors.append("numpy sum is %r" % total)
checksum = det + float(u.sum()) + total
# every rank must compute the same numbers
if comm.allreduce(checksum, op=MPI.MAX) != comm.allreduce(checksum, op=MPI.MIN):
    errors.append("ranks computed different results")

# ---- collect --------------------------------------------------------------
window_max = comm.allreduce(window_s, op=MPI.MAX)
numpy_scipy_max = comm.allreduce(numpy_scipy_s, op=MPI.MAX)
mpi4py_max = comm.allreduce(mpi4py_s, op=MPI.MAX)
install_max = comm.allreduce(install_s, op=MPI.MAX)
per_rank = {"rank": rank, "window_s": window_s, "numpy_scipy_s": numpy_scipy_s,
            "mpi4py_s": mpi4py_s, "install_s": install_s, "errors": errors}
if MODE in MPIIMPORT_MODES:
    per_rank["mpiimport"] = mpiimport.stats()    # includes bcast_count and replayed
everyone = comm.gather(per_rank, root=0)
n_errors = comm.allreduce(len(errors), op=MPI.SUM)

if rank == 0:
    result = {
        "mode": MODE,
        "ranks": size,
        "import_s_max": window_max,
        "numpy_scipy_s_max": numpy_scipy_max,
        "mpi4py_s_max": mpi4py_max,
        "install_s_max": install_max,
        "ok": n_errors == 0,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "per_rank": everyone,
    }
    tmp = RESULT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, default=str)
    os.replace(tmp, RESULT)

if errors:
    sys.stderr.write("demo_job.py: rank %d: %s\n" % (rank, "; ".join(errors)))
    sys.exit(1)
if n_errors:
    sys.exit(1)
