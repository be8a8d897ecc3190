"""Prints what start-up made of the interpreter: sys.path, module names,
site's user-site settings (one JSON line per rank, to OUTDIR/rankN.json)."""
import json
import os
import site
import sys

rank = int(os.environ.get("PMIX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
with open(os.path.join(sys.argv[1], "rank%d.json" % rank), "w") as f:
    json.dump({"path": sys.path, "modules": sorted(sys.modules),
               "enable_user_site": site.ENABLE_USER_SITE, "user_site": site.USER_SITE,
               "argv": sys.argv, "main": os.path.realpath(sys.modules["__main__"].__file__),
               "stats": __import__("mpiimport").stats() if "mpiimport" in sys.modules else None}, f)
