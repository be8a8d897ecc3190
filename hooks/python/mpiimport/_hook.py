"""The import hook: a meta-path finder, a path-entry finder and three loaders
over mpiimport._core.

MpiFinder takes PathFinder's place in sys.meta_path while installed and makes
PathFinder's decision: path entries in order, each entry's finder from
sys.path_importer_cache or else the first of sys.path_hooks that claims it,
namespace portions gathered across entries. A directory under the shared
prefixes that the default FileFinder hook would claim gets an MpiDirFinder (a
FileFinder whose questions go to the C core, answered from what rank 0 has
read and broadcast), without the stat calls the hooks would make; an entry
claimed by any other hook (a user's, zipimport's for a zip file) goes to that
hook, and entries outside the shared prefixes go through PathFinder's own
code. So a module that is not found is not searched for again on the file
system.

The loaders subclass importlib's own (SourceFileLoader, SourcelessFileLoader,
ExtensionFileLoader) and only change where bytes come from, so specs, module
attributes, get_source, get_resource_reader and importlib.resources behave as
in a plain import. importlib.metadata's distributions and pkgutil's
iter_modules are answered from the same listings and bytes.
"""
import _imp
import _signal
import _thread
import atexit
import marshal
import os
import sys
import time

# Only built-in and frozen modules here: `import mpiimport` and install() must
# not read the shared file system (importlib, importlib.util, warnings,
# collections... are not frozen in 3.11; their frozen cores are).
import _frozen_importlib as _bs
import _frozen_importlib_external as _bx

from . import _core

BYTECODE_SUFFIXES = _bx.BYTECODE_SUFFIXES
EXTENSION_SUFFIXES = _imp.extension_suffixes()
SOURCE_SUFFIXES = _bx.SOURCE_SUFFIXES
MAGIC_NUMBER = _bx.MAGIC_NUMBER


def interpreter_tag():
    """Whose compiled code a packed image holds: "<cache tag> <magic>", which
    ends its label in brackets; replaying it elsewhere is refused."""
    return "%s %s" % (sys.implementation.cache_tag, MAGIC_NUMBER.hex())
ExtensionFileLoader = _bx.ExtensionFileLoader
FileFinder = _bx.FileFinder
ModuleSpec = _bs.ModuleSpec
PathFinder = _bx.PathFinder
SourceFileLoader = _bx.SourceFileLoader
SourcelessFileLoader = _bx.SourcelessFileLoader
cache_from_source = _bx.cache_from_source
spec_from_file_location = _bx.spec_from_file_location

_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID",
                  "MPIIMPORT_FORCE")


class _Fallback(Exception):
    """This request goes to Python's own import machinery."""


class _Quiet(_Fallback):
    """A fallback that is expected: counted, not warned."""


def _say(msg):
    sys.stderr.write("mpiimport: %s\n" % msg)
    sys.stderr.flush()


def _is_under(path, prefixes):
    probe = path.rstrip("/") + "/"
    for p in prefixes:
        if probe.startswith(p if p.endswith("/") else p + "/"):
            return True
    return False


def _deepest(path, roots):
    """Length of the longest root that path is at or under (-1: none)."""
    probe = path.rstrip("/") + "/"
    best = -1
    for p in roots:
        q = p if p.endswith("/") else p + "/"
        if len(q) > best and probe.startswith(q):
            best = len(q)
    return best


def _serves(path, prefixes, live):
    """The stack rule: path is served as a snapshot when its nearest root is
    one of the stack's (prefixes) rather than a live directory (the
    program's own directory or the working directory: data the job may
    write, imported and read plainly)."""
    stack = _deepest(path, prefixes)
    return stack >= 0 and stack > _deepest(path, live)


class _Session:
    """Everything one install() owns: the C context, the finder, settings."""

    def __init__(self, ctx, config, prefixes, live=()):
        self.ctx = ctx
        self.rank = ctx.rank
        self.size = ctx.size
        self.root = ctx.rank == 0
        self.timeout = config["timeout"]
        self.verbose = config["verbose"]
        self.prefixes = prefixes     # the stack: served as a snapshot
        self.live = list(live)       # data directories below none of them: plain
        self.lock = _thread.RLock()
        self.depth = 0               # nesting of served steps (the outermost flushes)
        self.plain = False           # set while a fallback runs Python's own import
        self.warned = set()
        self.finished = False
        self.transport = config["transport_name"]
        self.config = config
        self.frozen = False          # replaying an image: no collective after install()
        self.stalled = 0             # consecutive waits for rank 0 that timed out
        self.list_path = None        # where rank 0 records this job's list at exit
        self.replay = None           # (source, reused, reread) when an image was replayed
        self.code_served = set()     # sources whose code was served once (a second time re-checks)
        self.forked = False          # this process is a fork of the rank: plain imports
        self.config_errors = []      # settings of this rank that were bad (read as unset)

    def warn_once(self, key, msg):
        if key not in self.warned:
            self.warned.add(key)
            _say("rank %d: %s" % (self.rank, msg))

    def shared_dir(self, entry):
        """The absolute directory for a path entry under the shared prefixes, or None."""
        if not isinstance(entry, str):
            return None
        # exactly as FileFinder.__init__ makes its path absolute
        if not entry or entry == ".":
            try:
                d = os.getcwd()
            except OSError:
                return None
        elif not _bx._path_isabs(entry):
            try:
                d = _bx._path_join(os.getcwd(), entry)
            except OSError:
                return None
        else:
            d = entry
        return d if self.serves(d) else None

    def serves(self, path):
        """Whether path (absolute) lies in the stack rather than in a live
        directory (see _stack_and_live)."""
        return _serves(path, self.prefixes, self.live)

    def step(self, request, produce, plain):
        """produce() as one served step: under the session lock; the outermost
        step flushes rank 0's facts as one message; a _Fallback in the
        outermost step runs plain() instead (nested steps pass it out)."""
        with self.lock:
            if self.finished or self.plain:
                if self.forked:
                    self.warn_once("fork", "process %d, forked from this rank after install(), imports "
                                   "%r and what follows plainly (the rank's session stays with the rank)"
                                   % (os.getpid(), request))
                return plain()
            outer = self.depth == 0
            self.depth += 1
            try:
                try:
                    return produce()
                except _Fallback as e:
                    if not outer:
                        raise
                    self.fallback(request, e)
                # plain() outside the handler: what it raises is plain's own
                # exception, not one "during handling of" the fallback
                self.plain = True
                try:
                    return plain()
                finally:
                    self.plain = False
            finally:
                self.depth -= 1
                if outer:
                    self.flush(request)

    def need(self, request, fn, *args):
        """fn(*args), receiving rank 0's messages while the answer is a gap."""
        while True:
            try:
                return fn(*args)
            except _core.Gap:
                if self.frozen:  # a frozen rank reads its own gaps: no message will come
                    raise _Fallback("%r: no answer in the replayed image" % (request,)) from None
            except _core.Error as e:
                # what the core cannot answer right (a staged copy that is not what
                # the index says, an I/O error) is imported plainly, never raised
                raise _Fallback("%r: %s" % (request, e)) from None
            # Once rank 0 has gone quiet, later waits are short: a rank whose
            # root has stopped importing (or whose path to it died) must not
            # wait the full timeout at every import. After three quiet waits in
            # a row it only takes what has already arrived (10 ms), so a rank
            # cut off from rank 0 imports everything else at plain speed.
            if not self.stalled:
                wait = self.timeout
            elif self.stalled < 4:
                wait = min(self.timeout, 1.0)
            else:
                wait = min(self.timeout, 0.01)
            try:
                label = self.ctx.receive(wait)
            except _core.Timeout:
                self.stalled += 1
                raise _Fallback("nothing from rank 0 for %.3g s while importing %r: rank 0 went "
                                "quiet (it died, stalls, or imports in a different order than this "
                                "rank)" % (wait, request)) from None
            except _core.Ended:
                raise _Fallback("rank 0 has finished importing, but this rank still imports %r"
                                % (request,)) from None
            except _core.Error as e:
                raise _Fallback("message from rank 0 rejected (%s) while importing %r"
                                % (e, request)) from None
            self.stalled = 0
            if label != request:
                self.ctx.count("out_of_order")

    def flush(self, label):
        if self.root and not self.finished:
            try:
                self.ctx.flush(label)
            except _core.Error as e:
                self.warn_once("flush", "broadcast failed (%s); other ranks will import "
                               "normally" % e)

    def count(self, name, n=1, seconds=0.0):
        # a forked child's context is its parent's (untouched); an ended
        # session's may be closed (a late import at exit)
        if not self.forked and not self.finished:
            self.ctx.count(name, n, seconds)

    def fallback(self, request, why):
        self.count("fallbacks")
        if isinstance(why, _Quiet):
            return
        self.warn_once("fallback", "%s; importing it normally (further fallbacks are silent, "
                       "see mpiimport.stats())" % why)

    # -- rank 0's read-ahead: the bytes a found module will need, in the same message
    def prefetch(self, loader_kind, origin, fullname):
        if loader_kind == _core.LOADER_SOURCE:
            pyc = _pyc_path(origin)
            r = self.ctx.source_code(MAGIC_NUMBER, origin, pyc)
            if r is not None and r[0] == _core.CODE_COMPILE_NEEDED:
                try:
                    _compile_served(self, fullname, origin, pyc, r[2], r[3])
                except Exception:  # noqa: BLE001 - known as "does not compile"; get_code raises it
                    pass
        elif loader_kind == _core.LOADER_EXTENSION:
            self.ctx.extension(origin)
        else:
            self.ctx.file(origin, True)

    def find_in_dir(self, fullname, d):
        """FileFinder(d).find_spec(fullname), answered by the core."""
        r = self.need(fullname, self.ctx.find, d, fullname.rpartition(".")[2])
        if r is None:
            return None
        kind, loader_kind, origin, location = r
        if kind == "namespace":
            spec = ModuleSpec(fullname, None)
            spec.submodule_search_locations = [location]
            return spec
        if self.root and not self.frozen:
            self.prefetch(loader_kind, origin, fullname)
        cls = _LOADERS[loader_kind]
        if fullname in _AFTER_EXEC:
            cls = _after_exec_loader(cls)
        loader = cls(fullname, origin, self)
        return spec_from_file_location(fullname, origin, loader=loader,
                                       submodule_search_locations=[location]
                                       if kind == "package" else None)

    def listdir(self, request, d):
        """The names in directory d (None: not a directory), from the listings."""
        names = self.need(request, self.ctx.listdir, d)
        return None if names is None else list(names)

    def file_bytes(self, request, path):
        """A file's bytes (None: no such regular file), from what rank 0 read."""
        r = self.need(request, self.ctx.file, path, True)
        return None if r is None else r[0]


def _pyc_path(source):
    try:
        return cache_from_source(source)
    except NotImplementedError:
        return None


def _compile_served(session, fullname, source_path, pyc_path, mtime_ns, size):
    """The rank that reads (rank 0; every rank for its own gaps in a replayed
    image) compiles a source whose bytecode cache is missing or stale, once
    for the job, makes the code known, and (rank 0) writes the cache as
    SourceLoader would. A source that does not compile is made known with
    empty code: every rank then compiles it itself and raises what a plain
    import raises, instead of waiting for code that will never come."""
    with open(source_path, "rb") as f:
        source = f.read()
    session.ctx.count("fs_calls", 3)
    try:
        code = _bs._call_with_frames_removed(compile, source, source_path, "exec",
                                             dont_inherit=True, optimize=-1)
    except BaseException:
        session.ctx.add_code(source_path, b"", mtime_ns, size)
        raise
    session.ctx.add_code(source_path, MAGIC_NUMBER + marshal.dumps(code), mtime_ns, size)
    if session.root and not sys.dont_write_bytecode and pyc_path is not None:
        data = _bx._code_to_timestamp_pyc(code, int(_stat_mtime(mtime_ns)), size)
        try:
            _bx.SourceFileLoader(fullname, source_path)._cache_bytecode(source_path, pyc_path, data)
        except (NotImplementedError, OSError):
            pass
    return code


def _stat_mtime(mtime_ns):
    # os.stat's float st_mtime: seconds + nanoseconds * 1e-9
    return mtime_ns // 1_000_000_000 + (mtime_ns % 1_000_000_000) * 1e-9


def _known(session, path):
    """What the session knows of a file (bytes, mtime_ns, size), or None:
    then the loader reads it itself, as plainly (also when the knowledge
    cannot be used: a staged copy that is not what the index says)."""
    if session is None or session.finished:
        return None
    try:
        return session.ctx.known(path)
    except _core.Error:
        return None


class _Served:
    """What the three loaders share: the session, get_data answered from what
    rank 0 sent, and the frame of every served step (lock, rank 0's flush,
    timing, fallback to importlib's own behaviour)."""

    def __init__(self, fullname, path, session=None):
        super().__init__(fullname, path)
        self._mpii = session

    def get_data(self, path):
        r = _known(self._mpii, path)
        if r is not None:
            return r[0]
        return super().get_data(path)

    # No exec_module here: importlib's own runs the module's code, so no frame
    # of this file is on the stack while a module body runs (a warning's
    # stacklevel and a traceback skip importlib's frames only, as plainly).
    # The few modules whose behaviour the hook extends (_AFTER_EXEC) get a
    # loader of their own (_after_exec_loader).

    def _served(self, request, produce, plain):
        """produce(session), or plain() when mpiimport cannot serve request."""
        s = self._mpii
        if s is None:
            return plain()
        t0 = time.perf_counter()
        try:
            return s.step(request, lambda: produce(s), plain)
        finally:
            s.count("load", 1, time.perf_counter() - t0)


class MpiSourceLoader(_Served, SourceFileLoader):
    """SourceFileLoader whose code comes from rank 0: a valid bytecode cache,
    or code rank 0 compiled. Like SourceFileLoader, the source is checked
    again at every import of the module (a failed import retried, a reload):
    the second and later times, every rank forgets what it knew of the source
    and its cache, and rank 0 reads them afresh (a replayed image: that rank
    imports the module plainly)."""

    def get_code(self, fullname):
        source_path = self.get_filename(fullname)
        pyc = _pyc_path(source_path)

        def produce(s):
            if source_path in s.code_served:
                if s.frozen:
                    raise _Quiet("%s is imported again" % source_path)
                s.ctx.forget(source_path)
                if pyc is not None:
                    s.ctx.forget(pyc)
            s.code_served.add(source_path)
            r = s.need(fullname, s.ctx.source_code, MAGIC_NUMBER, source_path, pyc)
            if r is None:
                raise _Fallback("%s vanished" % source_path)
            kind, data, mtime_ns, size = r
            if kind == _core.CODE_PYC:
                return _bx._compile_bytecode(memoryview(data)[16:], name=fullname,
                                             bytecode_path=pyc, source_path=source_path)
            if kind == _core.CODE_COMPILED and data:
                if data[:4] != MAGIC_NUMBER:
                    # a packed image of another interpreter, staged: its code is not ours
                    raise _Fallback("%s was compiled by another Python (bytecode magic %s, this one's %s)"
                                    % (source_path, bytes(data[:4]).hex(), MAGIC_NUMBER.hex()))
                code = marshal.loads(memoryview(data)[4:])
                _imp._fix_co_filename(code, source_path)
                return code
            if kind == _core.CODE_COMPILED:
                # rank 0 could not compile it: compile here, raising what a plain import raises
                raise _Quiet("%s does not compile" % source_path)
            return _compile_served(s, fullname, source_path, pyc, mtime_ns, size)

        return self._served(fullname, produce, lambda: super(MpiSourceLoader, self).get_code(fullname))

    def path_stats(self, path):
        r = _known(self._mpii, path)
        if r is not None:
            return {"mtime": _stat_mtime(r[1]), "size": r[2]}
        return super().path_stats(path)


class MpiSourcelessLoader(_Served, SourcelessFileLoader):
    """SourcelessFileLoader reading the .pyc from rank 0's broadcast."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)

        def produce(s):
            r = s.need(fullname, s.ctx.file, path, True)
            if r is None:
                raise _Fallback("%s vanished" % path)
            data = r[0]
            _bx._classify_pyc(data, fullname, {"name": fullname, "path": path})
            return _bx._compile_bytecode(memoryview(data)[16:], name=fullname, bytecode_path=path)

        return self._served(fullname, produce, lambda: super(MpiSourcelessLoader, self).get_code(fullname))


class MpiExtensionLoader(_Served, ExtensionFileLoader):
    """ExtensionFileLoader that dlopens a node-local copy written once per node
    (layout kept, so $ORIGIN works); __file__ stays the original path."""

    def create_module(self, spec):
        def produce(s):
            if _core.mapped(self.path):
                # loaded already as another library's dependency (ld.so opened
                # the original): that one copy, as a plain import reuses it
                return _bs._call_with_frames_removed(_imp.create_dynamic, spec)
            if not s.need(spec.name, s.ctx.extension, self.path):
                raise _Fallback("%s vanished" % self.path)
            try:
                staged = s.ctx.stage(self.path)
            except _core.Error as e:
                raise _Fallback("cannot stage %s (%s)" % (self.path, e)) from None
            module = _bs._call_with_frames_removed(_imp.create_dynamic,
                                                   ModuleSpec(spec.name, self, origin=staged))
            try:
                module.__file__ = spec.origin
            except AttributeError:
                pass
            return module

        return self._served(spec.name, produce,
                            lambda: super(MpiExtensionLoader, self).create_module(spec))


# The frames a served load puts between importlib's and the code that raises
# (a source that does not compile, an extension's init that fails) count as
# importlib's own: CPython cuts a run of importlib frames ending in
# _call_with_frames_removed out of the traceback, and only frames whose file
# is importlib's are in such a run. So these functions (and the functions
# defined in them) carry importlib's file name, and a traceback of a failed
# import is plain's, frame for frame. (A bug of mpiimport's own in them shows
# up as a frame of "<frozen importlib._bootstrap_external>" named after the
# function here.)


def _as_importlib_frames(code):
    consts = tuple(_as_importlib_frames(c) if isinstance(c, type(code)) else c for c in code.co_consts)
    return code.replace(co_filename="<frozen importlib._bootstrap_external>", co_consts=consts)


for _f in (_Session.step, _Served._served, MpiSourceLoader.get_code, MpiSourcelessLoader.get_code,
           MpiExtensionLoader.create_module, _compile_served):
    _f.__code__ = _as_importlib_frames(_f.__code__)
del _f


_AFTER_EXEC_LOADERS = {}


def _after_exec_loader(cls):
    """cls, and after the module's code the hook's extension of it
    (_AFTER_EXEC): for those few modules only, so every other module body
    runs with no frame of this file above it."""
    sub = _AFTER_EXEC_LOADERS.get(cls)
    if sub is None:
        def exec_module(self, module):
            cls.exec_module(self, module)
            after = _AFTER_EXEC.get(module.__name__)
            if after is not None:
                after(module)
        sub = _AFTER_EXEC_LOADERS[cls] = type(cls.__name__, (cls,), {"exec_module": exec_module,
                                                                      "__module__": cls.__module__})
    return sub


_LOADERS = {
    _core.LOADER_EXTENSION: MpiExtensionLoader,
    _core.LOADER_SOURCE: MpiSourceLoader,
    _core.LOADER_BYTECODE: MpiSourcelessLoader,
}

_DEFAULT_LOADERS = tuple(_bx._get_supported_file_loaders())


def _is_default_file_finder(finder):
    return type(finder) is FileFinder and finder._loaders == MpiDirFinder._default_loader_list


class MpiDirFinder(FileFinder):
    """The path-entry finder of a shared directory: what the default FileFinder
    hook would make, with find_spec answered by the core (no stat of the
    directory, no listing on this rank). In sys.path_importer_cache while the
    session lasts; pkgutil.iter_modules over it reads the same listings."""

    _default_loader_list = FileFinder("/", *_DEFAULT_LOADERS)._loaders

    def __init__(self, session, path):
        super().__init__(path, *_DEFAULT_LOADERS)
        self._mpii = session

    def __repr__(self):
        return "FileFinder({!r})".format(self.path)

    def find_spec(self, fullname, target=None):
        s = self._mpii
        return s.step(fullname, lambda: s.find_in_dir(fullname, self.path),
                      lambda: FileFinder.find_spec(self, fullname, target))


class MpiFinder:
    """Meta-path finder in PathFinder's place; see the module docstring."""

    def __init__(self, session):
        self._mpii = session

    def __repr__(self):
        return "<mpiimport.MpiFinder rank %d of %d>" % (self._mpii.rank, self._mpii.size)

    def find_spec(self, fullname, path=None, target=None):
        s = self._mpii
        if path is None:
            path = sys.path
        t0 = time.perf_counter()
        try:
            return s.step(fullname, lambda: self._find(fullname, path, target),
                          lambda: PathFinder.find_spec(fullname, path, target))
        finally:
            s.count("find", 0, time.perf_counter() - t0)

    def _entry_finder(self, entry):
        """PathFinder._path_importer_cache(entry): the cache, else the hooks
        (where path_hook below claims shared directories without a stat)."""
        key = entry
        if entry == "":
            try:
                key = os.getcwd()
            except FileNotFoundError:
                return None
        cache = sys.path_importer_cache
        try:
            return cache[key]
        except KeyError:
            finder = cache[key] = PathFinder._path_hooks(key)
            return finder

    def path_hook(self, path):
        """In sys.path_hooks while installed, just before zipimport's and
        FileFinder's: claims a shared directory (an MpiDirFinder, what the
        FileFinder hook would make) from the listings, so neither hook stats
        it; anything else goes on to the next hook."""
        s = self._mpii
        d = s.shared_dir(path) if not s.finished else None
        if d is None:
            raise ImportError("not a shared directory", path=path)
        state = s.step(path, lambda: s.need(path, s.ctx.dir_state, d), lambda: None)
        if state != "dir":
            raise ImportError("not a shared directory", path=path)
        return MpiDirFinder(s, d)

    def _find(self, fullname, path, target):
        namespace_path = []
        for entry in path:
            finder = None
            if not isinstance(entry, str):
                spec = PathFinder._get_spec(fullname, [entry], target)
            else:
                finder = self._entry_finder(entry)
                if finder is None:
                    continue
                if isinstance(finder, MpiDirFinder):
                    spec = finder.find_spec(fullname, target)
                else:
                    spec = PathFinder._get_spec(fullname, [entry], target)
            if spec is None:
                continue
            if spec.loader is not None:
                return spec
            portions = spec.submodule_search_locations
            if not portions:
                if isinstance(finder, MpiDirFinder):
                    raise ImportError("spec missing loader")
                continue
            namespace_path.extend(portions)
        if namespace_path:
            spec = ModuleSpec(fullname, None)
            spec.submodule_search_locations = _bx._NamespacePath(fullname, namespace_path,
                                                                 PathFinder._get_spec)
            return spec
        return None

    def invalidate_caches(self):
        s = self._mpii
        with s.lock:
            if not s.finished:
                s.ctx.invalidate()
            s.code_served.clear()
        PathFinder.invalidate_caches()

    def find_distributions(self, context=None):
        """importlib.metadata's search (MetadataPathFinder) with the listings
        and METADATA bytes of shared directories served."""
        import importlib.metadata as md  # the caller has imported it
        if context is None:
            context = md.DistributionFinder.Context()
        s = self._mpii
        found = []
        for entry in context.path:
            d = s.shared_dir(entry) if not s.finished else None
            names = None
            if d is not None:
                names = s.step("importlib.metadata", lambda: s.listdir("importlib.metadata", d),
                               lambda: None)
            if names is None:
                found.extend(md.PathDistribution(p)
                             for p in md.MetadataPathFinder._search_paths(context.name, [entry]))
                continue
            found.extend(_ServedDistribution(s, p)
                         for p in md.Lookup(_ServedPath(d, names)).search(md.Prepared(context.name)))
        return iter(found)


class _ServedPath:
    """importlib.metadata.FastPath over a served listing (for its Lookup)."""

    def __init__(self, root, names):
        self.root = root
        self._names = names

    def children(self):
        return self._names

    def joinpath(self, child):
        import pathlib
        return pathlib.Path(self.root, child)


def _served_distribution_class():
    import importlib.metadata as md

    class ServedDistribution(md.PathDistribution):
        """A PathDistribution whose files are read through the session."""

        def __init__(self, session, path):
            super().__init__(path)
            self._mpii = session

        def read_text(self, filename):
            s = self._mpii
            path = str(self._path.joinpath(filename))
            data = s.step("importlib.metadata", lambda: s.file_bytes("importlib.metadata", path),
                          lambda: md.PathDistribution.read_text(self, filename))
            if isinstance(data, str):
                return data
            if data is None:
                return None
            return data.decode("utf-8")  # as pathlib's read_text(encoding='utf-8')

        read_text.__doc__ = md.PathDistribution.read_text.__doc__

    return ServedDistribution


_served_distribution = []


def _ServedDistribution(session, path):
    if not _served_distribution:
        _served_distribution.append(_served_distribution_class())
    return _served_distribution[0](session, path)


def _module_name(filename):
    """inspect.getmodulename: the name for a file name, or None."""
    suffixes = sorted(EXTENSION_SUFFIXES + SOURCE_SUFFIXES + BYTECODE_SUFFIXES, key=len, reverse=True)
    for suffix in suffixes:
        if filename.endswith(suffix):
            return filename[:-len(suffix)]
    return None


def _iter_served_modules(importer, prefix=""):
    """pkgutil.iter_modules over an MpiDirFinder: pkgutil's FileFinder rules
    (_iter_file_finder_modules), with listings instead of os.listdir."""
    s = importer._mpii

    def listing():
        names = s.listdir("pkgutil", importer.path)
        if names is None:
            return []
        out, yielded = [], set()
        for fn in sorted(names):
            modname = _module_name(fn)
            if modname == "__init__" or modname in yielded:
                continue
            ispkg = False
            if not modname and "." not in fn:
                sub = s.listdir("pkgutil", _bx._path_join(importer.path, fn))
                if sub is None:
                    continue
                if not any(_module_name(n) == "__init__" for n in sub):
                    continue  # not a package
                modname, ispkg = fn, True
            if modname and "." not in modname:
                yielded.add(modname)
                out.append((prefix + modname, ispkg))
        return out

    plain = lambda: list(_pkgutil_file_finder_modules[0](importer, prefix))  # noqa: E731
    yield from s.step("pkgutil", listing, plain)


_pkgutil_file_finder_modules = []


def _register_pkgutil(pkgutil):
    """pkgutil.iter_modules(): MpiDirFinders list through the session."""
    if _pkgutil_file_finder_modules:
        return
    _pkgutil_file_finder_modules.append(pkgutil._iter_file_finder_modules)
    pkgutil.iter_importer_modules.register(MpiDirFinder, _iter_served_modules)


# Run after a served module's code: modules whose behaviour the hook extends.
_AFTER_EXEC = {"pkgutil": _register_pkgutil}


class _State:
    """The module's state: the active session, and every context to free at exit."""
    session = None
    finder = None
    pathfinder_index = None
    contexts = []
    atexit_registered = False
    last_stats = None


_state = _State()


def transports():
    """Names of the transports compiled into this build; the first is the default."""
    return _core.transports()


def installed():
    return _state.session is not None


def _suffix_table():
    table = [(s, _core.LOADER_EXTENSION) for s in EXTENSION_SUFFIXES]
    table += [(s, _core.LOADER_SOURCE) for s in SOURCE_SUFFIXES]
    table += [(s, _core.LOADER_BYTECODE) for s in BYTECODE_SUFFIXES]
    return table


def _normalise(entries):
    out = []
    for p in entries:
        if not isinstance(p, str):
            continue
        if p in ("", "."):
            p = os.getcwd()
        elif not os.path.isabs(p):
            p = os.path.abspath(p)
        p = p.rstrip("/") or "/"
        if p not in out:
            out.append(p)
    return out


def _main_dir():
    """The directory Python puts first on sys.path for the main program (the
    site hook installs before it is there): the script's, else the cwd."""
    argv0 = sys.argv[0] if getattr(sys, "argv", None) else ""
    if argv0 in ("", "-c", "-m", "-"):
        return ""
    return os.path.dirname(os.path.realpath(argv0))


def _prefixes(config):
    """MPIIMPORT_SHARED_PREFIXES; by default the stack as it is at install():
    every sys.path entry, the main program's directory and the interpreter's
    prefixes (where site initialisation, still running when the site hook
    installs, adds its directories). A directory put on sys.path later that
    lies outside these (a temporary directory made at run time) is not
    served: it goes through PathFinder exactly as without mpiimport."""
    raw = config["shared_prefixes"]
    if raw:
        return _normalise([p for p in raw.split(":") if p])
    roots = list(sys.path) + [_main_dir()] + _interpreter_prefixes()
    return _normalise([r for r in roots if isinstance(r, str)])


def _interpreter_prefixes():
    return _normalise([getattr(sys, n, None) for n in ("prefix", "exec_prefix", "base_prefix",
                                                       "base_exec_prefix")])


def _live_dirs(config):
    """The live directories: the main program's directory and the working
    directory at install(), where a job writes its data (outputs next to
    the script, modules it generates, files other ranks create). Unlike the
    stack (a snapshot), what lies in them and in no deeper stack root is
    imported and read plainly, re-checked as Python does. A directory inside
    the interpreter's own installation is never live; with
    MPIIMPORT_SHARED_PREFIXES the user names the stack whole (nothing
    live)."""
    if config["shared_prefixes"]:
        return []
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    install = _interpreter_prefixes()
    return _normalise([d for d in (_main_dir(), cwd) if d and not _is_under(d, install)])


def _cache_key():
    """What a recorded list is for: the interpreter, its path and the program
    (not its arguments: runs of one program mostly import the same modules; a
    list replayed for a run that imports others is still correct, only slower:
    what it lacks is imported plainly, and recorded for next time).

    It runs on rank 0 before the finder is installed, so it must import
    nothing from the file system: a module imported here (hashlib, _hashlib)
    is in rank 0's sys.modules for the rest of the job, is never served nor
    recorded, and every other rank, frozen on the replayed image, then
    imports it plainly when the program needs it (numpy.random -> secrets
    -> hmac -> hashlib). Only interpreter built-ins, else plain Python."""
    main = sys.modules.get("__main__")
    program = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv else "")
    key = repr((sys.executable, sys.version, sys.flags.optimize, list(sys.path), program))
    data = key.encode("utf-8", "surrogateescape")
    for name in ("_sha2", "_sha256"):  # built into the interpreter: no file read
        if name in sys.builtin_module_names:
            return __import__(name).sha256(data).hexdigest()[:32]
    h = 0x6C62272E07BB014262B821756295C58D  # 128-bit FNV-1a: no import at all
    for b in data:
        h = ((h ^ b) * 0x1000000000000000000013B) & ((1 << 128) - 1)
    return "%032x" % h


def _compile_stale_sources(session):
    """Rank 0, after a replay: code for every source whose cache is not valid."""
    for src in session.ctx.sources():
        if not src.endswith(tuple(SOURCE_SUFFIXES)):
            continue
        pyc = _pyc_path(src)
        r = session.ctx.source_code(MAGIC_NUMBER, src, pyc)
        if r is not None and r[0] == _core.CODE_COMPILE_NEEDED:
            name = os.path.splitext(os.path.basename(src))[0]
            try:
                _compile_served(session, name, src, pyc, r[2], r[3])
            except (SyntaxError, ValueError, OSError):
                pass  # importing it will raise what a plain import raises


def _start_session(s):
    """Collective: rank 0 replays a packed image (MPIIMPORT_IMAGE) or the list
    recorded by an earlier run of the same program, and sends it as ONE
    message; from then on no collective is needed. Without either, imports
    are served one broadcast each (and recorded for the next run)."""
    cfg = s.config
    # A bad setting on rank 0: the whole job imports plainly (rank 0 says so
    # in the start message); a bad setting elsewhere: that rank follows.
    if s.root and s.config_errors:
        try:
            s.ctx.flush("plain", True)
        except _core.Error:
            pass
        return "plain"
    # Only rank 0 reads and writes lists (and computes their key).
    if s.root and cfg["record"] and cfg["cache_dir"] and not cfg["image"]:
        unsafe = _unsafe_cache(cfg["cache_dir"], _cache_key() + ".mpiilist")
        if unsafe:
            _say("recorded lists in MPIIMPORT_CACHE_DIR=%s not used: %s" % (cfg["cache_dir"], unsafe))
        else:
            s.list_path = os.path.join(cfg["cache_dir"], _cache_key() + ".mpiilist")
    if s.root:
        source = cfg["image"] or s.list_path
        replayed = None
        if source:
            try:
                # a list is facts only (paths, stats): whatever code or bytes a
                # list file may carry are never used; a packed image is code
                replayed = s.ctx.replay(source, bool(cfg["image"] and cfg["trust_image"]),
                                        not cfg["image"], interpreter_tag())
                if replayed is not None:
                    s.ctx.count("fs_calls", 4)  # open, fstat, read, close of the image
                elif cfg["image"]:
                    _say("image MPIIMPORT_IMAGE=%s not found; importing without it" % source)
            except _core.Error as e:
                what = "image MPIIMPORT_IMAGE=%s" % source if cfg["image"] else "recorded list %s" % source
                _say("%s refused (%s); importing without it" % (what, e))
        if replayed is not None:
            _compile_stale_sources(s)
            s.replay = (source,) + tuple(replayed)
        try:
            s.ctx.flush("replay" if replayed is not None else "lockstep", True)
        except _core.Error as e:
            s.warn_once("flush", "broadcast failed (%s)" % e)
        if replayed is not None:
            s.ctx.freeze()
            s.frozen = True
    elif s.size > 1:
        label = _receive_start(s)
        if label == "replay":
            s.ctx.freeze()
            s.frozen = True
        return label


# How many MPIIMPORT_TIMEOUTs a rank waits for rank 0's start message: rank
# 0 may be slow to start (it reads a recorded list or a large image, compiles
# stale sources), but a start that never comes (a fault) must not hang the
# rank: it then imports plainly, after saying why.
_START_TIMEOUTS = 10


def _receive_start(s):
    """A rank other than 0: the start message's label, or None (then this rank
    imports plainly, after saying why). Rank 0 answered the hello moments ago
    and does nothing but mpiimport's own work until it sends this message
    (reads the list or the image, compiles stale sources, sends), so a long
    wait means a slow rank 0 (a large image, a loaded node, a slow file
    system), not a rank that went elsewhere: the wait goes on, in slices of
    MPIIMPORT_TIMEOUT, up to _START_TIMEOUTS of them, while no process of
    this node's job is known dead (a dead rank 0 on another node is the
    launcher's business: it ends the job, as it would without mpiimport)."""
    for _ in range(_START_TIMEOUTS):
        try:
            return s.ctx.receive(s.timeout)
        except _core.Timeout as e:
            why = _start_cannot_come(s)
            if why is None:
                continue
            s.warn_once("start", "no start message from rank 0 (%s; %s)" % (e, why))
        except _core.Error as e:
            s.warn_once("start", "no start message from rank 0 (%s)" % e)
        return None
    s.warn_once("start", "no start message from rank 0 in %d x MPIIMPORT_TIMEOUT (%g s)"
                % (_START_TIMEOUTS, _START_TIMEOUTS * s.timeout))
    return None


def _start_cannot_come(s):
    """Why the start message can no longer come (None: it still may)."""
    if _node_peer_died(s):
        return "a process of this job on this node died"
    return None


def _node_peer_died(s):
    """A process of this job on this node died without leaving the node's
    registry (<stage root>.live/<pid>, one per process; see the core's
    stage_registry.c). False when the registry cannot tell."""
    root = s.ctx.stage_root
    try:
        names = os.listdir(root + ".live") if root else []
    except OSError:
        return False
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            os.kill(int(name), 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass  # alive (EPERM), or nothing to tell
    return False


def _unsafe_cache(cache_dir, name):
    """Why recorded lists in cache_dir must not be used (None: they may): the
    directory and the list must belong to this user and be writable by no one
    else, or another user could steer this job's imports."""
    uid = os.geteuid()
    for path in (cache_dir, os.path.join(cache_dir, name)):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # made by this job, 0700
        except OSError as e:
            return "%s: %s" % (path, e.strerror)
        if st.st_uid != uid:
            return "%s belongs to uid %d, not to this user (uid %d)" % (path, st.st_uid, uid)
        if st.st_mode & 0o022:
            return "%s is writable by %s" % (path, "group and others" if st.st_mode & 0o022 == 0o022
                                             else "its group" if st.st_mode & 0o020 else "others")
        kind = st.st_mode & 0o170000    # S_IFMT: a directory, and in it a regular file
        if kind != (0o040000 if path == cache_dir else 0o100000):
            return "%s is not a %s" % (path, "directory" if path == cache_dir else "regular file")
    return None


def _load_config():
    """(config, errors, skipped): the MPIIMPORT_* settings, a bad one read as
    unset (each named in errors and skipped); config None when that does not
    help."""
    skip, errors = [], []
    for _ in range(15):
        try:
            return _core.config(skip), errors, skip
        except ValueError as e:
            errors.append(str(e))
            name = str(e).split("=")[0].split(":")[0]
            if not name.startswith("MPIIMPORT_") or name in skip:
                break
            skip.append(name)
    return None, errors, skip


def _record(s):
    """Rank 0, at the end: the list of what it served, for the next run."""
    if not (s.root and s.list_path):
        return
    try:
        os.makedirs(os.path.dirname(s.list_path), mode=0o700, exist_ok=True)
        s.ctx.save(s.list_path, False, "recorded list")
    except (OSError, _core.Error) as e:
        s.warn_once("record", "cannot record the import list in %s (%s)" % (s.list_path, e))


def install(_transport=None):
    """Collective. Puts mpiimport's finder in PathFinder's place at the head of
    sys.meta_path. Returns True when installed; False (after saying why) when
    disabled, outside a parallel launcher, or misconfigured."""
    if _state.session is not None:
        return True
    config, config_errors, skipped = _load_config()
    if config is None or (config_errors and _transport is not None):
        _say("%s; importing normally" % "; ".join(config_errors))
        return False
    if _transport is not None:  # python3 -m mpiimport pack: one process, nothing recorded
        config.update(transport=_transport, record=False, image="", disable=False)
    if config["disable"]:
        return False
    if _transport is None and not any(v in os.environ for v in _LAUNCHER_VARS):
        if config["verbose"]:
            _say("no parallel launcher found (mpirun, srun); importing normally")
        return False
    if config["staged"] and config["image"] and _transport is None:
        return _install_staged(config, config_errors, skipped)
    if _transport is None:
        parent = _rank_of_parent()
        if parent is not None:
            if config["verbose"]:
                _say("pid %d is a child of the rank in pid %s, not a rank: importing normally"
                     % (os.getpid(), parent))
            return False
        os.environ[_RANK_PID] = _rank_marker()   # inherited by every child of this rank
    try:
        ctx = _core.Context(config["transport"] or None, _suffix_table(), skipped)
    except (ValueError, _core.Error) as e:
        _say("%s; importing normally" % e)
        return False
    _state.contexts.append(ctx)
    config["transport_name"] = config["transport"] or transports()[0]
    session = _Session(ctx, config, _prefixes(config), _live_dirs(config))
    session.config_errors = config_errors
    return _activate(session, _start_session(session))


# A rank's child (subprocess of sys.executable, a shell script's python3, a
# multiprocessing spawn or forkserver worker) inherits MPIIMPORT=1 and the
# launcher's variables, but it is not a rank: joining the job (MPI_Init under
# the rank's identity) would abort it or hang. So install() in a rank records
# "<pid> <launcher identity>" in the environment, and install() in a process
# that finds another pid there with the same launcher identity imports
# plainly, silently (it is exactly plain). The same pid is the rank itself
# after an exec (mpiimport-python); another identity is a rank of a job
# launched from within a rank (mpirun run by a rank), which joins its own job.
# Staged mode has no collective: a child there serves from its node's stage
# as the rank does (as under `mpiimport run`).
_RANK_PID = "MPIIMPORT_RANK_PID"
_IDENTITY_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_NAMESPACE", "PMIX_RANK", "PMI_RANK", "SLURM_JOB_ID",
                  "SLURM_STEP_ID", "SLURM_PROCID", "MPIIMPORT_FORCE")


def _rank_marker():
    return "%d %s" % (os.getpid(), "\x1f".join(os.environ.get(v, "") for v in _IDENTITY_VARS))


def _rank_of_parent():
    """The pid of the rank this process is a child of (inherited marker: another
    pid, the same launcher identity), or None: this process is a rank."""
    mark = os.environ.get(_RANK_PID)
    if not mark:
        return None
    pid, _, identity = mark.partition(" ")
    me, _, mine = _rank_marker().partition(" ")
    if pid == me or identity != mine:
        return None
    return pid


def _install_staged(config, config_errors, skipped):
    """MPIIMPORT_STAGED=1: the image was staged on every node beforehand
    (`mpiimport stage`), so this rank serves from its node's stage alone, with
    no transport, no collective and no shared-file-system call for the image.
    A node without the stage (or with a broken one) imports plainly."""
    rank, size = _launcher_rank_size()
    image = config["image"]
    try:
        ctx = _core.Context("self", _suffix_table(), skipped)
        root = ctx.use_staged(image)
    except (ValueError, _core.Error) as e:
        _say("rank %d: %s; importing normally" % (rank, e))
        return False
    if root is None:
        ctx.close()
        _say("rank %d: MPIIMPORT_STAGED=1 but %s is not staged on this node (run `python3 -m mpiimport "
             "stage %s` on every node first, one task per node); importing normally" % (rank, image, image))
        return False
    _state.contexts.append(ctx)
    config["transport_name"] = "staged"
    session = _Session(ctx, config, _prefixes(config), _live_dirs(config))
    session.rank, session.size, session.root = rank, size, rank == 0
    session.config_errors = config_errors
    session.frozen = True
    session.replay = (image, 0, 0)
    return _activate(session, "replay")


def _activate(session, started):
    """The session's finder at the head of sys.meta_path, once it started."""
    config, config_errors, ctx = session.config, session.config_errors, session.ctx
    if started == "plain":
        # the job agreed to import plainly: rank 0's settings were bad
        session.finished = True
        try:
            ctx.finish()
        except _core.Error:
            pass
        if session.root:
            _say("%s; every rank imports normally" % "; ".join(config_errors))
        return False
    if config_errors:
        session.warn_once("config", "%s; this rank uses the default instead (rank 0's settings "
                          "decide for the job)" % "; ".join(config_errors))
    finder = MpiFinder(session)
    meta = sys.meta_path
    index = None
    for i, f in enumerate(meta):
        if f is PathFinder:
            index = i
            break
    if index is not None:
        del meta[index]
    meta.insert(0, finder)
    _state.session, _state.finder, _state.pathfinder_index = session, finder, index
    if "pkgutil" in sys.modules:
        _register_pkgutil(sys.modules["pkgutil"])
    _install_path_hook(session, finder)
    _catch_sigterm()
    if not _state.atexit_registered:
        atexit.register(_at_exit)
        _state.atexit_registered = True
    if session.verbose >= 2 and session.root:
        _say("installed on %d ranks, transport %s, shared prefixes %s"
             % (session.size, session.transport,
                ":".join(session.prefixes)))
    return True


def _install_path_hook(session, finder):
    """finder.path_hook goes just before zipimport's and the default FileFinder
    hook (right before FileFinder's if a hook of someone else's sits between
    the two, so that it keeps its turn); the default FileFinders already in
    sys.path_importer_cache for shared directories become MpiDirFinders."""
    hooks = sys.path_hooks
    zip_at = next((i for i, h in enumerate(hooks) if getattr(h, "__module__", None) == "zipimport"), None)
    file_at = next((i for i, h in enumerate(hooks) if getattr(h, "__qualname__", "").startswith(
        "FileFinder.path_hook.")), len(hooks))
    at = file_at
    if zip_at is not None and zip_at < file_at and zip_at + 1 == file_at:
        at = zip_at
    hooks.insert(at, finder.path_hook)
    cache = sys.path_importer_cache
    for key, f in list(cache.items()):
        if _is_default_file_finder(f):
            d = session.shared_dir(f.path)
            if d is not None:
                cache[key] = MpiDirFinder(session, d)


def _after_fork_in_child():
    """os.register_at_fork: a forked child (os.fork, multiprocessing's fork
    start method) never touches its parent's session or transport: the
    contexts are dropped unclosed, the session is over for this process
    (imports are plain, and it says so once), nothing runs at its exit."""
    s = _state.session
    for ctx in _state.contexts:
        ctx.abandon()
    _state.contexts = []
    _state.session = _state.finder = None
    _state.last_stats = None
    if s is not None:
        s.lock = _thread.RLock()   # a lock another thread of the parent held stays held
        s.finished = s.forked = True
        s.plain = False
        s.depth = 0


os.register_at_fork(after_in_child=_after_fork_in_child)


def _on_sigterm(signum, frame):
    """SIGTERM (the scheduler ending the job; SIGKILL follows): leave this
    node's stage (the node's last live process removes it), then die of the
    signal as the default action would."""
    s = _state.session
    if s is not None:
        try:
            s.ctx.leave_node()
        except (_core.Error, RuntimeError):
            pass
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGTERM)


def _catch_sigterm():
    """Only where SIGTERM has its default action (an application's own
    handler stays), and only from the main thread (Python's rule)."""
    try:
        if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
            _signal.signal(_signal.SIGTERM, _on_sigterm)
    except ValueError:
        pass


def uninstall():
    """Collective. Ends the session (rank 0's last messages are drained on
    every rank, this node's staged files removed) and restores PathFinder."""
    s = _state.session
    if s is None:
        return
    with s.lock:
        try:
            sys.meta_path.remove(_state.finder)
        except ValueError:
            pass
        if _state.pathfinder_index is not None and PathFinder not in sys.meta_path:
            sys.meta_path.insert(min(_state.pathfinder_index, len(sys.meta_path)), PathFinder)
        try:
            sys.path_hooks.remove(_state.finder.path_hook)
        except ValueError:
            pass
        try:
            if _signal.getsignal(_signal.SIGTERM) is _on_sigterm:
                _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
        except ValueError:
            pass
        # PathFinder makes plain FileFinders again for these entries, on demand
        for key, f in list(sys.path_importer_cache.items()):
            if isinstance(f, MpiDirFinder):
                del sys.path_importer_cache[key]
        error = None
        _record(s)
        try:
            s.ctx.finish()
        except _core.Error as e:
            error = e
        s.finished = True
        _state.last_stats = _stats_of(s)
        _state.session = None
        _state.finder = None
    if error is not None:
        s.warn_once("finish", "ending the session: %s" % error)


def _stats_of(s):
    st = s.ctx.stats()
    st.update(rank=s.rank, size=s.size, transport=s.transport, stage_root=s.ctx.stage_root,
              replayed=s.frozen, replay=s.replay, list_path=s.list_path, installed=not s.finished)
    return st


def _launcher_rank_size():
    for r, n in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"),
                 ("PMI_RANK", "PMI_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        try:
            return int(os.environ[r]), int(os.environ.get(n, "1"))
        except (KeyError, ValueError):
            continue
    return 0, 1


def stats():
    """This rank's counters: time and count for find, read (I/O), broadcast
    (comm) and load; file-system calls made and answered from memory. The
    same keys whether or not install() succeeded (installed: False, counts 0)."""
    s = _state.session
    if s is not None:
        return _stats_of(s)
    if _state.last_stats:
        return dict(_state.last_stats)
    st = dict(_core.zero_stats())
    rank, size = _launcher_rank_size()
    st.update(rank=rank, size=size, transport=None, stage_root=None, replayed=False, replay=None,
              list_path=None, installed=False)
    return st


def format_stats(st):
    mib = 1024.0 * 1024.0
    return "\n".join([
        "mpiimport: rank %d of %d, transport %s" % (st["rank"], st["size"], st["transport"]),
        "  find  %6d lookups               %8.3f s" % (st["find_count"], st["find_s"]),
        "  read  %6d files   %9.2f MiB %8.3f s  (I/O)" % (st["read_count"], st["read_bytes"] / mib, st["read_s"]),
        "  comm  %6d bcasts  %9.2f MiB %8.3f s" % (st["bcast_count"], st["bcast_bytes"] / mib, st["bcast_s"]),
        "  load  %6d modules               %8.3f s" % (st["load_count"], st["load_s"]),
        "  file-system calls: %d made, %d answered from memory; %d fallbacks"
        % (st["fs_calls"], st["fs_calls_saved"], st["fallbacks"]),
    ])


def _at_exit():
    s = _state.session
    if s is not None:
        uninstall()
    st = _state.last_stats
    if st and st.get("rank") == 0 and s is not None and s.verbose >= 1:
        _say(format_stats(st)[len("mpiimport: "):])
    # Newest first: a context that did not start the transport's runtime frees
    # its resources before the one that did finalises it.
    while _state.contexts:
        _state.contexts.pop().close()
