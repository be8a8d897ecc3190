// test_pyc.cpp — unit tests of the bytecode-cache header checks
// (core/src/pyc.c): hand-built timestamp and hash-based headers (stale mtime
// or size, sub-second and modulo-2^32 mtimes, sizes over 4 GiB, bad magic,
// bad flags, short files), and a cross-check against pycs that CPython itself
// (/usr/bin/python3, py_compile) writes for real source files.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mpiimport/pyc.h"
#include "python_runner.h"

namespace {

using mpii_test::kPython;

// The magic of this test's Python 3.11 (importlib.util.MAGIC_NUMBER); the
// CPython cross-checks below take it from the interpreter instead.
const uint8_t kMagic[4] = {0xA7, 0x0D, 0x0D, 0x0A};

std::vector<uint8_t> header(const uint8_t magic[4], uint32_t flags, uint32_t w2, uint32_t w3,
                            size_t body = 8)
{
    std::vector<uint8_t> v(magic, magic + 4);
    for (uint32_t w : {flags, w2, w3})
        for (int i = 0; i < 4; i++)
            v.push_back(static_cast<uint8_t>(w >> (8 * i)));
    for (size_t i = 0; i < body; i++)
        v.push_back(static_cast<uint8_t>(0xE3 + i));
    return v;
}

mpii_pyc_verdict check(const std::vector<uint8_t> &pyc, int64_t mtime_ns, uint64_t size)
{
    // Exact-size heap copy, so ASan sees a read past len.
    std::vector<uint8_t> copy(pyc);
    return mpii_pyc_check(kMagic, copy.empty() ? nullptr : copy.data(), copy.size(), mtime_ns, size);
}

constexpr int64_t kSec = 1000000000LL;

using mpii_test::run_python;
using mpii_test::shell_quote;

std::vector<uint8_t> read_bytes(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string stamp(int64_t sec, long nsec)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%lld.%09ld s", static_cast<long long>(sec), nsec);
    return buf;
}

class PycCPython : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (access(kPython, X_OK) != 0)
            GTEST_SKIP() << kPython << " is not available";
        char tmpl[] = "/tmp/mpii_pyc_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        src_ = dir_ + "/mod.py";
        pyc_ = dir_ + "/mod.pyc";
        std::ofstream(src_) << "VALUE = 42\nprint('unused')\n";
        const std::string hex = run_python("import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())", {});
        ASSERT_GE(hex.size(), 8u) << hex;
        for (int i = 0; i < 4; i++)
            magic_[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * static_cast<size_t>(i), 2), nullptr, 16));
    }
    void TearDown() override
    {
        if (!dir_.empty())
            std::filesystem::remove_all(dir_);
    }
    // py_compile with an explicit invalidation mode (so SOURCE_DATE_EPOCH
    // does not change it).
    void compile(const std::string &mode)
    {
        run_python("import py_compile, sys\n"
                   "py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True,\n"
                   "    invalidation_mode=getattr(py_compile.PycInvalidationMode, sys.argv[3]))\n",
                   {src_, pyc_, mode});
    }
    void set_mtime(int64_t sec, long nsec)
    {
        struct timespec ts[2] = {{static_cast<time_t>(sec), nsec}, {static_cast<time_t>(sec), nsec}};
        ASSERT_EQ(utimensat(AT_FDCWD, src_.c_str(), ts, 0), 0) << std::strerror(errno);
    }
    mpii_pyc_verdict verdict()
    {
        struct stat st;
        EXPECT_EQ(stat(src_.c_str(), &st), 0);
        const int64_t mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * kSec + st.st_mtim.tv_nsec;
        std::vector<uint8_t> pyc = read_bytes(pyc_);
        return mpii_pyc_check(magic_, pyc.data(), pyc.size(), mtime_ns, static_cast<uint64_t>(st.st_size));
    }
    std::string dir_, src_, pyc_;
    uint8_t magic_[4] = {0, 0, 0, 0};
};

} // namespace

TEST(Pyc, MatchingTimestampPycIsValid)
{
    EXPECT_EQ(check(header(kMagic, 0, 1700000000u, 1234u), 1700000000LL * kSec, 1234), MPII_PYC_VALID);
    // Only the 16-byte header matters.
    EXPECT_EQ(check(header(kMagic, 0, 1700000000u, 1234u, 0), 1700000000LL * kSec, 1234), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 0u, 0u), 0, 0), MPII_PYC_VALID);
}

TEST(Pyc, MtimeOffByOneSecondIsStale)
{
    EXPECT_EQ(check(header(kMagic, 0, 1700000001u, 1234u), 1700000000LL * kSec, 1234), MPII_PYC_STALE);
    EXPECT_EQ(check(header(kMagic, 0, 1699999999u, 1234u), 1700000000LL * kSec, 1234), MPII_PYC_STALE);
}

TEST(Pyc, SizeDifferenceIsStale)
{
    EXPECT_EQ(check(header(kMagic, 0, 1700000000u, 1235u), 1700000000LL * kSec, 1234), MPII_PYC_STALE);
    EXPECT_EQ(check(header(kMagic, 0, 1700000000u, 0u), 1700000000LL * kSec, 1234), MPII_PYC_STALE);
    EXPECT_EQ(check(header(kMagic, 0, 1700000000u, 1234u), 1700000000LL * kSec, 0), MPII_PYC_STALE);
}

TEST(Pyc, SubSecondMtimeIsTruncatedNotRounded)
{
    // int(st_mtime) truncates: 1700000000.5 s and 1700000000.999999 s are second 1700000000.
    const int64_t half = 1700000000LL * kSec + 500000000LL;
    EXPECT_EQ(check(header(kMagic, 0, 1700000000u, 10u), half, 10), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 1700000001u, 10u), half, 10), MPII_PYC_STALE);
    const int64_t micro = 1700000000LL * kSec + 999999000LL;
    EXPECT_EQ(check(header(kMagic, 0, 1700000000u, 10u), micro, 10), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 1700000001u, 10u), micro, 10), MPII_PYC_STALE);
}

TEST(Pyc, MtimeJustBelowWholeSecondFollowsCPythonFloat)
{
    // CPython's st_mtime is the double sec + nsec * 1e-9 (posixmodule.c
    // fill_time); for 1700000000.999999999 s that double is exactly
    // 1700000001.0, so int(st_mtime) — what py_compile writes and what
    // _validate_timestamp_pyc compares — is 1700000001, not 1700000000.
    // (PycCPython.NearlyWholeSecondMtimeMatchesCPython shows it with a real pyc.)
    const int64_t ns = 1700000000LL * kSec + 999999999LL;
    EXPECT_EQ(check(header(kMagic, 0, 1700000001u, 10u), ns, 10), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 1700000000u, 10u), ns, 10), MPII_PYC_STALE);
}

TEST(Pyc, MtimeIsComparedModulo2To32)
{
    // 2106-02-07 and later wrap, as _pack_uint32 does.
    const int64_t wrapped = (4294967296LL + 5) * kSec;
    EXPECT_EQ(check(header(kMagic, 0, 5u, 1u), wrapped, 1), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 6u, 1u), wrapped, 1), MPII_PYC_STALE);
    // Before 1970: int(-1.0) & 0xFFFFFFFF; int(-1.5) is -1 (toward zero).
    EXPECT_EQ(check(header(kMagic, 0, 0xFFFFFFFFu, 1u), -1 * kSec, 1), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 0xFFFFFFFFu, 1u), -1500000000LL, 1), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 0xFFFFFFFEu, 1u), -1500000000LL, 1), MPII_PYC_STALE);
}

TEST(Pyc, SizeOver4GiBIsComparedModulo2To32)
{
    const uint64_t size = (1ULL << 32) + 77;
    EXPECT_EQ(check(header(kMagic, 0, 1u, 77u), kSec, size), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 1u, 78u), kSec, size), MPII_PYC_STALE);
    EXPECT_EQ(check(header(kMagic, 0, 1u, 0u), kSec, 1ULL << 32), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 0, 1u, 0xFFFFFFFFu), kSec, (1ULL << 33) - 1), MPII_PYC_VALID);
}

TEST(Pyc, BadMagicIsReportedInEveryByte)
{
    for (int i = 0; i < 4; i++) {
        uint8_t other[4];
        std::memcpy(other, kMagic, 4);
        other[i] ^= 0x01;
        const std::vector<uint8_t> pyc = header(other, 0, 1u, 1u);
        EXPECT_EQ(check(pyc, kSec, 1), MPII_PYC_BAD_MAGIC) << "byte " << i;
        EXPECT_EQ(mpii_pyc_check_sourceless(kMagic, pyc.data(), pyc.size()), MPII_PYC_BAD_MAGIC) << i;
    }
    // Python 3.10's magic (3439) is another version's bytecode.
    const uint8_t py310[4] = {0x6F, 0x0D, 0x0D, 0x0A};
    EXPECT_EQ(check(header(py310, 0, 1u, 1u), kSec, 1), MPII_PYC_BAD_MAGIC);
}

TEST(Pyc, UnknownFlagBitsAreBadFlags)
{
    const uint32_t bad[] = {4u, 5u, 7u, 8u, 0x100u, 0x80000000u, 0xFFFFFFFFu};
    for (uint32_t f : bad) {
        const std::vector<uint8_t> pyc = header(kMagic, f, 1u, 1u);
        EXPECT_EQ(check(pyc, kSec, 1), MPII_PYC_BAD_FLAGS) << "flags " << f;
        EXPECT_EQ(mpii_pyc_check_sourceless(kMagic, pyc.data(), pyc.size()), MPII_PYC_BAD_FLAGS) << f;
    }
}

TEST(Pyc, HashBasedPycs)
{
    // Unchecked hash pyc (flags 1): valid whatever the source's stat.
    EXPECT_EQ(check(header(kMagic, 1, 0xDEADBEEFu, 0x12345678u), 1700000000LL * kSec, 99), MPII_PYC_VALID);
    // Checked hash pyc (flags 3): the source hash must be checked.
    EXPECT_EQ(check(header(kMagic, 3, 0xDEADBEEFu, 0x12345678u), 1700000000LL * kSec, 99),
              MPII_PYC_HASH_CHECKED);
    // flags 2 without the hash bit is a timestamp pyc.
    EXPECT_EQ(check(header(kMagic, 2, 1700000000u, 99u), 1700000000LL * kSec, 99), MPII_PYC_VALID);
    EXPECT_EQ(check(header(kMagic, 2, 1700000001u, 99u), 1700000000LL * kSec, 99), MPII_PYC_STALE);
}

TEST(Pyc, ShorterThanHeaderIsTruncated)
{
    const std::vector<uint8_t> full = header(kMagic, 0, 1u, 1u, 0);
    for (size_t len = 4; len < MPII_PYC_HEADER_SIZE; len++) {
        const std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(len));
        EXPECT_EQ(check(cut, kSec, 1), MPII_PYC_TRUNCATED) << len;
        std::vector<uint8_t> copy(cut);
        EXPECT_EQ(mpii_pyc_check_sourceless(kMagic, copy.data(), copy.size()), MPII_PYC_TRUNCATED) << len;
    }
    // Too short even for the magic: never valid, never a read past the end.
    for (size_t len = 0; len < 4; len++) {
        const std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(len));
        const mpii_pyc_verdict v = check(cut, kSec, 1);
        EXPECT_TRUE(v == MPII_PYC_TRUNCATED || v == MPII_PYC_BAD_MAGIC) << len;
    }
    EXPECT_EQ(mpii_pyc_check(kMagic, nullptr, 0, kSec, 1), MPII_PYC_TRUNCATED);
    EXPECT_EQ(mpii_pyc_check_sourceless(kMagic, nullptr, 0), MPII_PYC_TRUNCATED);
    EXPECT_EQ(check(full, kSec, 1), MPII_PYC_VALID); // 16 bytes is enough
}

TEST(Pyc, SourcelessChecksOnlyMagicAndFlags)
{
    for (uint32_t f : {0u, 1u, 2u, 3u}) {
        const std::vector<uint8_t> pyc = header(kMagic, f, 0x11111111u, 0x22222222u);
        EXPECT_EQ(mpii_pyc_check_sourceless(kMagic, pyc.data(), pyc.size()), MPII_PYC_VALID) << f;
    }
}

TEST_F(PycCPython, MagicMatchesThisInterpreter)
{
    // Catches a test (or core) built for another Python than the one used.
    EXPECT_EQ(std::memcmp(magic_, kMagic, 4), 0);
}

TEST_F(PycCPython, TimestampPycWrittenByCPythonIsValidThenStale)
{
    set_mtime(1700000000, 250000000);
    compile("TIMESTAMP");
    const std::vector<uint8_t> pyc = read_bytes(pyc_);
    ASSERT_GT(pyc.size(), MPII_PYC_HEADER_SIZE);
    EXPECT_EQ(std::memcmp(pyc.data(), magic_, 4), 0);
    EXPECT_EQ(verdict(), MPII_PYC_VALID);

    // A second later (touch): stale.
    set_mtime(1700000001, 250000000);
    EXPECT_EQ(verdict(), MPII_PYC_STALE);
    // Sub-second change within the same second: still valid, as for CPython.
    set_mtime(1700000000, 750000000);
    EXPECT_EQ(verdict(), MPII_PYC_VALID);
    // Same mtime, another size: stale.
    {
        std::ofstream(src_, std::ios::app) << "# more\n";
    }
    set_mtime(1700000000, 250000000);
    EXPECT_EQ(verdict(), MPII_PYC_STALE);
}

TEST_F(PycCPython, TimestampPycAgreesWithCPythonsOwnValidation)
{
    // CPython's verdict through importlib._bootstrap_external, for the pyc
    // and the source's current stat, compared with ours after each touch.
    const char *script =
        "import sys, os, importlib._bootstrap_external as b\n"
        "data = open(sys.argv[2], 'rb').read()\n"
        "st = os.stat(sys.argv[1])\n"
        "try:\n"
        "    # as SourceLoader.get_code calls it: source_mtime = int(st['mtime'])\n"
        "    b._validate_timestamp_pyc(data, int(st.st_mtime), st.st_size, 'mod', {})\n"
        "    print('valid')\n"
        "except ImportError:\n"
        "    print('stale')\n";
    const struct {
        int64_t sec;
        long nsec;
    } times[] = {{1600000000, 0}, {1600000000, 999999999}, {1600000001, 0}, {1600000001, 1},
                 {1700000000, 999999999}, {1700000001, 0}, {1700000000, 500000000}};
    for (const auto &t : times) {
        set_mtime(t.sec, t.nsec);
        compile("TIMESTAMP");
        for (const auto &now : times) {
            set_mtime(now.sec, now.nsec);
            const std::string cpython = run_python(script, {src_, pyc_});
            const mpii_pyc_verdict v = verdict();
            EXPECT_EQ(v == MPII_PYC_VALID ? "valid\n" : "stale\n", cpython)
                << "pyc written at " << stamp(t.sec, t.nsec) << ", source now " << stamp(now.sec, now.nsec);
        }
    }
}

TEST_F(PycCPython, NearlyWholeSecondMtimeMatchesCPython)
{
    set_mtime(1700000000, 999999999);
    compile("TIMESTAMP");
    const std::vector<uint8_t> pyc = read_bytes(pyc_);
    ASSERT_GE(pyc.size(), MPII_PYC_HEADER_SIZE);
    const uint32_t written = static_cast<uint32_t>(pyc[8]) | static_cast<uint32_t>(pyc[9]) << 8 |
                             static_cast<uint32_t>(pyc[10]) << 16 | static_cast<uint32_t>(pyc[11]) << 24;
    EXPECT_EQ(written, 1700000001u) << "CPython wrote int(float st_mtime)";
    EXPECT_EQ(verdict(), MPII_PYC_VALID) << "a pyc CPython just wrote for this source must be valid";
}

TEST_F(PycCPython, HashBasedPycsWrittenByCPython)
{
    compile("UNCHECKED_HASH");
    EXPECT_EQ(verdict(), MPII_PYC_VALID);
    set_mtime(1234567890, 0);
    EXPECT_EQ(verdict(), MPII_PYC_VALID);
    compile("CHECKED_HASH");
    EXPECT_EQ(verdict(), MPII_PYC_HASH_CHECKED);
    const std::vector<uint8_t> pyc = read_bytes(pyc_);
    EXPECT_EQ(mpii_pyc_check_sourceless(magic_, pyc.data(), pyc.size()), MPII_PYC_VALID);
}
