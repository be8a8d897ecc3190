// test_path_log.cpp — unit tests of core/src/path_log.c: the paths a
// process looked at, for the next pack (each absolute path once, one line
// each; nothing when not recording; unloggable paths counted).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "mpiimport/path_log.h"

namespace {

TEST(PathLog, EachAbsolutePathOnceOneLineEach)
{
    char tmpl[] = "/tmp/mpii-plog-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::string prefix = std::string(tmpl) + "/rec";
    mpii_path_log log;
    ASSERT_EQ(mpii_path_log_open(&log, prefix.c_str(), "unit"), MPII_OK);
    ASSERT_GE(log.fd, 0);
    for (const char *p : {"/a/b", "/a/b", "relative", "/c\nd", "/e", "/a/b"})
        mpii_path_log_add(&log, p);
    EXPECT_EQ(log.logged, 2u);
    EXPECT_EQ(log.dropped, 1u); // the one with a newline
    mpii_path_log_close(&log);
    EXPECT_EQ(log.fd, -1);
    const std::string file = prefix + "." + std::to_string(getpid()) + ".unit";
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text, "/a/b\n/e\n");
    EXPECT_EQ(unlink(file.c_str()), 0);
    EXPECT_EQ(rmdir(tmpl), 0);
}

TEST(PathLog, NoPrefixRecordsNothing)
{
    mpii_path_log log;
    ASSERT_EQ(mpii_path_log_open(&log, nullptr, "unit"), MPII_OK);
    EXPECT_EQ(log.fd, -1);
    mpii_path_log_add(&log, "/a");
    EXPECT_EQ(log.logged, 0u);
    mpii_path_log_close(&log);
    ASSERT_EQ(mpii_path_log_open(&log, "", "unit"), MPII_OK);
    EXPECT_EQ(log.fd, -1);
    mpii_path_log_close(&log);
}

} // namespace
