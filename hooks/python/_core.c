/* _core.c — mpiimport._core, the CPython face of the C core.
 *
 * One Python object, Context, owns one mpii_context (the one context struct)
 * and exposes the questions the import hook asks: find, file, source_code,
 * listing state, staging, and the protocol (flush, receive, finish). The GIL
 * is released while waiting on the transport. Transports are reached only
 * through the registry in mpiimport/transport.h; no transport header and no
 * MPI header is included here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <link.h>
#include <stdlib.h>
#include <string.h>

#include "mpiimport/config.h"
#include "mpiimport/context.h"
#include "mpiimport/stage.h"
#include "mpiimport/transport.h"

typedef struct {
    PyObject *Error, *Gap, *Timeout, *Ended;
} core_state;

typedef struct {
    PyObject_HEAD
    mpii_context *ctx;
    mpii_suffix_table suffixes;
    int finished;
    mpii_stage_hold hold; /* a staged image's root, held while the context serves from it */
    PyObject *error, *gap, *timeout, *ended; /* borrowed from module state, kept alive */
} ContextObject;

static core_state *get_state(PyObject *module) { return (core_state *)PyModule_GetState(module); }

static PyObject *raise_status(ContextObject *self, mpii_status st, const char *what)
{
    PyObject *type = self->error;
    if (st == MPII_ERR_GAP)
        type = self->gap;
    else if (st == MPII_ERR_TIMEOUT)
        type = self->timeout;
    else if (st == MPII_ERR_ENDED)
        type = self->ended;
    PyErr_Format(type, "%s: %s", what, mpii_strerror(st));
    return NULL;
}

static PyObject *config_dict(const mpii_config *c);

/* The environment, but for the variables named in arg (a NULL-terminated
 * array): those read as unset. */
static const char *env_getter(void *arg, const char *name)
{
    for (const char *const *skip = arg; skip != NULL && *skip != NULL; skip++)
        if (strcmp(*skip, name) == 0)
            return NULL;
    return getenv(name);
}

/* mpii_config_load, the variables named in skip_seq (a sequence of str, or
 * NULL) read as unset. -1 with ValueError (naming the variable and its valid
 * values) on a bad value. */
static int load_config(PyObject *skip_seq, mpii_config *cfg)
{
    PyObject *fast = NULL;
    const char *skip[16] = {NULL};
    if (skip_seq != NULL && skip_seq != Py_None) {
        /* the names' UTF-8 lives as long as the items: fast is kept to the end */
        if ((fast = PySequence_Fast(skip_seq, "skip must be a sequence of names")) == NULL)
            return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
        for (Py_ssize_t i = 0; i < n && i < 15; i++) {
            if ((skip[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(fast, i))) == NULL) {
                Py_DECREF(fast);
                return -1;
            }
        }
    }
    char err[512];
    mpii_status st = mpii_config_load(cfg, env_getter, (void *)skip, err, sizeof err);
    Py_XDECREF(fast);
    if (st != MPII_OK) {
        PyErr_SetString(PyExc_ValueError, err);
        return -1;
    }
    return 0;
}

/* config(skip=()) -> dict of the MPIIMPORT_* settings (those named in skip
 * read as unset). */
static PyObject *core_config(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *skip_seq = NULL;
    if (!PyArg_ParseTuple(args, "|O", &skip_seq))
        return NULL;
    mpii_config cfg;
    if (load_config(skip_seq, &cfg) != 0)
        return NULL;
    return config_dict(&cfg);
}

static PyObject *config_dict(const mpii_config *c)
{
    const mpii_config cfg = *c;
    return Py_BuildValue("{s:O,s:i,s:s,s:s,s:s,s:d,s:i,s:s,s:s,s:O,s:s,s:O,s:O}", "disable", cfg.disable ? Py_True : Py_False,
                         "verbose", cfg.verbose, "transport", cfg.transport, "shared_prefixes",
                         cfg.shared_prefixes, "stage_dir", cfg.stage_dir, "timeout", cfg.timeout_s,
                         "ranks_per_node", cfg.ranks_per_node, "job_id", cfg.job_id,
                         "cache_dir", cfg.cache_dir, "record", cfg.record ? Py_True : Py_False,
                         "image", cfg.image, "trust_image", cfg.trust_image ? Py_True : Py_False,
                         "staged", cfg.staged ? Py_True : Py_False);
}

/* transports() -> tuple of compiled transport names, default first. */
static PyObject *core_transports(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    size_t n = mpii_transport_count();
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(mpii_transport_at(i)->name);
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, s);
    }
    return t;
}

/* ---- Context ---- */

static int Context_init(ContextObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"transport", "suffixes", "skip", NULL};
    const char *name = NULL;
    PyObject *suffixes = NULL, *skip = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "zO|O", kwlist, &name, &suffixes, &skip))
        return -1;
    if (self->ctx != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Context already initialised");
        return -1;
    }
    mpii_config cfg;
    char err[512];
    if (load_config(skip, &cfg) != 0)
        return -1;
    const mpii_transport_ops *ops = (name && name[0]) ? mpii_transport_lookup(name) : mpii_transport_at(0);
    if (ops == NULL) {
        char list[256] = "";
        size_t off = 0;
        for (size_t i = 0; i < mpii_transport_count(); i++) {
            int n = snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", mpii_transport_at(i)->name);
            if (n < 0 || (size_t)n >= sizeof list - off)
                break;
            off += (size_t)n;
        }
        PyErr_Format(PyExc_ValueError, "MPIIMPORT_TRANSPORT='%s' was not compiled into this build; compiled: %s",
                     name ? name : "", list);
        return -1;
    }
    /* Suffixes: a sequence of (suffix, loader kind 1|2|3), importlib's order. */
    PyObject *seq = PySequence_Fast(suffixes, "suffixes must be a sequence");
    if (seq == NULL)
        return -1;
    memset(&self->suffixes, 0, sizeof self->suffixes);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        const char *suffix;
        int kind;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "si", &suffix, &kind)) {
            Py_DECREF(seq);
            return -1;
        }
        if (mpii_suffix_table_add(&self->suffixes, suffix, (mpii_loader_kind)kind) != MPII_OK) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "bad suffix '%s'", suffix);
            return -1;
        }
    }
    Py_DECREF(seq);

    mpii_context *ctx = NULL;
    mpii_status st;
    err[0] = '\0';
    Py_BEGIN_ALLOW_THREADS
    st = mpii_context_create(&cfg, ops, &ctx, err, sizeof err);
    Py_END_ALLOW_THREADS
    if (st != MPII_OK) {
        PyErr_Format(self->error, "transport '%s' failed to start: %s", ops->name,
                     err[0] ? err : mpii_strerror(st));
        return -1;
    }
    self->ctx = ctx;
    return 0;
}

static PyObject *Context_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args;
    (void)kw;
    ContextObject *self = (ContextObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    PyObject *module = PyType_GetModule(type);
    if (module == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    core_state *s = get_state(module);
    self->hold.fd = -1;
    self->error = Py_NewRef(s->Error);
    self->gap = Py_NewRef(s->Gap);
    self->timeout = Py_NewRef(s->Timeout);
    self->ended = Py_NewRef(s->Ended);
    return (PyObject *)self;
}

static void Context_dealloc(ContextObject *self)
{
    if (self->ctx != NULL) {
        mpii_context_destroy(self->ctx);
        self->ctx = NULL;
    }
    mpii_stage_hold_close(&self->hold);
    Py_XDECREF(self->error);
    Py_XDECREF(self->gap);
    Py_XDECREF(self->timeout);
    Py_XDECREF(self->ended);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

#define NEED_CTX(self)                                                           \
    do {                                                                         \
        if ((self)->ctx == NULL) {                                               \
            PyErr_SetString(PyExc_RuntimeError, "mpiimport context is closed");  \
            return NULL;                                                         \
        }                                                                        \
    } while (0)

/* Every method that reads or changes the context's state holds its lock
 * (taken with the GIL released: a thread that holds it may be waiting for the
 * GIL only after it let go of the lock) from the question until the answer is
 * a Python object; receive() takes it inside the core only to merge. */
static PyObject *locked_call(ContextObject *self, PyObject *args,
                             PyObject *(*method)(ContextObject *, PyObject *))
{
    NEED_CTX(self);
    mpii_context *ctx = self->ctx;
    Py_BEGIN_ALLOW_THREADS
    mpii_context_lock(ctx);
    Py_END_ALLOW_THREADS
    PyObject *result = method(self, args);
    mpii_context_unlock(ctx);
    return result;
}

#define LOCKED_METHOD(name)                                                   \
    static PyObject *Context_##name(ContextObject *self, PyObject *args)      \
    {                                                                         \
        return locked_call(self, args, Context_##name##_locked);             \
    }

static PyObject *Context_get_rank(ContextObject *self, void *c)
{
    (void)c;
    NEED_CTX(self);
    return PyLong_FromLong(mpii_context_rank(self->ctx));
}

static PyObject *Context_get_size(ContextObject *self, void *c)
{
    (void)c;
    NEED_CTX(self);
    return PyLong_FromLong(mpii_context_size(self->ctx));
}

static PyObject *Context_get_stage_root(ContextObject *self, void *c)
{
    (void)c;
    NEED_CTX(self);
    return PyUnicode_DecodeFSDefault(mpii_context_stage_root(self->ctx));
}

/* A path argument as the file system has it: str (surrogateescape, as os.fsencode),
 * bytes or os.PathLike, into a buffer of the caller's (no reference kept). A
 * name that is not UTF-8 is a path like any other. */
typedef struct fs_arg {
    char s[MPII_PATH_MAX];
} fs_arg;

static int fs_path(PyObject *o, void *out)
{
    PyObject *b = NULL;
    if (!PyUnicode_FSConverter(o, &b))
        return 0;
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    if (n >= (Py_ssize_t)MPII_PATH_MAX) {
        PyErr_SetString(PyExc_ValueError, "path too long");
        Py_DECREF(b);
        return 0;
    }
    memcpy(((fs_arg *)out)->s, PyBytes_AS_STRING(b), (size_t)n + 1);
    Py_DECREF(b);
    return 1;
}

/* the same, None giving an empty string */
static int fs_path_or_none(PyObject *o, void *out)
{
    if (o == Py_None) {
        ((fs_arg *)out)->s[0] = '\0';
        return 1;
    }
    return fs_path(o, out);
}

/* find(dir, name) -> None | ("module"|"package", loader, origin, location) | ("namespace", None, None, location) */
static PyObject *Context_find_locked(ContextObject *self, PyObject *args)
{
    fs_arg dir_a;
    const char *dir = dir_a.s, *name;
    if (!PyArg_ParseTuple(args, "O&s", fs_path, &dir_a, &name))
        return NULL;
    NEED_CTX(self);
    mpii_find_result *r = PyMem_Malloc(sizeof *r);
    if (r == NULL)
        return PyErr_NoMemory();
    mpii_status st = mpii_context_find(self->ctx, &self->suffixes, dir, name, r);
    PyObject *out = NULL;
    if (st != MPII_OK)
        raise_status(self, st, name);
    else if (r->kind == MPII_FIND_NONE)
        out = Py_NewRef(Py_None);
    else if (r->kind == MPII_FIND_NAMESPACE)
        out = Py_BuildValue("(sOON)", "namespace", Py_None, Py_None, PyUnicode_DecodeFSDefault(r->location));
    else if (r->kind == MPII_FIND_PACKAGE)
        out = Py_BuildValue("(siNN)", "package", (int)r->loader, PyUnicode_DecodeFSDefault(r->origin),
                            PyUnicode_DecodeFSDefault(r->location));
    else
        out = Py_BuildValue("(siNO)", "module", (int)r->loader, PyUnicode_DecodeFSDefault(r->origin), Py_None);
    PyMem_Free(r);
    return out;
}
LOCKED_METHOD(find)

/* dir_state(dir) -> "dir" | "missing" | "notdir" */
static PyObject *Context_dir_state_locked(ContextObject *self, PyObject *args)
{
    fs_arg dir_a;
    const char *dir = dir_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &dir_a))
        return NULL;
    NEED_CTX(self);
    const mpii_entry *e = NULL;
    unsigned flags = 0;
    mpii_status st = mpii_context_listing(self->ctx, dir, &e, &flags);
    if (st != MPII_OK)
        return raise_status(self, st, dir);
    return PyUnicode_FromString(e ? "dir" : (flags & MPII_MISS_NOT_DIR) ? "notdir" : "missing");
}
LOCKED_METHOD(dir_state)

/* listdir(dir) -> list of names, or None when dir is not a directory */
static PyObject *Context_listdir_locked(ContextObject *self, PyObject *args)
{
    fs_arg dir_a;
    const char *dir = dir_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &dir_a))
        return NULL;
    NEED_CTX(self);
    const mpii_entry *e = NULL;
    mpii_status st = mpii_context_listing(self->ctx, dir, &e, NULL);
    if (st != MPII_OK)
        return raise_status(self, st, dir);
    if (e == NULL)
        Py_RETURN_NONE;
    size_t n = mpii_listing_count(e);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        const char *name;
        size_t len;
        mpii_dirent_type type;
        PyObject *s = NULL;
        if (mpii_listing_at(e, i, &name, &len, &type) == MPII_OK)
            s = PyUnicode_DecodeFSDefaultAndSize(name, (Py_ssize_t)len);
        if (s == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    return list;
}
LOCKED_METHOD(listdir)

/* An entry's bytes as a new bytes object: from memory, or from the node's
 * stage (MPII_FILE_STAGED). */
static PyObject *entry_bytes(ContextObject *self, const mpii_entry *e)
{
    size_t len = mpii_context_entry_size(e);
    if (len > (size_t)PY_SSIZE_T_MAX)
        return PyErr_NoMemory();
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (b == NULL)
        return NULL;
    mpii_status st = mpii_context_entry_read(self->ctx, e, (uint8_t *)PyBytes_AS_STRING(b), len);
    if (st != MPII_OK) {
        Py_DECREF(b);
        return raise_status(self, st, e->path);
    }
    return b;
}

static PyObject *entry_tuple(ContextObject *self, const mpii_entry *e)
{
    if (e == NULL)
        Py_RETURN_NONE;
    PyObject *data;
    if (e->kind == MPII_ENTRY_FILE && (e->flags & MPII_FILE_STAT_ONLY))
        data = Py_NewRef(Py_None);
    else
        data = entry_bytes(self, e);
    if (data == NULL)
        return NULL;
    return Py_BuildValue("(NLK)", data, (long long)e->mtime_ns, (unsigned long long)e->size);
}

/* file(path, want_bytes) -> None (missing) | (bytes|None, mtime_ns, size) */
static PyObject *Context_file_locked(ContextObject *self, PyObject *args)
{
    fs_arg path_a;
    const char *path = path_a.s;
    int want = 1;
    if (!PyArg_ParseTuple(args, "O&|p", fs_path, &path_a, &want))
        return NULL;
    NEED_CTX(self);
    const mpii_entry *e = NULL;
    mpii_status st = mpii_context_file(self->ctx, path, want, &e);
    if (st != MPII_OK)
        return raise_status(self, st, path);
    return entry_tuple(self, e);
}
LOCKED_METHOD(file)

/* known(path) -> (bytes, mtime_ns, size) from knowledge only, or None: never reads, never waits. */
static PyObject *Context_known_locked(ContextObject *self, PyObject *args)
{
    fs_arg path_a;
    const char *path = path_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &path_a))
        return NULL;
    NEED_CTX(self);
    return entry_tuple(self, mpii_context_lookup(self->ctx, path));
}
LOCKED_METHOD(known)

/* source_code(magic, source, pyc|None) -> (kind, data|None, mtime_ns, size) */
static PyObject *Context_source_code_locked(ContextObject *self, PyObject *args)
{
    fs_arg source_a, pyc_a;
    const char *magic, *source = source_a.s, *pyc = pyc_a.s;
    Py_ssize_t magic_len;
    if (!PyArg_ParseTuple(args, "y#O&O&", &magic, &magic_len, fs_path, &source_a, fs_path_or_none, &pyc_a))
        return NULL;
    NEED_CTX(self);
    if (magic_len != 4) {
        PyErr_SetString(PyExc_ValueError, "magic must be 4 bytes");
        return NULL;
    }
    mpii_code_kind kind;
    const mpii_entry *src = NULL, *e = NULL;
    mpii_status st = mpii_context_source_code(self->ctx, (const uint8_t *)magic, source,
                                              pyc[0] != '\0' ? pyc : NULL, &kind, &src, &e);
    if (st == MPII_ERR_NOTFOUND)
        Py_RETURN_NONE;
    if (st != MPII_OK)
        return raise_status(self, st, source);
    PyObject *data = e ? entry_bytes(self, e) : Py_NewRef(Py_None);
    if (data == NULL)
        return NULL;
    return Py_BuildValue("(iNLK)", (int)kind, data, (long long)src->mtime_ns, (unsigned long long)src->size);
}
LOCKED_METHOD(source_code)

static PyObject *Context_add_code_locked(ContextObject *self, PyObject *args)
{
    fs_arg source_a;
    const char *source = source_a.s, *code;
    Py_ssize_t len;
    long long mtime;
    unsigned long long size;
    if (!PyArg_ParseTuple(args, "O&y#LK", fs_path, &source_a, &code, &len, &mtime, &size))
        return NULL;
    NEED_CTX(self);
    mpii_status st = mpii_context_add_code(self->ctx, source, code, (size_t)len, mtime, size);
    if (st != MPII_OK)
        return raise_status(self, st, source);
    Py_RETURN_NONE;
}
LOCKED_METHOD(add_code)

static PyObject *Context_flush_locked(ContextObject *self, PyObject *args)
{
    const char *label = NULL;
    int always = 0;
    if (!PyArg_ParseTuple(args, "|zp", &label, &always))
        return NULL;
    NEED_CTX(self);
    mpii_status st;
    Py_BEGIN_ALLOW_THREADS
    st = always ? mpii_context_flush_always(self->ctx, label) : mpii_context_flush(self->ctx, label);
    Py_END_ALLOW_THREADS
    if (st != MPII_OK)
        return raise_status(self, st, "broadcast");
    Py_RETURN_NONE;
}
LOCKED_METHOD(flush)

/* receive(timeout) -> label of the message received */
static PyObject *Context_receive(ContextObject *self, PyObject *args)
{
    double timeout;
    if (!PyArg_ParseTuple(args, "d", &timeout))
        return NULL;
    NEED_CTX(self);
    char label[MPII_IMAGE_LABEL_MAX + 1];
    mpii_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mpii_context_receive(self->ctx, timeout, label, sizeof label);
    Py_END_ALLOW_THREADS
    if (st != MPII_OK)
        return raise_status(self, st, "receive");
    return PyUnicode_DecodeUTF8(label, (Py_ssize_t)strlen(label), "replace");
}

/* extension(path): the module's bytes and its $ORIGIN libraries are known. */
static PyObject *Context_extension_locked(ContextObject *self, PyObject *args)
{
    fs_arg path_a;
    const char *path = path_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &path_a))
        return NULL;
    NEED_CTX(self);
    mpii_status st = mpii_context_extension(self->ctx, path);
    if (st == MPII_ERR_NOTFOUND)
        Py_RETURN_FALSE;
    if (st != MPII_OK)
        return raise_status(self, st, path);
    Py_RETURN_TRUE;
}
LOCKED_METHOD(extension)

static PyObject *Context_stage_locked(ContextObject *self, PyObject *args)
{
    fs_arg path_a;
    const char *path = path_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &path_a))
        return NULL;
    NEED_CTX(self);
    char staged[MPII_PATH_MAX];
    mpii_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mpii_context_stage(self->ctx, path, staged, sizeof staged);
    Py_END_ALLOW_THREADS
    int err = mpii_context_stage_errno(self->ctx);
    if (st != MPII_OK && err != 0) {
        PyErr_Format(self->error, "cannot make the stage directory %s: %s",
                     mpii_context_stage_root(self->ctx), strerror(err));
        return NULL;
    }
    if (st != MPII_OK)
        return raise_status(self, st, path);
    return PyUnicode_DecodeFSDefault(staged);
}
LOCKED_METHOD(stage)

/* use_staged(image): serve from this node's staged image (a one-process
 * context); its root, or None when the image is not staged here. Error: a
 * stage that is there but not whole and valid (refused). */
static PyObject *Context_use_staged_locked(ContextObject *self, PyObject *args)
{
    fs_arg image_a;
    const char *image = image_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &image_a))
        return NULL;
    NEED_CTX(self);
    mpii_config cfg;
    if (load_config(NULL, &cfg) != 0)
        return NULL;
    char root[MPII_PATH_MAX];
    mpii_image *index = NULL;
    if (self->hold.fd >= 0) {
        PyErr_SetString(PyExc_ValueError, "this context serves from a staged image already");
        return NULL;
    }
    mpii_status st = mpii_stage_image_load(cfg.stage_dir, image, root, sizeof root, &self->hold, &index);
    if (st == MPII_ERR_NOTFOUND)
        Py_RETURN_NONE;
    if (st == MPII_OK) {
        /* every staged file is read through the held root */
        st = mpii_context_use_staged(self->ctx, self->hold.path, index);
        mpii_image_destroy(index);
    }
    if (st != MPII_OK) {
        mpii_stage_hold_close(&self->hold);
        PyErr_Format(self->error, "the stage of %s in %s: %s", image, cfg.stage_dir, mpii_strerror(st));
        return NULL;
    }
    return PyUnicode_DecodeFSDefault(root);
}
LOCKED_METHOD(use_staged)

static PyObject *Context_freeze_locked(ContextObject *self, PyObject *unused)
{
    (void)unused;
    NEED_CTX(self);
    mpii_context_freeze(self->ctx);
    Py_RETURN_NONE;
}
LOCKED_METHOD(freeze)

static PyObject *Context_get_frozen(ContextObject *self, void *c)
{
    (void)c;
    NEED_CTX(self);
    return PyBool_FromLong(mpii_context_frozen(self->ctx));
}

/* The interpreter a packed image's compiled code is for: the "[...]" that
 * ends its label ("packed image of app.py [cpython-311 a70d0d0a]"), or NULL
 * (a recorded list, a prefix image: no compiled code). */
static const char *label_interpreter(char *label)
{
    size_t n = strnlen(label, MPII_IMAGE_LABEL_MAX);
    if (n < 3 || label[n - 1] != ']')
        return NULL;
    char *open = strrchr(label, '[');
    if (open == NULL || open == label || open[-1] != ' ')
        return NULL;
    label[n - 1] = '\0';
    return open + 1;
}

/* replay(path, trust, facts_only, interpreter) -> (reused, reread): a recorded
 * list or packed image. An image packed by another interpreter (its label's
 * "[cache-tag magic]" differs from interpreter) is refused before anything
 * of it is taken in. */
static PyObject *Context_replay_locked(ContextObject *self, PyObject *args)
{
    fs_arg path_a;
    const char *path = path_a.s, *interpreter = NULL;
    int trust = 0, facts_only = 0;
    if (!PyArg_ParseTuple(args, "O&|ppz", fs_path, &path_a, &trust, &facts_only, &interpreter))
        return NULL;
    NEED_CTX(self);
    unsigned flags = (trust ? MPII_REPLAY_TRUST : 0u) | (facts_only ? MPII_REPLAY_FACTS_ONLY : 0u);
    mpii_image *img = NULL;
    mpii_status st;
    uint64_t reused = 0, reread = 0;
    char label[MPII_IMAGE_LABEL_MAX + 1] = "";
    const char *packed_for = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = mpii_image_read_file(path, &img, label, sizeof label);
    if (st == MPII_OK && interpreter != NULL && (packed_for = label_interpreter(label)) != NULL &&
        strcmp(packed_for, interpreter) == 0)
        packed_for = NULL;
    if (st == MPII_OK && packed_for == NULL)
        st = mpii_context_replay(self->ctx, img, flags, &reused, &reread);
    Py_END_ALLOW_THREADS
    mpii_image_destroy(img);
    if (st == MPII_ERR_NOTFOUND)
        Py_RETURN_NONE;
    if (st != MPII_OK)
        return raise_status(self, st, path);
    if (packed_for != NULL) {
        PyErr_Format(self->error, "packed by another Python: %s, this one is %s", packed_for, interpreter);
        return NULL;
    }
    return Py_BuildValue("(KK)", (unsigned long long)reused, (unsigned long long)reread);
}
LOCKED_METHOD(replay)

/* save(path, with_data, label): the knowledge to a file, atomically. */
static PyObject *Context_save_locked(ContextObject *self, PyObject *args)
{
    fs_arg path_a;
    const char *path = path_a.s, *label = NULL;
    int with_data = 0;
    if (!PyArg_ParseTuple(args, "O&p|z", fs_path, &path_a, &with_data, &label))
        return NULL;
    NEED_CTX(self);
    mpii_image *img = NULL;
    mpii_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mpii_context_snapshot(self->ctx, with_data, &img);
    if (st == MPII_OK)
        st = mpii_image_write_file(img, path, label);
    Py_END_ALLOW_THREADS
    mpii_image_destroy(img);
    if (st != MPII_OK)
        return raise_status(self, st, path);
    Py_RETURN_NONE;
}
LOCKED_METHOD(save)

static PyObject *Context_sources_locked(ContextObject *self, PyObject *unused)
{
    (void)unused;
    NEED_CTX(self);
    const char **paths = NULL;
    size_t n = mpii_context_source_count(self->ctx, &paths);
    if (paths == NULL)
        return PyErr_NoMemory();
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *s = PyUnicode_DecodeFSDefault(paths[i]);
        if (s == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    free(paths);
    return list;
}
LOCKED_METHOD(sources)

static PyObject *Context_forget_locked(ContextObject *self, PyObject *args)
{
    fs_arg path_a;
    const char *path = path_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &path_a))
        return NULL;
    NEED_CTX(self);
    mpii_context_forget(self->ctx, path);
    Py_RETURN_NONE;
}
LOCKED_METHOD(forget)

static PyObject *Context_invalidate_locked(ContextObject *self, PyObject *unused)
{
    (void)unused;
    NEED_CTX(self);
    mpii_context_invalidate(self->ctx);
    Py_RETURN_NONE;
}
LOCKED_METHOD(invalidate)

static PyObject *Context_finish(ContextObject *self, PyObject *unused)
{
    (void)unused;
    NEED_CTX(self);
    mpii_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mpii_context_finish(self->ctx);
    Py_END_ALLOW_THREADS
    if (st != MPII_OK)
        return raise_status(self, st, "finish");
    Py_RETURN_NONE;
}

static PyObject *Context_close(ContextObject *self, PyObject *unused)
{
    (void)unused;
    if (self->ctx != NULL) {
        mpii_context *ctx = self->ctx;
        self->ctx = NULL;
        Py_BEGIN_ALLOW_THREADS
        mpii_context_destroy(ctx);
        Py_END_ALLOW_THREADS
    }
    mpii_stage_hold_close(&self->hold);
    Py_RETURN_NONE;
}

/* A fatal signal: this process stops using the node's stage (the node's
 * last live process removes it). Not collective. */
static PyObject *Context_leave_node_locked(ContextObject *self, PyObject *unused)
{
    (void)unused;
    mpii_status st = mpii_context_leave_node(self->ctx);
    if (st != MPII_OK)
        return raise_status(self, st, mpii_context_stage_root(self->ctx));
    Py_RETURN_NONE;
}
LOCKED_METHOD(leave_node)

/* A forked child's copy of the context: never used, never finalised (the
 * transport belongs to the parent); its memory goes with the child. */
static PyObject *Context_abandon(ContextObject *self, PyObject *unused)
{
    (void)unused;
    self->ctx = NULL;
    Py_RETURN_NONE;
}

/* count(name, n=1, seconds=0.0): adds to a counter the hook keeps (load, fallbacks, out_of_order, fs_calls). */
static PyObject *Context_count_locked(ContextObject *self, PyObject *args)
{
    const char *name;
    unsigned long long n = 1;
    double secs = 0.0;
    if (!PyArg_ParseTuple(args, "s|Kd", &name, &n, &secs))
        return NULL;
    NEED_CTX(self);
    mpii_stats *s = mpii_context_stats_mut(self->ctx);
    if (strcmp(name, "load") == 0) {
        s->load_count += n;
        s->load_s += secs;
    } else if (strcmp(name, "fallbacks") == 0) {
        s->fallbacks += n;
    } else if (strcmp(name, "out_of_order") == 0) {
        s->out_of_order += n;
    } else if (strcmp(name, "image_misses") == 0) {
        s->image_misses += n;
    } else if (strcmp(name, "fs_calls") == 0) {
        s->fs_calls += n;
    } else if (strcmp(name, "find") == 0) {
        s->find_s += secs;
    } else {
        PyErr_Format(PyExc_KeyError, "no counter '%s'", name);
        return NULL;
    }
    Py_RETURN_NONE;
}
LOCKED_METHOD(count)

/* The counters as a dict, with known_bytes (what the rank holds privately). */
static PyObject *stats_dict(const mpii_stats *s, uint64_t known_bytes)
{
    return Py_BuildValue(
        "{s:K,s:K,s:d,s:K,s:d,s:K,s:K,s:d,s:K,s:K,s:K,s:K,s:K,s:d,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
        "known_bytes", (unsigned long long)known_bytes,
        "find_count", (unsigned long long)s->find_count, "find_s", s->find_s,
        "read_count", (unsigned long long)s->read_count, "read_s", s->read_s,
        "read_bytes", (unsigned long long)s->read_bytes,
        "bcast_count", (unsigned long long)s->bcast_count, "bcast_s", s->bcast_s,
        "bcast_bytes", (unsigned long long)s->bcast_bytes,
        "received_bytes", (unsigned long long)s->received_bytes,
        "index_records", (unsigned long long)s->index_records,
        "index_bytes", (unsigned long long)s->index_bytes,
        "load_count", (unsigned long long)s->load_count, "load_s", s->load_s,
        "fs_calls", (unsigned long long)s->fs_calls, "fs_calls_saved", (unsigned long long)s->fs_calls_saved,
        "gaps", (unsigned long long)s->gaps, "fallbacks", (unsigned long long)s->fallbacks,
        "out_of_order", (unsigned long long)s->out_of_order,
        "image_misses", (unsigned long long)s->image_misses,
        "staged_files", (unsigned long long)s->staged_files,
        "staged_bytes", (unsigned long long)s->staged_bytes,
        "swept", (unsigned long long)s->swept);
}

static PyObject *Context_stats_locked(ContextObject *self, PyObject *unused)
{
    (void)unused;
    NEED_CTX(self);
    return stats_dict(mpii_context_stats(self->ctx), mpii_context_known_bytes(self->ctx));
}
LOCKED_METHOD(stats)

static PyMethodDef Context_methods[] = {
    {"find", (PyCFunction)Context_find, METH_VARARGS, "FileFinder's decision for (dir, name)."},
    {"listdir", (PyCFunction)Context_listdir, METH_VARARGS, "A directory's names, or None."},
    {"dir_state", (PyCFunction)Context_dir_state, METH_VARARGS, "'dir', 'missing' or 'notdir'."},
    {"file", (PyCFunction)Context_file, METH_VARARGS, "A file's (bytes, mtime_ns, size), or None."},
    {"known", (PyCFunction)Context_known, METH_VARARGS, "A file from knowledge only, or None."},
    {"source_code", (PyCFunction)Context_source_code, METH_VARARGS, "How to get a source module's code."},
    {"add_code", (PyCFunction)Context_add_code, METH_VARARGS, "Root: add compiled code."},
    {"flush", (PyCFunction)Context_flush, METH_VARARGS, "Root: broadcast the facts added since the last flush."},
    {"receive", (PyCFunction)Context_receive, METH_VARARGS, "Others: receive the next message."},
    {"extension", (PyCFunction)Context_extension, METH_VARARGS, "Make an extension module and its bundled libraries known."},
    {"stage", (PyCFunction)Context_stage, METH_VARARGS, "Write a known file to the node-local stage."},
    {"freeze", (PyCFunction)Context_freeze, METH_NOARGS, "No more messages either way."},
    {"use_staged", (PyCFunction)Context_use_staged, METH_VARARGS, "Serve from this node's staged image."},
    {"replay", (PyCFunction)Context_replay, METH_VARARGS, "Root: take in a recorded list or packed image file."},
    {"save", (PyCFunction)Context_save, METH_VARARGS, "Write the knowledge to a file atomically."},
    {"sources", (PyCFunction)Context_sources, METH_NOARGS, "Paths known by stat only (module sources)."},
    {"forget", (PyCFunction)Context_forget, METH_VARARGS, "Forget what is known of one file."},
    {"invalidate", (PyCFunction)Context_invalidate, METH_NOARGS, "Forget every fact."},
    {"finish", (PyCFunction)Context_finish, METH_NOARGS, "Collective: end the session, clean the stage."},
    {"close", (PyCFunction)Context_close, METH_NOARGS, "Free the context and its transport."},
    {"leave_node", (PyCFunction)Context_leave_node, METH_NOARGS, "Stop using this node's stage (a fatal signal)."},
    {"abandon", (PyCFunction)Context_abandon, METH_NOARGS, "Forked child: drop the parent's context untouched."},
    {"count", (PyCFunction)Context_count, METH_VARARGS, "Add to a counter."},
    {"stats", (PyCFunction)Context_stats, METH_NOARGS, "Counters as a dict."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Context_getset[] = {
    {"rank", (getter)Context_get_rank, NULL, "this rank", NULL},
    {"size", (getter)Context_get_size, NULL, "number of ranks", NULL},
    {"frozen", (getter)Context_get_frozen, NULL, "no more messages", NULL},
    {"stage_root", (getter)Context_get_stage_root, NULL, "this node's stage directory", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot Context_slots[] = {
    {Py_tp_new, Context_new},
    {Py_tp_init, Context_init},
    {Py_tp_dealloc, Context_dealloc},
    {Py_tp_methods, Context_methods},
    {Py_tp_getset, Context_getset},
    {Py_tp_doc, "Context(transport, suffixes): a collective import session."},
    {0, NULL}};

static PyType_Spec Context_spec = {"mpiimport._core.Context", sizeof(ContextObject), 0,
                                   Py_TPFLAGS_DEFAULT, Context_slots};

/* read_image(path) -> (label, [(kind, flags, path, data_len, size, mtime_ns), ...]) */
static PyObject *core_zero_stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    const mpii_stats zero = {0};
    return stats_dict(&zero, 0);
}

static PyObject *core_read_image(PyObject *module, PyObject *args)
{
    core_state *state = get_state(module);
    fs_arg path_a;
    const char *path = path_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &path_a))
        return NULL;
    mpii_image *img = NULL;
    char label[MPII_IMAGE_LABEL_MAX + 1] = "";
    mpii_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mpii_image_read_file(path, &img, label, sizeof label);
    Py_END_ALLOW_THREADS
    if (st != MPII_OK) {
        PyErr_Format(state->Error, "%s: %s", path, mpii_strerror(st));
        return NULL;
    }
    static const char *const kinds[] = {"?", "file", "listing", "miss", "code"};
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < mpii_image_count(img); i++) {
        const mpii_entry *e = mpii_image_entry_at(img, i);
        PyObject *t = Py_BuildValue("(sINnKL)", kinds[e->kind <= 4 ? e->kind : 0], (unsigned)e->flags,
                                    PyUnicode_DecodeFSDefaultAndSize(e->path, (Py_ssize_t)e->path_len),
                                    (Py_ssize_t)e->data_len, (unsigned long long)e->size, (long long)e->mtime_ns);
        if (t == NULL || PyList_Append(list, t) < 0)
            Py_CLEAR(list);
        Py_XDECREF(t);
    }
    mpii_image_destroy(img);
    if (list == NULL)
        return NULL;
    return Py_BuildValue("(sN)", label, list);
}

/* stage_image(image) -> (already, files, bytes, root): stages a packed image
 * on this node for later job steps (MPIIMPORT_STAGE_DIR).
 * unstage_image(image) -> (removed, root). */
static PyObject *stage_or_unstage(PyObject *module, PyObject *args, int stage)
{
    core_state *state = get_state(module);
    fs_arg image_a;
    const char *image = image_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &image_a))
        return NULL;
    mpii_config cfg;
    if (load_config(NULL, &cfg) != 0)
        return NULL;
    int flag = 0;
    uint64_t files = 0, bytes = 0;
    char root[MPII_PATH_MAX];
    mpii_status st = mpii_stage_image_root(cfg.stage_dir, image, root, sizeof root);
    if (st == MPII_OK) {
        Py_BEGIN_ALLOW_THREADS
        st = stage ? mpii_stage_image(cfg.stage_dir, image, cfg.timeout_s, &flag, &files, &bytes)
                   : mpii_unstage_image(cfg.stage_dir, image, &flag);
        Py_END_ALLOW_THREADS
    }
    if (st != MPII_OK) {
        PyErr_Format(state->Error, "%s: %s", image, mpii_strerror(st));
        return NULL;
    }
    if (!stage)
        return Py_BuildValue("(ON)", flag ? Py_True : Py_False, PyUnicode_DecodeFSDefault(root));
    return Py_BuildValue("(OKKN)", flag ? Py_True : Py_False, (unsigned long long)files,
                         (unsigned long long)bytes, PyUnicode_DecodeFSDefault(root));
}

static PyObject *core_stage_image(PyObject *module, PyObject *args)
{
    return stage_or_unstage(module, args, 1);
}

static PyObject *core_unstage_image(PyObject *module, PyObject *args)
{
    return stage_or_unstage(module, args, 0);
}

struct mapped_probe {
    const char *path;
    int found;
};

static int mapped_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct mapped_probe *p = arg;
    if (info->dlpi_name != NULL && strcmp(info->dlpi_name, p->path) == 0) {
        p->found = 1;
        return 1;
    }
    return 0;
}

/* mapped(path) -> bool: a shared object of that name is loaded in this
 * process already (the dynamic loader's own list: no file-system call). An
 * extension module loaded as another library's dependency is then reused
 * from its original path, as a plain import does, never mapped a second
 * time from the stage. */
static PyObject *core_mapped(PyObject *module, PyObject *args)
{
    (void)module;
    fs_arg path_a;
    const char *path = path_a.s;
    if (!PyArg_ParseTuple(args, "O&", fs_path, &path_a))
        return NULL;
    struct mapped_probe p = {path, 0};
    (void)dl_iterate_phdr(mapped_cb, &p); /* returns the callback's last value */
    return PyBool_FromLong(p.found);
}

static PyMethodDef core_methods[] = {
    {"mapped", core_mapped, METH_VARARGS, "Is a shared object of this path loaded in this process?"},
    {"stage_image", core_stage_image, METH_VARARGS, "Stage a packed image on this node for later job steps."},
    {"unstage_image", core_unstage_image, METH_VARARGS, "Remove this node's stage of a packed image."},
    {"read_image", core_read_image, METH_VARARGS, "The entries of an image file."},
    {"config", core_config, METH_VARARGS, "The MPIIMPORT_* settings, parsed (config(skip=()))."},
    {"zero_stats", core_zero_stats, METH_NOARGS, "The counters of a session that did nothing."},
    {"transports", core_transports, METH_NOARGS, "Names of the compiled transports, default first."},
    {NULL, NULL, 0, NULL}};

static int core_exec(PyObject *m)
{
    core_state *s = get_state(m);
    s->Error = PyErr_NewException("mpiimport._core.Error", PyExc_RuntimeError, NULL);
    if (s->Error == NULL || PyModule_AddObjectRef(m, "Error", s->Error) < 0)
        return -1;
    s->Gap = PyErr_NewException("mpiimport._core.Gap", s->Error, NULL);
    if (s->Gap == NULL || PyModule_AddObjectRef(m, "Gap", s->Gap) < 0)
        return -1;
    s->Timeout = PyErr_NewException("mpiimport._core.Timeout", s->Error, NULL);
    if (s->Timeout == NULL || PyModule_AddObjectRef(m, "Timeout", s->Timeout) < 0)
        return -1;
    s->Ended = PyErr_NewException("mpiimport._core.Ended", s->Error, NULL);
    if (s->Ended == NULL || PyModule_AddObjectRef(m, "Ended", s->Ended) < 0)
        return -1;
    PyObject *type = PyType_FromModuleAndSpec(m, &Context_spec, NULL);
    if (type == NULL || PyModule_AddObjectRef(m, "Context", type) < 0) {
        Py_XDECREF(type);
        return -1;
    }
    Py_DECREF(type);
    if (PyModule_AddIntConstant(m, "FILE_STAT_ONLY", MPII_FILE_STAT_ONLY) < 0 ||
        PyModule_AddIntConstant(m, "FILE_DATA_OMITTED", MPII_FILE_DATA_OMITTED) < 0 ||
        PyModule_AddIntConstant(m, "LOADER_EXTENSION", MPII_LOADER_EXTENSION) < 0 ||
        PyModule_AddIntConstant(m, "LOADER_SOURCE", MPII_LOADER_SOURCE) < 0 ||
        PyModule_AddIntConstant(m, "LOADER_BYTECODE", MPII_LOADER_BYTECODE) < 0 ||
        PyModule_AddIntConstant(m, "CODE_PYC", MPII_CODE_PYC) < 0 ||
        PyModule_AddIntConstant(m, "CODE_COMPILED", MPII_CODE_COMPILED) < 0 ||
        PyModule_AddIntConstant(m, "CODE_COMPILE_NEEDED", MPII_CODE_COMPILE_NEEDED) < 0)
        return -1;
    return 0;
}

static int core_traverse(PyObject *m, visitproc visit, void *arg)
{
    core_state *s = get_state(m);
    Py_VISIT(s->Error);
    Py_VISIT(s->Gap);
    Py_VISIT(s->Timeout);
    Py_VISIT(s->Ended);
    return 0;
}

static int core_clear(PyObject *m)
{
    core_state *s = get_state(m);
    Py_CLEAR(s->Error);
    Py_CLEAR(s->Gap);
    Py_CLEAR(s->Timeout);
    Py_CLEAR(s->Ended);
    return 0;
}

static PyModuleDef_Slot core_slots[] = {{Py_mod_exec, core_exec}, {0, NULL}};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "mpiimport._core", "The C core of mpiimport.", sizeof(core_state),
    core_methods, core_slots, core_traverse, core_clear, NULL};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&core_module); }
