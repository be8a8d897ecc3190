"""Import-system cases where mpiimport must behave as plain Python (run with
MPIIMPORT_DISABLE=1 for the plain answer). usage:
    conformance.py CASE DIR OUTDIR
CASE: path_hooks | reimport | runtime_dir | metadata. DIR is the case's tree
(under MPIIMPORT_SHARED_PREFIXES); each rank writes OUTDIR/rank<N>.json."""
import json
import os
import sys

case, tree, outdir = sys.argv[1:4]
rank = int(os.environ.get("PMIX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))

import mpiimport  # noqa: E402

installed = mpiimport.install()
os.access("/mpiimport-test-marker/installed/rank%d" % rank, os.F_OK)   # strace marker
import importlib  # noqa: E402
import importlib.util  # noqa: E402

result = {"installed": installed}


def barrier():
    from mpi4py import MPI
    MPI.COMM_WORLD.Barrier()


if case == "path_hooks":
    # A hook of the user's claims one shared directory; a finder put straight
    # into sys.path_importer_cache serves another; a plain shared directory
    # gets the default FileFinder.
    from importlib.machinery import FileFinder, ModuleSpec

    calls = []

    class Finder:
        def __init__(self, path):
            self.path = path

        def find_spec(self, fullname, target=None):
            calls.append(("find", os.path.basename(self.path), fullname))
            if fullname.startswith("magic_"):
                return ModuleSpec(fullname, Loader(), origin="magic:" + fullname)
            return None

        def invalidate_caches(self):
            pass

    class Loader:
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            module.VALUE = "made by the user's hook: " + module.__name__

    def hook(path):
        calls.append(("hook", os.path.basename(path)))
        if path.endswith("/hooked"):
            return Finder(path)
        raise ImportError("not mine")

    sys.path_hooks.insert(0, hook)
    sys.path_importer_cache[os.path.join(tree, "cached")] = Finder(os.path.join(tree, "cached"))
    sys.path[:0] = [os.path.join(tree, "hooked"), os.path.join(tree, "cached"), os.path.join(tree, "plain")]
    import magic_one
    import plain_mod
    result["magic_one"] = magic_one.VALUE
    result["plain_mod"] = plain_mod.VALUE
    result["in_hooked"] = plain_mod.__file__.endswith("plain/plain_mod.py")
    result["calls"] = sorted(set(map(tuple, calls)))
    result["hooked_finder"] = type(sys.path_importer_cache[os.path.join(tree, "hooked")]).__name__
    result["plain_finder_is_filefinder"] = isinstance(
        sys.path_importer_cache[os.path.join(tree, "plain")], FileFinder)
    spec = importlib.util.find_spec("magic_two")
    result["magic_two_origin"] = spec.origin
elif case == "reimport":
    # A module whose import failed is fixed on disk (its cache removed) and
    # imported again; a module reloaded after its source changed.
    sys.path.insert(0, tree)
    fixes = {"retry_syntax": "VALUE = 'fixed a syntax error'\n",
             "retry_name": "VALUE = 'fixed a NameError, longer text'\n",
             "retry_reload": "VALUE = 'reloaded with a new value'\n"}
    for name, fixed in fixes.items():
        try:
            mod = importlib.import_module(name)
            first = "ok:" + mod.VALUE
        except (SyntaxError, NameError) as e:
            first = type(e).__name__
        barrier()
        if rank == 0:
            with open(os.path.join(tree, name + ".py"), "w") as f:
                f.write(fixed)
            pyc = importlib.util.cache_from_source(os.path.join(tree, name + ".py"))
            if os.path.exists(pyc):
                os.unlink(pyc)
        barrier()
        if name in sys.modules:
            second = importlib.reload(sys.modules[name]).VALUE
        else:
            second = importlib.import_module(name).VALUE
        result[name] = [first, second]
elif case == "runtime_dir":
    # A directory made after install() and filled after it was first searched.
    import tempfile
    d = tempfile.mkdtemp()
    sys.path.insert(0, d)
    try:
        import rt_pkg  # noqa: F401
        result["before"] = "found"
    except ImportError:
        result["before"] = "missing"
    os.mkdir(os.path.join(d, "rt_pkg"))
    with open(os.path.join(d, "rt_pkg", "__init__.py"), "w") as f:
        f.write("")
    with open(os.path.join(d, "rt_pkg", "sub.py"), "w") as f:
        f.write("VALUE = 'sub'\n")
    spec = importlib.util.find_spec("rt_pkg.sub")
    result["spec"] = spec is not None and spec.origin.replace(d, "@")
    import shutil
    shutil.rmtree(d)
elif case == "metadata":
    import importlib.metadata as md
    import pkgutil
    sys.path.insert(0, tree)
    os.access("/mpiimport-test-marker/begin/rank%d" % rank, os.F_OK)
    result["version"] = md.version("fake-dist")
    result["eps"] = sorted(ep.name for ep in md.entry_points(group="fake.group"))
    result["dists"] = sorted(d.metadata["Name"] for d in md.distributions(path=[tree]))
    result["files"] = sorted(str(f) for f in md.files("fake-dist"))
    result["iter_dir"] = sorted((n, p) for _, n, p in pkgutil.iter_modules([tree]))
    result["iter_all"] = sorted((n, p) for f, n, p in pkgutil.iter_modules()
                                if getattr(f, "path", None) == tree)
    result["walk"] = sorted(n for _, n, _ in pkgutil.walk_packages([tree]))
    os.access("/mpiimport-test-marker/end/rank%d" % rank, os.F_OK)
if installed:
    st = mpiimport.stats()
    result["stats"] = {k: st[k] for k in ("fallbacks", "fs_calls", "image_misses")}
with open(os.path.join(outdir, "rank%d.json" % rank), "w") as f:
    json.dump(result, f, sort_keys=True)
