/* config.c — MPIIMPORT_* environment variables into an mpii_config, with a
 * message naming the valid values when one is wrong. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mpiimport/config.h"

static mpii_status fail(char *err, size_t cap, const char *fmt, ...)
{
    if (err != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, cap, fmt, ap);
        va_end(ap);
        if (n < 0)
            err[0] = '\0';
    }
    return MPII_ERR_INVALID;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "yes", "true", "on"}, *const no[] = {"0", "no", "false", "off", ""};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (strcasecmp(v, yes[i]) == 0)
            return *out = 1, 1;
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (strcasecmp(v, no[i]) == 0)
            return *out = 0, 1;
    return 0;
}

static int parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
        return 0;
    *out = x;
    return 1;
}

static int copy_str(char *dst, size_t cap, const char *src)
{
    int n = snprintf(dst, cap, "%s", src);
    return n >= 0 && (size_t)n < cap;
}

mpii_status mpii_config_load(mpii_config *cfg, mpii_getenv_fn getenv_fn, void *arg, char *err,
                             size_t err_cap)
{
    if (cfg == NULL || getenv_fn == NULL)
        return MPII_ERR_INVALID;
    memset(cfg, 0, sizeof *cfg);
    cfg->timeout_s = 30.0;
    if (!copy_str(cfg->stage_dir, sizeof cfg->stage_dir, "/dev/shm"))
        return MPII_ERR_TOOLONG;
    if (err != NULL && err_cap > 0)
        err[0] = '\0';

    const char *v;
    if ((v = getenv_fn(arg, "MPIIMPORT_DISABLE")) != NULL && !parse_bool(v, &cfg->disable))
        return fail(err, err_cap, "MPIIMPORT_DISABLE='%s': valid values are 1, 0, yes, no, true, false, on, off", v);
    long x;
    if ((v = getenv_fn(arg, "MPIIMPORT_VERBOSE")) != NULL && v[0] != '\0') {
        if (!parse_long(v, 0, 2, &x))
            return fail(err, err_cap, "MPIIMPORT_VERBOSE='%s': valid values are 0, 1 and 2", v);
        cfg->verbose = (int)x;
    }
    if ((v = getenv_fn(arg, "MPIIMPORT_TRANSPORT")) != NULL && v[0] != '\0') {
        if (!copy_str(cfg->transport, sizeof cfg->transport, v))
            return fail(err, err_cap, "MPIIMPORT_TRANSPORT: name too long");
    }
    if ((v = getenv_fn(arg, "MPIIMPORT_SHARED_PREFIXES")) != NULL && v[0] != '\0') {
        if (!copy_str(cfg->shared_prefixes, sizeof cfg->shared_prefixes, v))
            return fail(err, err_cap, "MPIIMPORT_SHARED_PREFIXES: longer than %d bytes", MPII_CONFIG_STR_MAX - 1);
        for (const char *p = v; *p != '\0';) {
            const char *end = strchr(p, ':');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (len > 0 && p[0] != '/')
                return fail(err, err_cap,
                            "MPIIMPORT_SHARED_PREFIXES='%s': every entry must be an absolute directory (':'-separated)", v);
            p += len + (end ? 1 : 0);
        }
    }
    if ((v = getenv_fn(arg, "MPIIMPORT_STAGE_DIR")) != NULL && v[0] != '\0') {
        if (v[0] != '/')
            return fail(err, err_cap, "MPIIMPORT_STAGE_DIR='%s': must be an absolute path to node-local storage (default /dev/shm)", v);
        if (!copy_str(cfg->stage_dir, sizeof cfg->stage_dir, v))
            return fail(err, err_cap, "MPIIMPORT_STAGE_DIR: path too long");
    }
    if ((v = getenv_fn(arg, "MPIIMPORT_TIMEOUT")) != NULL && v[0] != '\0') {
        char *end;
        errno = 0;
        double t = strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || !isfinite(t) || t <= 0 || t > 1e6)
            return fail(err, err_cap, "MPIIMPORT_TIMEOUT='%s': valid values are seconds > 0 (default 30)", v);
        cfg->timeout_s = t;
    }
    if ((v = getenv_fn(arg, "MPIIMPORT_RANKS_PER_NODE")) != NULL && v[0] != '\0') {
        if (!parse_long(v, 0, 1 << 20, &x))
            return fail(err, err_cap, "MPIIMPORT_RANKS_PER_NODE='%s': valid values are 0 (real nodes) or a positive integer", v);
        cfg->ranks_per_node = (int)x;
    }
    cfg->record = 1;
    if ((v = getenv_fn(arg, "MPIIMPORT_RECORD")) != NULL && !parse_bool(v, &cfg->record))
        return fail(err, err_cap, "MPIIMPORT_RECORD='%s': valid values are 1, 0, yes, no, true, false, on, off", v);
    if ((v = getenv_fn(arg, "MPIIMPORT_TRUST_IMAGE")) != NULL && !parse_bool(v, &cfg->trust_image))
        return fail(err, err_cap, "MPIIMPORT_TRUST_IMAGE='%s': valid values are 1, 0, yes, no, true, false, on, off", v);
    if ((v = getenv_fn(arg, "MPIIMPORT_STAGED")) != NULL && !parse_bool(v, &cfg->staged))
        return fail(err, err_cap, "MPIIMPORT_STAGED='%s': valid values are 1, 0, yes, no, true, false, on, off", v);
    if ((v = getenv_fn(arg, "MPIIMPORT_CACHE_DIR")) != NULL && v[0] != '\0') {
        if (v[0] != '/')
            return fail(err, err_cap, "MPIIMPORT_CACHE_DIR='%s': must be an absolute directory", v);
        if (!copy_str(cfg->cache_dir, sizeof cfg->cache_dir, v))
            return fail(err, err_cap, "MPIIMPORT_CACHE_DIR: path too long");
    } else {
        const char *xdg = getenv_fn(arg, "XDG_CACHE_HOME"), *home = getenv_fn(arg, "HOME");
        int n = -1;
        if (xdg != NULL && xdg[0] == '/')
            n = snprintf(cfg->cache_dir, sizeof cfg->cache_dir, "%s/mpiimport", xdg);
        else if (home != NULL && home[0] == '/')
            n = snprintf(cfg->cache_dir, sizeof cfg->cache_dir, "%s/.cache/mpiimport", home);
        if (n < 0 || (size_t)n >= sizeof cfg->cache_dir)
            cfg->cache_dir[0] = '\0'; /* nowhere to record: recording is off */
    }
    if ((v = getenv_fn(arg, "MPIIMPORT_IMAGE")) != NULL && v[0] != '\0') {
        if (!copy_str(cfg->image, sizeof cfg->image, v))
            return fail(err, err_cap, "MPIIMPORT_IMAGE: path too long");
    }
    static const char *const job_vars[] = {"SLURM_JOB_ID", "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid"};
    const char *job = "nojob";
    for (size_t i = 0; i < sizeof job_vars / sizeof *job_vars; i++)
        if ((v = getenv_fn(arg, job_vars[i])) != NULL && v[0] != '\0') {
            job = v;
            break;
        }
    size_t n = 0;
    for (const char *p = job; *p != '\0' && n + 1 < sizeof cfg->job_id; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        cfg->job_id[n++] = ok ? c : '_';
    }
    cfg->job_id[n] = '\0';
    return MPII_OK;
}
