// test_stage_registry.cpp — who still uses a stage: registering, leaving (the
// last one out is told so), discarding, and the start-up sweep that removes
// this user's leftovers whose processes are gone and nothing else.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "mpiimport/stage.h"

namespace {

struct Dir {
    std::string path;
    Dir()
    {
        char tmpl[] = "/tmp/mpii-reg-XXXXXX";
        const char *d = mkdtemp(tmpl);
        EXPECT_NE(d, nullptr);
        path = d ? d : "";
    }
    ~Dir() { std::string cmd = "rm -rf '" + path + "'"; EXPECT_EQ(system(cmd.c_str()), 0); }
};

bool exists(const std::string &p)
{
    struct stat sb;
    return lstat(p.c_str(), &sb) == 0;
}

long dead_pid()
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    return (long)pid;
}

void touch(const std::string &p) { std::ofstream(p) << ""; }

std::string make_stage(const std::string &root)
{
    mpii_stage *stage = nullptr;
    EXPECT_EQ(mpii_stage_open(root.c_str(), &stage), MPII_OK);
    char staged[4096];
    EXPECT_EQ(mpii_stage_file(stage, "/usr/lib/libx.so", "abc", 3, 1.0, staged, sizeof staged), MPII_OK);
    mpii_stage_close(stage);
    return staged;
}

TEST(StageRegistry, TheLastOneOutIsToldAndDiscardRemovesBoth)
{
    Dir d;
    std::string root = d.path + "/mpiimport-0-job-0000000000000001-n0";
    std::string staged = make_stage(root);
    ASSERT_EQ(mpii_stage_register(root.c_str()), MPII_OK);
    ASSERT_EQ(mpii_stage_register(root.c_str()), MPII_OK);  // twice: still one entry
    // another live process of the node (this test's parent) and a dead one
    touch(root + ".live/" + std::to_string((long)getppid()));
    touch(root + ".live/" + std::to_string(dead_pid()));
    int last = -1;
    ASSERT_EQ(mpii_stage_leave(root.c_str(), &last), MPII_OK);
    EXPECT_EQ(last, 0);  // the parent is alive
    ASSERT_EQ(unlink((root + ".live/" + std::to_string((long)getppid())).c_str()), 0);
    ASSERT_EQ(mpii_stage_register(root.c_str()), MPII_OK);
    ASSERT_EQ(mpii_stage_leave(root.c_str(), &last), MPII_OK);
    EXPECT_EQ(last, 1);  // only a dead process remains
    EXPECT_TRUE(exists(staged));
    ASSERT_EQ(mpii_stage_discard(root.c_str()), MPII_OK);
    EXPECT_FALSE(exists(root));
    EXPECT_FALSE(exists(root + ".live"));
    EXPECT_EQ(mpii_stage_discard(root.c_str()), MPII_OK);  // nothing left: fine
    EXPECT_EQ(mpii_stage_register("relative"), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_stage_leave(root.c_str(), nullptr), MPII_ERR_INVALID);
}

TEST(StageRegistry, ARegistryOthersCanWriteIsRefused)
{
    Dir d;
    std::string root = d.path + "/mpiimport-0-job-0000000000000002-n0";
    ASSERT_EQ(mkdir((root + ".live").c_str(), 0777), 0);
    ASSERT_EQ(chmod((root + ".live").c_str(), 0777), 0);
    EXPECT_EQ(mpii_stage_register(root.c_str()), MPII_ERR_UNSAFE);
    EXPECT_EQ(mpii_stage_discard(root.c_str()), MPII_ERR_UNSAFE);
}

TEST(StageRegistry, SweepRemovesOnlyWhatNoLiveProcessUses)
{
    Dir stage_dir, shm_dir;
    long dead = dead_pid();
    std::string gone = stage_dir.path + "/mpiimport-0-job-00000000000000aa-n0";
    std::string used = stage_dir.path + "/mpiimport-0-job-00000000000000bb-n0";
    std::string unknown = stage_dir.path + "/mpiimport-0-job-00000000000000cc-n0";  // no registry
    make_stage(gone);
    make_stage(used);
    make_stage(unknown);
    std::string young = stage_dir.path + "/mpiimport-0-job-00000000000000dd-n0";  // being made
    make_stage(young);
    ASSERT_EQ(mkdir((young + ".live").c_str(), 0700), 0);
    touch(young + ".live/" + std::to_string(dead));
    ASSERT_EQ(mkdir((gone + ".live").c_str(), 0700), 0);
    touch(gone + ".live/" + std::to_string(dead));
    struct timespec then[2] = {{time(nullptr) - 120, 0}, {time(nullptr) - 120, 0}};  // changed 2 min ago
    ASSERT_EQ(utimensat(AT_FDCWD, (gone + ".live").c_str(), then, 0), 0);
    ASSERT_EQ(mpii_stage_register(used.c_str()), MPII_OK);  // this process: alive
    std::string f_dead = shm_dir.path + "/mpiimport-" + std::to_string(dead) + "-3-00000000000000ab";
    std::string f_live = shm_dir.path + "/mpiimport-" + std::to_string((long)getpid()) + "-0-00000000000000ab";
    std::string f_other = shm_dir.path + "/mpiimport-" + std::to_string(dead) + "-3-notours";
    touch(f_dead);
    touch(f_live);
    touch(f_other);
    // staged images half written by stagers: one killed a while ago (swept),
    // one killed just now (its pid may be another stager's soon: kept a
    // minute), one still writing (kept)
    std::string image_root = stage_dir.path + "/mpiimport-0-image-00000000000000ee";
    std::string killed = image_root + ".part-" + std::to_string(dead);
    std::string just_killed = image_root + ".part-" + std::to_string(dead) + "0";
    std::string writing = image_root + ".part-" + std::to_string((long)getpid());
    for (const std::string &p : {killed, just_killed, writing})
        make_stage(p);
    ASSERT_EQ(utimensat(AT_FDCWD, killed.c_str(), then, 0), 0);
    EXPECT_EQ(mpii_stage_sweep(stage_dir.path.c_str(), shm_dir.path.c_str()), 3u);
    EXPECT_FALSE(exists(killed));
    EXPECT_TRUE(exists(just_killed + "/usr/lib/libx.so"));
    EXPECT_TRUE(exists(writing + "/usr/lib/libx.so"));
    EXPECT_FALSE(exists(gone));
    EXPECT_FALSE(exists(gone + ".live"));
    EXPECT_TRUE(exists(used + "/usr/lib/libx.so"));
    EXPECT_TRUE(exists(unknown + "/usr/lib/libx.so"));
    EXPECT_TRUE(exists(young + "/usr/lib/libx.so"));  // a registry this young is a job starting
    EXPECT_FALSE(exists(f_dead));
    EXPECT_TRUE(exists(f_live));
    EXPECT_TRUE(exists(f_other));  // not a transport file's name
    EXPECT_EQ(mpii_stage_sweep(nullptr, nullptr), 0u);
}

}  // namespace

namespace {

TEST(StageRegistry, EveryProcessAtTheEndIsSeenAndLeavesNothing)
{
    Dir d;
    std::string root = d.path + "/mpiimport-0-job-00000000000000ef-n0";
    ASSERT_EQ(mpii_stage_register(root.c_str()), MPII_OK);
    std::string other = std::to_string((long)getppid());  // another live process of the "node"
    touch(root + ".live/" + other);
    EXPECT_EQ(mpii_stage_all_at_end(root.c_str()), 0);    // it still runs
    ASSERT_EQ(mpii_stage_at_end(root.c_str()), MPII_OK);  // this one waits at its end
    EXPECT_EQ(mpii_stage_all_at_end(root.c_str()), 0);
    touch(root + ".live/" + other + ".end");              // now it waits too
    EXPECT_EQ(mpii_stage_all_at_end(root.c_str()), 1);
    touch(root + ".live/" + std::to_string(dead_pid()));  // a dead entry does not count
    EXPECT_EQ(mpii_stage_all_at_end(root.c_str()), 1);
    int last = 0;
    ASSERT_EQ(mpii_stage_leave(root.c_str(), &last), MPII_OK);
    EXPECT_FALSE(exists(root + ".live/" + std::to_string((long)getpid()) + ".end"));
    ASSERT_EQ(mpii_stage_discard(root.c_str()), MPII_OK);
    EXPECT_FALSE(exists(root + ".live"));                 // markers and all
}

}  // namespace
