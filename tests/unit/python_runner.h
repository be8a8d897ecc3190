// python_runner.h — for unit tests that compare the core with CPython itself:
// run /usr/bin/python3 on a script with arguments and return its stdout.
#ifndef MPIIMPORT_TESTS_PYTHON_RUNNER_H
#define MPIIMPORT_TESTS_PYTHON_RUNNER_H

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

namespace mpii_test {

inline const char *const kPython = "/usr/bin/python3";

inline std::string shell_quote(const std::string &s)
{
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

// Runs python3 -I -S -B -c script args...; returns its stdout, and fails the
// test when it exits non-zero.
inline std::string run_python(const std::string &script, const std::vector<std::string> &args)
{
    std::string cmd = std::string(kPython) + " -I -S -B -c " + shell_quote(script);
    for (const std::string &a : args)
        cmd += " " + shell_quote(a);
    FILE *p = popen(cmd.c_str(), "r");
    EXPECT_NE(p, nullptr) << cmd;
    if (p == nullptr)
        return "";
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    const int rc = pclose(p);
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << "python failed: " << cmd;
    return out;
}

}  // namespace mpii_test

#endif
