// test_stage.cpp — unit tests of the node-local stage (core/src/stage.c):
// root safety checks, layout of staged files, symlink refusal, the
// one-writer-per-node protocol (.part / .failed / timeout), a full file
// system, and removal without following symlinks.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "mpiimport/stage.h"
#include "mpiimport/status.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string read_file(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string &path, const std::string &bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << path;
}

bool exists_nofollow(const std::string &path)
{
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
}

mode_t mode_of(const std::string &path)
{
    struct stat st;
    EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
    return st.st_mode & 07777;
}

// Some bytes with NULs and every byte value, so a string-based copy would show.
std::string sample_bytes(size_t n, unsigned seed = 1)
{
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++)
        s[i] = static_cast<char>((i * 31u + seed * 7u) & 0xffu);
    return s;
}

class StageTest : public ::testing::Test {
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/mpii_stage_test_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
        base_ = tmpl;
        root_ = base_ + "/stage";
        // The implementation must not depend on the umask for its 0700 modes.
        old_umask_ = umask(0);
    }

    void TearDown() override
    {
        umask(old_umask_);
        if (stage_ != nullptr)
            mpii_stage_close(stage_);
        if (!mount_.empty())
            (void)umount2(mount_.c_str(), MNT_DETACH);
        std::error_code ec;
        fs::remove_all(base_, ec); // does not follow symlinks
    }

    void open_stage()
    {
        ASSERT_EQ(mpii_stage_open(root_.c_str(), &stage_), MPII_OK);
        ASSERT_NE(stage_, nullptr);
    }

    mpii_status stage(const std::string &original, const std::string &bytes, double timeout,
                      std::string *staged_out = nullptr)
    {
        char buf[4096];
        mpii_status s = mpii_stage_file(stage_, original.c_str(), bytes.data(), bytes.size(),
                                        timeout, buf, sizeof buf);
        if (staged_out != nullptr)
            *staged_out = s == MPII_OK ? std::string(buf) : std::string();
        return s;
    }

    std::string base_, root_, mount_;
    mpii_stage *stage_ = nullptr;
    mode_t old_umask_ = 022;
};

// ---- the root --------------------------------------------------------------

TEST_F(StageTest, OpenCreatesRootWithMode0700)
{
    ASSERT_FALSE(exists_nofollow(root_));
    open_stage();
    struct stat st;
    ASSERT_EQ(lstat(root_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_EQ(st.st_uid, geteuid());
    EXPECT_EQ(std::string(mpii_stage_root(stage_)), root_);
}

TEST_F(StageTest, ModesAre0700UnderRestrictiveUmask)
{
    umask(0277); // would leave 0500 without an explicit chmod
    open_stage();
    EXPECT_EQ(mode_of(root_), 0700u);
    if (geteuid() != 0)
        return; // a 0500 directory could not be written into without root's override
    std::string staged;
    ASSERT_EQ(stage("/usr/lib/u.so", "abc", 1.0, &staged), MPII_OK);
    EXPECT_EQ(mode_of(root_ + "/usr"), 0700u);
    EXPECT_EQ(mode_of(root_ + "/usr/lib"), 0700u);
    EXPECT_EQ(mode_of(staged), 0700u);
}

TEST_F(StageTest, OpenExistingSafeRootWorks)
{
    ASSERT_EQ(mkdir(root_.c_str(), 0700), 0);
    write_file(root_ + "/keep", "x");
    open_stage();
    EXPECT_EQ(std::string(mpii_stage_root(stage_)), root_);
    EXPECT_EQ(read_file(root_ + "/keep"), "x"); // opening does not clear it
    // A second handle on the same root is fine too.
    mpii_stage *again = nullptr;
    ASSERT_EQ(mpii_stage_open(root_.c_str(), &again), MPII_OK);
    mpii_stage_close(again);
}

TEST_F(StageTest, TrailingSlashIsDroppedFromRoot)
{
    std::string with_slash = root_ + "/";
    ASSERT_EQ(mpii_stage_open(with_slash.c_str(), &stage_), MPII_OK);
    EXPECT_EQ(std::string(mpii_stage_root(stage_)), root_);
    std::string staged;
    ASSERT_EQ(stage("/a/b.so", "abc", 1.0, &staged), MPII_OK);
    EXPECT_EQ(staged, root_ + "/a/b.so");
}

TEST_F(StageTest, RootThatIsASymlinkIsUnsafe)
{
    std::string target = base_ + "/real";
    ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
    ASSERT_EQ(symlink(target.c_str(), root_.c_str()), 0);
    EXPECT_EQ(mpii_stage_open(root_.c_str(), &stage_), MPII_ERR_UNSAFE);
    EXPECT_EQ(stage_, nullptr);
}

TEST_F(StageTest, RootWithMode0755IsUnsafe)
{
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(mode_of(root_), 0755u);
    EXPECT_EQ(mpii_stage_open(root_.c_str(), &stage_), MPII_ERR_UNSAFE);
    EXPECT_EQ(stage_, nullptr);
    EXPECT_EQ(mode_of(root_), 0755u); // not "fixed" behind our back
}

TEST_F(StageTest, RootWithGroupBitsOnlyIsUnsafe)
{
    ASSERT_EQ(mkdir(root_.c_str(), 0710), 0);
    EXPECT_EQ(mpii_stage_open(root_.c_str(), &stage_), MPII_ERR_UNSAFE);
}

TEST_F(StageTest, RootThatIsARegularFileIsUnsafe)
{
    write_file(root_, "not a directory");
    EXPECT_EQ(mpii_stage_open(root_.c_str(), &stage_), MPII_ERR_UNSAFE);
}

TEST_F(StageTest, RootOwnedBySomeoneElseIsUnsafe)
{
    if (geteuid() != 0)
        GTEST_SKIP() << "needs root to chown a directory to another user";
    ASSERT_EQ(mkdir(root_.c_str(), 0700), 0);
    ASSERT_EQ(chown(root_.c_str(), 65534, 65534), 0) << std::strerror(errno);
    EXPECT_EQ(mpii_stage_open(root_.c_str(), &stage_), MPII_ERR_UNSAFE);
}

TEST_F(StageTest, MissingParentIsNotCreated)
{
    std::string deep = base_ + "/missing/stage";
    mpii_status s = mpii_stage_open(deep.c_str(), &stage_);
    EXPECT_NE(s, MPII_OK);
    EXPECT_EQ(stage_, nullptr);
    EXPECT_FALSE(exists_nofollow(base_ + "/missing"));
}

TEST_F(StageTest, SlashAndEmptyRootsAreInvalid)
{
    EXPECT_EQ(mpii_stage_open("/", &stage_), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_stage_open("", &stage_), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_stage_open(nullptr, &stage_), MPII_ERR_INVALID);
    EXPECT_EQ(stage_, nullptr);
}

// ---- staging files ---------------------------------------------------------

TEST_F(StageTest, StagedFileKeepsRelativeLayout)
{
    open_stage();
    const std::string bytes = sample_bytes(10000);
    std::string staged;
    ASSERT_EQ(stage("/usr/lib/x/y.so", bytes, 1.0, &staged), MPII_OK);
    EXPECT_EQ(staged, root_ + "/usr/lib/x/y.so");

    struct stat st;
    ASSERT_EQ(lstat(staged.c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(static_cast<size_t>(st.st_size), bytes.size());
    EXPECT_EQ(read_file(staged), bytes);
    EXPECT_EQ(st.st_mode & 0700, 0700u); // executable-mappable for dlopen
    EXPECT_EQ(st.st_mode & 077, 0u);

    for (const char *d : {"/usr", "/usr/lib", "/usr/lib/x"}) {
        std::string dir = root_ + d;
        ASSERT_TRUE(fs::is_directory(fs::symlink_status(dir))) << dir;
        EXPECT_EQ(mode_of(dir), 0700u) << dir;
    }
    EXPECT_FALSE(exists_nofollow(staged + ".part"));
    EXPECT_FALSE(exists_nofollow(staged + ".failed"));
}

TEST_F(StageTest, EmptyFileAndTopLevelFileStage)
{
    open_stage();
    std::string staged;
    ASSERT_EQ(stage("/empty.so", "", 1.0, &staged), MPII_OK);
    EXPECT_EQ(staged, root_ + "/empty.so");
    EXPECT_EQ(fs::file_size(staged), 0u);
}

TEST_F(StageTest, StagingTwiceReturnsSamePathWithoutRewriting)
{
    open_stage();
    const std::string bytes = sample_bytes(4096, 1);
    std::string first, second;
    ASSERT_EQ(stage("/opt/m/a.so", bytes, 1.0, &first), MPII_OK);
    struct stat st1;
    ASSERT_EQ(lstat(first.c_str(), &st1), 0);

    // Same length, other bytes: if the call rewrote the file, we would see them.
    const std::string other = sample_bytes(4096, 2);
    ASSERT_NE(other, bytes);
    ASSERT_EQ(stage("/opt/m/a.so", other, 1.0, &second), MPII_OK);
    EXPECT_EQ(second, first);

    struct stat st2;
    ASSERT_EQ(lstat(second.c_str(), &st2), 0);
    EXPECT_EQ(st2.st_ino, st1.st_ino);
    EXPECT_EQ(st2.st_mtim.tv_sec, st1.st_mtim.tv_sec);
    EXPECT_EQ(st2.st_mtim.tv_nsec, st1.st_mtim.tv_nsec);
    EXPECT_EQ(read_file(second), bytes);
}

TEST_F(StageTest, ExistingFileOfOtherSizeIsCorrupt)
{
    open_stage();
    ASSERT_EQ(stage("/opt/b.so", "12345", 1.0), MPII_OK);
    EXPECT_EQ(stage("/opt/b.so", "123456789", 1.0), MPII_ERR_CORRUPT);
    EXPECT_EQ(read_file(root_ + "/opt/b.so"), "12345");
}

TEST_F(StageTest, SymlinkAsIntermediateComponentIsUnsafe)
{
    open_stage();
    std::string outside = base_ + "/outside";
    ASSERT_EQ(mkdir(outside.c_str(), 0700), 0);
    ASSERT_EQ(symlink(outside.c_str(), (root_ + "/usr").c_str()), 0);

    EXPECT_EQ(stage("/usr/lib/x/y.so", "payload", 1.0), MPII_ERR_UNSAFE);
    EXPECT_TRUE(fs::is_empty(outside)) << "something was written through the symlink";

    // A symlink deeper down, below a real directory, is refused too.
    ASSERT_EQ(mkdir((root_ + "/opt").c_str(), 0700), 0);
    ASSERT_EQ(symlink(outside.c_str(), (root_ + "/opt/lib").c_str()), 0);
    EXPECT_EQ(stage("/opt/lib/z.so", "payload", 1.0), MPII_ERR_UNSAFE);
    EXPECT_TRUE(fs::is_empty(outside));
}

TEST_F(StageTest, SymlinkAsFinalComponentIsUnsafe)
{
    open_stage();
    std::string victim = base_ + "/victim";
    write_file(victim, "original");
    ASSERT_EQ(mkdir((root_ + "/lib").c_str(), 0700), 0);
    ASSERT_EQ(symlink(victim.c_str(), (root_ + "/lib/v.so").c_str()), 0);
    EXPECT_EQ(stage("/lib/v.so", "original", 1.0), MPII_ERR_UNSAFE); // same size as victim
    EXPECT_EQ(read_file(victim), "original");
}

TEST_F(StageTest, NonRegularFinalComponentIsUnsafe)
{
    open_stage();
    ASSERT_EQ(mkdir((root_ + "/lib").c_str(), 0700), 0);
    ASSERT_EQ(mkdir((root_ + "/lib/d.so").c_str(), 0700), 0);
    EXPECT_EQ(stage("/lib/d.so", "abc", 1.0), MPII_ERR_UNSAFE);
}

TEST_F(StageTest, BadOriginalsAreInvalid)
{
    open_stage();
    for (const char *bad : {"usr/lib/x.so", "", "/", "x.so", "/usr/../etc/x.so", "/..",
                            "/usr/./x.so", "/./x.so", "/usr//x.so", "/usr/x/", "/usr/lib/..",
                            "../x.so"}) {
        EXPECT_EQ(stage(bad, "abc", 1.0), MPII_ERR_INVALID) << "original: '" << bad << "'";
    }
    EXPECT_TRUE(fs::is_empty(root_)) << "an invalid request created something";
    char buf[64];
    EXPECT_EQ(mpii_stage_file(stage_, nullptr, "a", 1, 1.0, buf, sizeof buf), MPII_ERR_INVALID);
}

TEST_F(StageTest, StagedPathBufferTooSmallIsTooLong)
{
    open_stage();
    std::string expected = root_ + "/usr/lib/t.so";
    std::vector<char> buf(expected.size()); // no room for the NUL
    EXPECT_EQ(mpii_stage_file(stage_, "/usr/lib/t.so", "abc", 3, 1.0, buf.data(), buf.size()),
              MPII_ERR_TOOLONG);
    std::vector<char> ok(expected.size() + 1);
    ASSERT_EQ(mpii_stage_file(stage_, "/usr/lib/t.so", "abc", 3, 1.0, ok.data(), ok.size()),
              MPII_OK);
    EXPECT_EQ(std::string(ok.data()), expected);
}

// ---- one writer per node ---------------------------------------------------

struct Background {
    std::thread thread;
    std::atomic<bool> done{false};
    mpii_status status = MPII_ERR_IO;
    std::string staged;
    double elapsed = 0.0;
};

void start_stage(Background &bg, mpii_stage *stage, std::string original, std::string bytes,
                 double timeout)
{
    bg.thread = std::thread([&bg, stage, original, bytes, timeout] {
        char buf[4096];
        auto t0 = Clock::now();
        bg.status = mpii_stage_file(stage, original.c_str(), bytes.data(), bytes.size(), timeout,
                                    buf, sizeof buf);
        bg.elapsed = seconds_since(t0);
        if (bg.status == MPII_OK)
            bg.staged = buf;
        bg.done = true;
    });
}

class StageWriterTest : public StageTest {
  protected:
    void SetUp() override
    {
        StageTest::SetUp();
        if (HasFatalFailure())
            return;
        open_stage();
        if (HasFatalFailure())
            return;
        dir_ = root_ + "/usr/lib";
        ASSERT_EQ(mkdir((root_ + "/usr").c_str(), 0700), 0);
        ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
        final_ = dir_ + "/m.so";
        // Another process on the node is writing this file.
        write_file(final_ + ".part", "");
    }
    std::string dir_, final_;
};

TEST_F(StageWriterTest, WaitsForOtherWriterToFinish)
{
    const std::string ours = sample_bytes(3000, 1);
    const std::string theirs = sample_bytes(3000, 5); // same length, other bytes
    Background bg;
    start_stage(bg, stage_, "/usr/lib/m.so", ours, 2.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(bg.done) << "returned before the other writer finished";

    write_file(dir_ + "/m.so.tmp", theirs);
    ASSERT_EQ(rename((dir_ + "/m.so.tmp").c_str(), final_.c_str()), 0);
    bg.thread.join();

    EXPECT_EQ(bg.status, MPII_OK);
    EXPECT_EQ(bg.staged, final_);
    EXPECT_GE(bg.elapsed, 0.09);
    EXPECT_LT(bg.elapsed, 1.5);
    EXPECT_EQ(read_file(final_), theirs) << "the waiting process wrote the file itself";
}

TEST_F(StageWriterTest, GivesUpWhenOtherWriterLeavesFailedMarker)
{
    Background bg;
    start_stage(bg, stage_, "/usr/lib/m.so", "abc", 2.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(bg.done);
    auto t0 = Clock::now();
    write_file(final_ + ".failed", "");
    bg.thread.join();
    double after_marker = seconds_since(t0);

    EXPECT_EQ(bg.status, MPII_ERR_NOSPACE);
    EXPECT_LT(after_marker, 0.5) << "did not notice the .failed marker quickly";
    EXPECT_FALSE(exists_nofollow(final_));
}

TEST_F(StageWriterTest, FailedMarkerPresentBeforeCallFailsAtOnce)
{
    ASSERT_EQ(unlink((final_ + ".part").c_str()), 0);
    write_file(final_ + ".failed", "");
    auto t0 = Clock::now();
    EXPECT_EQ(stage("/usr/lib/m.so", "abc", 5.0), MPII_ERR_NOSPACE);
    EXPECT_LT(seconds_since(t0), 0.5);
    EXPECT_FALSE(exists_nofollow(final_));
    EXPECT_FALSE(exists_nofollow(final_ + ".part"));
}

TEST_F(StageWriterTest, TimesOutWhenNobodyFinishes)
{
    auto t0 = Clock::now();
    EXPECT_EQ(stage("/usr/lib/m.so", "abc", 1.0), MPII_ERR_TIMEOUT);
    double elapsed = seconds_since(t0);
    EXPECT_GE(elapsed, 0.95);
    EXPECT_LT(elapsed, 2.0);
    EXPECT_FALSE(exists_nofollow(final_));
    EXPECT_TRUE(exists_nofollow(final_ + ".part")) << "the other writer's file was touched";
}

TEST_F(StageWriterTest, ZeroTimeoutDoesNotWait)
{
    auto t0 = Clock::now();
    EXPECT_EQ(stage("/usr/lib/m.so", "abc", 0.0), MPII_ERR_TIMEOUT);
    EXPECT_LT(seconds_since(t0), 0.5);
}

TEST_F(StageTest, ConcurrentThreadsProduceOneCorrectFile)
{
    open_stage();
    const std::string bytes = sample_bytes(1 << 20, 3);
    std::vector<Background> bgs(8);
    for (auto &bg : bgs)
        start_stage(bg, stage_, "/usr/lib/python3/c.so", bytes, 10.0);
    for (auto &bg : bgs)
        bg.thread.join();
    for (auto &bg : bgs) {
        EXPECT_EQ(bg.status, MPII_OK);
        EXPECT_EQ(bg.staged, root_ + "/usr/lib/python3/c.so");
    }
    EXPECT_EQ(read_file(root_ + "/usr/lib/python3/c.so"), bytes);
    EXPECT_FALSE(exists_nofollow(root_ + "/usr/lib/python3/c.so.part"));
}

// ---- a full file system ----------------------------------------------------

TEST_F(StageTest, FullFileSystemIsNoSpace)
{
    std::string mnt = base_ + "/tiny";
    ASSERT_EQ(mkdir(mnt.c_str(), 0700), 0);
    // (the stage keeps 64 MiB of a file system free for the job: 256 KiB above that)
    if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=65792k,mode=0700") != 0)
        GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                     << "); needs root / CAP_SYS_ADMIN";
    mount_ = mnt;
    root_ = mnt + "/stage";
    open_stage();

    const std::string big = sample_bytes(1 << 20);
    const std::string staged = root_ + "/usr/lib/big.so";
    EXPECT_EQ(stage("/usr/lib/big.so", big, 5.0), MPII_ERR_NOSPACE);
    EXPECT_FALSE(exists_nofollow(staged + ".part")) << ".part left behind";
    EXPECT_TRUE(exists_nofollow(staged + ".failed")) << "no .failed marker";
    EXPECT_FALSE(exists_nofollow(staged));

    auto t0 = Clock::now();
    EXPECT_EQ(stage("/usr/lib/big.so", big, 5.0), MPII_ERR_NOSPACE);
    EXPECT_LT(seconds_since(t0), 0.5) << "second call did not fail at once";

    // Small files still fit.
    std::string small_path;
    EXPECT_EQ(stage("/usr/lib/small.so", "tiny", 5.0, &small_path), MPII_OK);
    EXPECT_EQ(read_file(small_path), "tiny");
}

TEST_F(StageTest, TheStageLeavesTheJobItsShareOfTheFileSystem)
{
    // /dev/shm is also where MPI maps its shared-memory segments: a file
    // that would leave less than 64 MiB (or 5 %) free is not staged, though
    // it would fit (the caller keeps it in memory, relays it or imports it
    // plainly), and the next one that leaves the reserve free is
    std::string mnt = base_ + "/small";
    ASSERT_EQ(mkdir(mnt.c_str(), 0700), 0);
    if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=80m,mode=0700") != 0)
        GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                     << "); needs root / CAP_SYS_ADMIN";
    mount_ = mnt;
    root_ = mnt + "/stage";
    open_stage();
    EXPECT_EQ(stage("/usr/lib/twenty.so", sample_bytes(20 << 20), 5.0), MPII_ERR_NOSPACE);
    EXPECT_FALSE(exists_nofollow(root_ + "/usr/lib/twenty.so"));
    EXPECT_FALSE(exists_nofollow(root_ + "/usr/lib/twenty.so.part")) << ".part left behind";
    std::string ten;
    EXPECT_EQ(stage("/usr/lib/ten.so", sample_bytes(10 << 20), 5.0, &ten), MPII_OK);
    EXPECT_TRUE(exists_nofollow(ten));
}

// ---- removal ---------------------------------------------------------------

TEST_F(StageTest, RemoveDeletesEverythingButNotSymlinkTargets)
{
    open_stage();
    ASSERT_EQ(stage("/usr/lib/x/y.so", sample_bytes(5000), 1.0), MPII_OK);
    ASSERT_EQ(stage("/usr/lib/x/z.so", sample_bytes(10), 1.0), MPII_OK);
    ASSERT_EQ(stage("/opt/a/b/c/d/e.so", "e", 1.0), MPII_OK);
    write_file(root_ + "/usr/lib/x/leftover.part", "partial");

    std::string outside_file = base_ + "/precious";
    std::string outside_dir = base_ + "/precious_dir";
    write_file(outside_file, "keep me");
    ASSERT_EQ(mkdir(outside_dir.c_str(), 0700), 0);
    write_file(outside_dir + "/inner", "keep me too");
    ASSERT_EQ(symlink(outside_file.c_str(), (root_ + "/usr/lib/link").c_str()), 0);
    ASSERT_EQ(symlink(outside_dir.c_str(), (root_ + "/usr/dirlink").c_str()), 0);
    ASSERT_EQ(symlink("/nonexistent/dangling", (root_ + "/dangling").c_str()), 0);

    ASSERT_EQ(mpii_stage_remove(stage_), MPII_OK);
    EXPECT_FALSE(exists_nofollow(root_));
    EXPECT_EQ(read_file(outside_file), "keep me");
    EXPECT_EQ(read_file(outside_dir + "/inner"), "keep me too");
    EXPECT_TRUE(exists_nofollow(base_)); // the parent stays

    // Removing again is harmless.
    EXPECT_EQ(mpii_stage_remove(stage_), MPII_OK);
}

TEST_F(StageTest, RemoveEmptyRoot)
{
    open_stage();
    ASSERT_EQ(mpii_stage_remove(stage_), MPII_OK);
    EXPECT_FALSE(exists_nofollow(root_));
}

TEST_F(StageTest, CloseDoesNotRemoveFiles)
{
    open_stage();
    std::string staged;
    ASSERT_EQ(stage("/usr/lib/k.so", "kept", 1.0, &staged), MPII_OK);
    mpii_stage_close(stage_);
    stage_ = nullptr;
    EXPECT_EQ(read_file(staged), "kept");
    mpii_stage_close(nullptr); // harmless
}

} // namespace
