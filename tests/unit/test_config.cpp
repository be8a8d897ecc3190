// test_config.cpp — unit tests of mpii_config_load (core/src/config.c),
// driven by a table-backed getenv callback rather than the real environment:
// defaults, each MPIIMPORT_* variable, each bad value (MPII_ERR_INVALID with a
// message naming the variable and what is valid), and the job id's source
// order, sanitising and truncation.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>
#include <string>

#include "mpiimport/config.h"
#include "mpiimport/status.h"

namespace {

struct Env {
    std::map<std::string, std::string> vars;
    std::set<std::string> asked;
};

const char *table_getenv(void *arg, const char *name)
{
    Env *env = static_cast<Env *>(arg);
    env->asked.insert(name);
    auto it = env->vars.find(name);
    return it == env->vars.end() ? nullptr : it->second.c_str();
}

struct Loaded {
    mpii_status status;
    mpii_config cfg;
    std::string err;
};

Loaded load(Env &env)
{
    Loaded out;
    std::memset(&out.cfg, 0xA5, sizeof out.cfg); // defaults must overwrite everything
    char err[512];
    std::memset(err, 'Q', sizeof err);
    err[sizeof err - 1] = '\0';
    out.status = mpii_config_load(&out.cfg, table_getenv, &env, err, sizeof err);
    out.err = err;
    return out;
}

Loaded load(std::map<std::string, std::string> vars)
{
    Env env{std::move(vars), {}};
    return load(env);
}

} // namespace

TEST(Config, DefaultsWithEmptyEnvironment)
{
    Env env;
    Loaded l = load(env);
    ASSERT_EQ(l.status, MPII_OK);
    EXPECT_EQ(l.cfg.disable, 0);
    EXPECT_EQ(l.cfg.verbose, 0);
    EXPECT_STREQ(l.cfg.transport, "");
    EXPECT_STREQ(l.cfg.shared_prefixes, "");
    EXPECT_STREQ(l.cfg.stage_dir, "/dev/shm");
    EXPECT_DOUBLE_EQ(l.cfg.timeout_s, 30.0);
    EXPECT_EQ(l.cfg.ranks_per_node, 0);
    EXPECT_STREQ(l.cfg.job_id, "nojob");
    EXPECT_EQ(l.err, "");
    // It reads its variables through the callback, not the real environment.
    for (const char *v : {"MPIIMPORT_DISABLE", "MPIIMPORT_VERBOSE", "MPIIMPORT_TRANSPORT",
                          "MPIIMPORT_SHARED_PREFIXES", "MPIIMPORT_STAGE_DIR", "MPIIMPORT_TIMEOUT",
                          "MPIIMPORT_RANKS_PER_NODE", "SLURM_JOB_ID"})
        EXPECT_EQ(env.asked.count(v), 1u) << v << " was not looked up";
}

TEST(Config, EmptyValuesMeanDefaults)
{
    Loaded l = load({{"MPIIMPORT_DISABLE", ""},
                     {"MPIIMPORT_VERBOSE", ""},
                     {"MPIIMPORT_TRANSPORT", ""},
                     {"MPIIMPORT_SHARED_PREFIXES", ""},
                     {"MPIIMPORT_STAGE_DIR", ""},
                     {"MPIIMPORT_TIMEOUT", ""},
                     {"MPIIMPORT_RANKS_PER_NODE", ""},
                     {"SLURM_JOB_ID", ""}});
    ASSERT_EQ(l.status, MPII_OK) << l.err;
    EXPECT_EQ(l.cfg.disable, 0);
    EXPECT_EQ(l.cfg.verbose, 0);
    EXPECT_STREQ(l.cfg.transport, "");
    EXPECT_STREQ(l.cfg.stage_dir, "/dev/shm");
    EXPECT_DOUBLE_EQ(l.cfg.timeout_s, 30.0);
    EXPECT_EQ(l.cfg.ranks_per_node, 0);
    EXPECT_STREQ(l.cfg.job_id, "nojob");
}

TEST(Config, DisableAcceptsBooleanSpellings)
{
    const struct {
        const char *value;
        int disable;
    } cases[] = {{"1", 1},  {"yes", 1}, {"TRUE", 1},  {"On", 1},  {"true", 1},
                 {"0", 0},  {"no", 0},  {"False", 0}, {"OFF", 0}, {"", 0}};
    for (const auto &c : cases) {
        Loaded l = load({{"MPIIMPORT_DISABLE", c.value}});
        ASSERT_EQ(l.status, MPII_OK) << c.value << ": " << l.err;
        EXPECT_EQ(l.cfg.disable, c.disable) << '"' << c.value << '"';
    }
}

TEST(Config, EachVariableIsParsed)
{
    for (int v : {0, 1, 2}) {
        Loaded l = load({{"MPIIMPORT_VERBOSE", std::to_string(v)}});
        ASSERT_EQ(l.status, MPII_OK) << l.err;
        EXPECT_EQ(l.cfg.verbose, v);
    }
    Loaded l = load({{"MPIIMPORT_TRANSPORT", "mpi"},
                     {"MPIIMPORT_SHARED_PREFIXES", "/usr/lib/python3:/opt/conda/lib"},
                     {"MPIIMPORT_STAGE_DIR", "/tmp/stage here"},
                     {"MPIIMPORT_TIMEOUT", "2.5"},
                     {"MPIIMPORT_RANKS_PER_NODE", "4"},
                     {"MPIIMPORT_VERBOSE", "2"},
                     {"MPIIMPORT_DISABLE", "1"}});
    ASSERT_EQ(l.status, MPII_OK) << l.err;
    EXPECT_STREQ(l.cfg.transport, "mpi");
    EXPECT_STREQ(l.cfg.shared_prefixes, "/usr/lib/python3:/opt/conda/lib");
    EXPECT_STREQ(l.cfg.stage_dir, "/tmp/stage here");
    EXPECT_DOUBLE_EQ(l.cfg.timeout_s, 2.5);
    EXPECT_EQ(l.cfg.ranks_per_node, 4);
    EXPECT_EQ(l.cfg.verbose, 2);
    EXPECT_EQ(l.cfg.disable, 1);
    EXPECT_EQ(l.err, "");
}

TEST(Config, TimeoutAndRanksPerNodeForms)
{
    EXPECT_DOUBLE_EQ(load({{"MPIIMPORT_TIMEOUT", "1e3"}}).cfg.timeout_s, 1000.0);
    EXPECT_DOUBLE_EQ(load({{"MPIIMPORT_TIMEOUT", "0.001"}}).cfg.timeout_s, 0.001);
    EXPECT_DOUBLE_EQ(load({{"MPIIMPORT_TIMEOUT", "600"}}).cfg.timeout_s, 600.0);
    EXPECT_EQ(load({{"MPIIMPORT_RANKS_PER_NODE", "0"}}).cfg.ranks_per_node, 0);
    EXPECT_EQ(load({{"MPIIMPORT_RANKS_PER_NODE", "128"}}).cfg.ranks_per_node, 128);
    Loaded one = load({{"MPIIMPORT_SHARED_PREFIXES", "/single"}});
    ASSERT_EQ(one.status, MPII_OK);
    EXPECT_STREQ(one.cfg.shared_prefixes, "/single");
}

TEST(Config, BadValuesAreInvalidWithAHelpfulMessage)
{
    const struct {
        const char *var;
        const char *value;
        const char *hint; // what the message must say is valid
    } cases[] = {
        {"MPIIMPORT_VERBOSE", "7", "0, 1 and 2"},
        {"MPIIMPORT_VERBOSE", "-1", "0, 1 and 2"},
        {"MPIIMPORT_VERBOSE", "1.5", "0, 1 and 2"},
        {"MPIIMPORT_VERBOSE", "high", "0, 1 and 2"},
        {"MPIIMPORT_TIMEOUT", "-1", "seconds > 0"},
        {"MPIIMPORT_TIMEOUT", "abc", "seconds > 0"},
        {"MPIIMPORT_TIMEOUT", "0", "seconds > 0"},
        {"MPIIMPORT_TIMEOUT", "30s", "seconds > 0"},
        {"MPIIMPORT_TIMEOUT", "inf", "seconds > 0"},
        {"MPIIMPORT_TIMEOUT", "nan", "seconds > 0"},
        {"MPIIMPORT_DISABLE", "maybe", "1, 0, yes, no, true, false, on, off"},
        {"MPIIMPORT_DISABLE", "2", "1, 0, yes, no, true, false, on, off"},
        {"MPIIMPORT_SHARED_PREFIXES", "relative/dir", "absolute"},
        {"MPIIMPORT_SHARED_PREFIXES", "/ok:relative", "absolute"},
        {"MPIIMPORT_STAGE_DIR", "rel", "absolute"},
        {"MPIIMPORT_STAGE_DIR", "./shm", "absolute"},
        {"MPIIMPORT_RANKS_PER_NODE", "-2", "positive integer"},
        {"MPIIMPORT_RANKS_PER_NODE", "two", "positive integer"},
        {"MPIIMPORT_RANKS_PER_NODE", "4x", "positive integer"},
    };
    for (const auto &c : cases) {
        Loaded l = load({{c.var, c.value}});
        EXPECT_EQ(l.status, MPII_ERR_INVALID) << c.var << "=" << c.value;
        EXPECT_NE(l.err.find(c.var), std::string::npos) << "message does not name the variable: " << l.err;
        EXPECT_NE(l.err.find(std::string("'") + c.value + "'"), std::string::npos)
            << "message does not quote the value: " << l.err;
        EXPECT_NE(l.err.find(c.hint), std::string::npos) << "message does not say what is valid: " << l.err;
    }
}

TEST(Config, ValidMessagesListEveryValidValue)
{
    const std::string verbose = load({{"MPIIMPORT_VERBOSE", "7"}}).err;
    for (const char *v : {"0", "1", "2"})
        EXPECT_NE(verbose.find(v), std::string::npos) << verbose;
    const std::string disable = load({{"MPIIMPORT_DISABLE", "maybe"}}).err;
    for (const char *v : {"1", "0", "yes", "no", "true", "false", "on", "off"})
        EXPECT_NE(disable.find(v), std::string::npos) << disable;
    EXPECT_NE(load({{"MPIIMPORT_TIMEOUT", "-1"}}).err.find("default 30"), std::string::npos);
}

TEST(Config, ErrorWithoutOrWithSmallMessageBuffer)
{
    mpii_config cfg;
    Env env{{{"MPIIMPORT_VERBOSE", "7"}}, {}};
    EXPECT_EQ(mpii_config_load(&cfg, table_getenv, &env, nullptr, 0), MPII_ERR_INVALID);
    char small[10];
    std::memset(small, 'Q', sizeof small);
    EXPECT_EQ(mpii_config_load(&cfg, table_getenv, &env, small, sizeof small), MPII_ERR_INVALID);
    EXPECT_EQ(std::strlen(small), sizeof small - 1);
    EXPECT_EQ(std::string(small), "MPIIMPORT");
    char none[1] = {'Q'};
    EXPECT_EQ(mpii_config_load(&cfg, table_getenv, &env, none, 0), MPII_ERR_INVALID);
    EXPECT_EQ(none[0], 'Q');
}

TEST(Config, NullArgumentsAreInvalid)
{
    mpii_config cfg;
    Env env;
    EXPECT_EQ(mpii_config_load(nullptr, table_getenv, &env, nullptr, 0), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_config_load(&cfg, nullptr, &env, nullptr, 0), MPII_ERR_INVALID);
}

TEST(Config, OverlongStringsAreRejected)
{
    const std::string long_dir = "/" + std::string(MPII_CONFIG_STR_MAX, 'd');
    Loaded stage = load({{"MPIIMPORT_STAGE_DIR", long_dir}});
    EXPECT_EQ(stage.status, MPII_ERR_INVALID);
    EXPECT_NE(stage.err.find("MPIIMPORT_STAGE_DIR"), std::string::npos) << stage.err;
    Loaded prefixes = load({{"MPIIMPORT_SHARED_PREFIXES", long_dir}});
    EXPECT_EQ(prefixes.status, MPII_ERR_INVALID);
    EXPECT_NE(prefixes.err.find("MPIIMPORT_SHARED_PREFIXES"), std::string::npos) << prefixes.err;
    Loaded transport = load({{"MPIIMPORT_TRANSPORT", std::string(100, 't')}});
    EXPECT_EQ(transport.status, MPII_ERR_INVALID);
    EXPECT_NE(transport.err.find("MPIIMPORT_TRANSPORT"), std::string::npos) << transport.err;
}

TEST(Config, JobIdIsSanitised)
{
    Loaded l = load({{"PMIX_NAMESPACE", "prterun-host-123@1"}});
    ASSERT_EQ(l.status, MPII_OK);
    EXPECT_STREQ(l.cfg.job_id, "prterun-host-123_1");

    l = load({{"SLURM_JOB_ID", "a/b c:d\\e*f..g_H-9\t\xc3\xa9"}});
    ASSERT_EQ(l.status, MPII_OK);
    EXPECT_STREQ(l.cfg.job_id, "a_b_c_d_e_f..g_H-9___");
    for (const char *p = l.cfg.job_id; *p; p++) {
        const char c = *p;
        EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-')
            << "character " << int(static_cast<unsigned char>(c));
    }
}

TEST(Config, JobIdSourcesInOrder)
{
    EXPECT_STREQ(load({{"SLURM_JOB_ID", "111"}, {"PMIX_NAMESPACE", "ns"}, {"OMPI_MCA_ess_base_jobid", "9"}})
                     .cfg.job_id,
                 "111");
    EXPECT_STREQ(load({{"PMIX_NAMESPACE", "ns"}, {"OMPI_MCA_ess_base_jobid", "9"}}).cfg.job_id, "ns");
    EXPECT_STREQ(load({{"OMPI_MCA_ess_base_jobid", "12345:0"}}).cfg.job_id, "12345_0");
    // An empty variable does not count.
    EXPECT_STREQ(load({{"SLURM_JOB_ID", ""}, {"PMIX_NAMESPACE", "ns"}}).cfg.job_id, "ns");
}

TEST(Config, LongJobIdIsTruncatedToFit)
{
    const std::string id(200, 'j');
    Loaded l = load({{"SLURM_JOB_ID", id}});
    ASSERT_EQ(l.status, MPII_OK);
    EXPECT_EQ(std::string(l.cfg.job_id), id.substr(0, sizeof l.cfg.job_id - 1));
}

TEST(Config, ReloadStartsFromDefaults)
{
    mpii_config cfg;
    Env first{{{"MPIIMPORT_VERBOSE", "2"}, {"MPIIMPORT_TRANSPORT", "shm"}, {"SLURM_JOB_ID", "7"}}, {}};
    ASSERT_EQ(mpii_config_load(&cfg, table_getenv, &first, nullptr, 0), MPII_OK);
    EXPECT_EQ(cfg.verbose, 2);
    Env second;
    ASSERT_EQ(mpii_config_load(&cfg, table_getenv, &second, nullptr, 0), MPII_OK);
    EXPECT_EQ(cfg.verbose, 0);
    EXPECT_STREQ(cfg.transport, "");
    EXPECT_STREQ(cfg.job_id, "nojob");
}

namespace {

TEST(ConfigImages, CacheDirDefaultsAndOverrides)
{
    Loaded l = load(std::map<std::string, std::string>{});
    ASSERT_EQ(l.status, MPII_OK);
    EXPECT_STREQ(l.cfg.cache_dir, "");  // no HOME, no XDG_CACHE_HOME: nowhere to record
    EXPECT_EQ(l.cfg.record, 1);
    EXPECT_EQ(l.cfg.trust_image, 0);
    EXPECT_STREQ(l.cfg.image, "");
    l = load({{"HOME", "/home/u"}});
    EXPECT_STREQ(l.cfg.cache_dir, "/home/u/.cache/mpiimport");
    l = load({{"HOME", "/home/u"}, {"XDG_CACHE_HOME", "/scratch/c"}});
    EXPECT_STREQ(l.cfg.cache_dir, "/scratch/c/mpiimport");
    l = load({{"HOME", "/home/u"}, {"MPIIMPORT_CACHE_DIR", "/lustre/me/cache"}});
    EXPECT_STREQ(l.cfg.cache_dir, "/lustre/me/cache");
    l = load({{"MPIIMPORT_RECORD", "0"}, {"MPIIMPORT_TRUST_IMAGE", "yes"}, {"MPIIMPORT_IMAGE", "app.mpii"}});
    ASSERT_EQ(l.status, MPII_OK);
    EXPECT_EQ(l.cfg.record, 0);
    EXPECT_EQ(l.cfg.trust_image, 1);
    EXPECT_STREQ(l.cfg.image, "app.mpii");
}

TEST(ConfigImages, BadValuesNameTheVariable)
{
    for (auto kv : std::map<std::string, std::string>{{"MPIIMPORT_CACHE_DIR", "relative"},
                                                      {"MPIIMPORT_RECORD", "sometimes"},
                                                      {"MPIIMPORT_TRUST_IMAGE", "2"}}) {
        Loaded l = load({kv});
        EXPECT_EQ(l.status, MPII_ERR_INVALID) << kv.first;
        EXPECT_NE(l.err.find(kv.first), std::string::npos) << l.err;
    }
}

}  // namespace
