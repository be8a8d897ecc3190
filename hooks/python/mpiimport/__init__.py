"""mpiimport — one process reads Python's imports, every rank gets the bytes.

    import mpiimport
    mpiimport.install()        # collective: every rank calls it
    import numpy, scipy.linalg # rank 0 reads the shared file system; others receive

While installed, imports are collective: ranks should import the same modules
in the same order. A rank that does not is never hung and never given wrong
bytes: it keeps what rank 0 sends, and imports what it cannot get in time the
normal way, with one warning.

Configuration (environment, read once at install()):
  MPIIMPORT_DISABLE=1            install() does nothing
  MPIIMPORT_TRANSPORT=name       one of transports() (default: the first)
  MPIIMPORT_SHARED_PREFIXES=a:b  directories on the shared file system
                                 (default: every sys.path entry)
  MPIIMPORT_STAGE_DIR=dir        node-local directory for extension modules
                                 (default /dev/shm)
  MPIIMPORT_TIMEOUT=seconds      longest wait for rank 0 (default 30)
  MPIIMPORT_RANKS_PER_NODE=n     simulate nodes of n consecutive ranks
  MPIIMPORT_VERBOSE=0|1|2        1: statistics at exit on rank 0; 2: per import
"""
from ._hook import install, uninstall, installed, stats, transports, format_stats

__all__ = ["install", "uninstall", "installed", "stats", "transports", "format_stats"]
__version__ = "0.1.0"
