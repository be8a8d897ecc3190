// test_stage_image.cpp — unit tests of staged images (core/src/stage_image.c):
// staging a packed image writes its files with the originals' mtimes, a
// second stage of the same image writes nothing, the index answers paths
// (staged, a listed directory, absent by a listing, unknown), and a damaged
// stage (a flipped index byte, a staged file of another size, no seal) is
// refused; plus the context rule that "exists but is not a directory" never
// answers a question about a file.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "mpiimport/config.h"
#include "mpiimport/context.h"
#include "mpiimport/image.h"
#include "mpiimport/stage.h"
#include "mpiimport/transport.h"

namespace {

struct TempDir {
    std::string dir;
    TempDir()
    {
        char tmpl[] = "/tmp/mpii-stimg-XXXXXX";
        const char *d = mkdtemp(tmpl);
        EXPECT_NE(d, nullptr);
        dir = d ? d : "";
    }
    ~TempDir() { std::string cmd = "chmod -R u+w '" + dir + "' && rm -rf '" + dir + "'"; EXPECT_EQ(system(cmd.c_str()), 0); }
};

// An image of /orig/lib/{liba.so,libb.so} with the listing of /orig/lib.
std::string write_image(const std::string &where)
{
    mpii_image *img = nullptr;
    EXPECT_EQ(mpii_image_create(&img), MPII_OK);
    const char *names[] = {"liba.so", "libb.so", "sub"};
    const mpii_dirent_type types[] = {MPII_DIRENT_FILE, MPII_DIRENT_FILE, MPII_DIRENT_DIR};
    EXPECT_EQ(mpii_image_add_listing(img, "/orig/lib", names, types, 3), MPII_OK);
    EXPECT_EQ(mpii_image_add_file(img, "/orig/lib/liba.so", "AAAA", 4, 1234000000000LL, 4, 0), MPII_OK);
    EXPECT_EQ(mpii_image_add_file(img, "/orig/lib/libb.so", "BBBBBB", 6, 1500000000123LL, 6, 0), MPII_OK);
    std::string path = where + "/app.mpii";
    EXPECT_EQ(mpii_image_write_file(img, path.c_str(), "test image"), MPII_OK);
    mpii_image_destroy(img);
    return path;
}

// Writes the image under t and stages it in t/shm; returns (image, shm).
struct Staged {
    std::string image, shm;
    int already = 1;
    uint64_t files = 0, bytes = 0;
    explicit Staged(const TempDir &t) : image(write_image(t.dir)), shm(t.dir + "/shm")
    {
        EXPECT_EQ(mkdir(shm.c_str(), 0700), 0);
        EXPECT_EQ(stage(), MPII_OK);
    }
    mpii_status stage()
    {
        return mpii_stage_image(shm.c_str(), image.c_str(), 5.0, &already, &files, &bytes);
    }
};

TEST(StageImage, StagesOnceAnswersPathsAndKeepsMtimes)
{
    TempDir t;
    Staged s(t);
    const std::string &image = s.image, &shm = s.shm;
    int &already = s.already;
    uint64_t &files = s.files, &bytes = s.bytes;
    EXPECT_EQ(already, 0);
    EXPECT_EQ(files, 2u);
    EXPECT_EQ(bytes, 10u);
    ASSERT_EQ(mpii_stage_image(shm.c_str(), image.c_str(), 5.0, &already, &files, &bytes), MPII_OK);
    EXPECT_EQ(already, 1);

    char root[4096];
    mpii_stage_hold hold = MPII_STAGE_HOLD_INIT;
    mpii_image *index = nullptr;
    ASSERT_EQ(mpii_stage_image_load(shm.c_str(), image.c_str(), root, sizeof root, &hold, &index), MPII_OK);
    char staged[8192];
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/libb.so", staged, sizeof staged),
              MPII_ANSWER_STAGED);
    EXPECT_EQ(std::string(staged), std::string(root) + "/orig/lib/libb.so");
    struct stat sb;
    ASSERT_EQ(stat(staged, &sb), 0);
    EXPECT_EQ(sb.st_size, 6);
    EXPECT_EQ(sb.st_mtim.tv_sec, 1500);
    EXPECT_EQ(sb.st_mtim.tv_nsec, 123);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib", staged, sizeof staged), MPII_ANSWER_DIR);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/libc.so.6", staged, sizeof staged),
              MPII_ANSWER_ABSENT);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/glibc-hwcaps/x86-64-v3/liba.so", staged,
                                       sizeof staged),
              MPII_ANSWER_ABSENT);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/liba.so/x", staged, sizeof staged),
              MPII_ANSWER_NOTDIR);  // a file is no directory: ENOTDIR, as the file system says
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/sub/deeper.so", staged, sizeof staged),
              MPII_ANSWER_UNKNOWN);  // sub's listing is not in the image
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/elsewhere/x", staged, sizeof staged),
              MPII_ANSWER_UNKNOWN);
    // every spelling answers as the file system would (issue 17 item 0)
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/.", staged, sizeof staged), MPII_ANSWER_DIR);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/", staged, sizeof staged), MPII_ANSWER_DIR);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "//orig//lib//libb.so", staged, sizeof staged),
              MPII_ANSWER_STAGED);
    EXPECT_EQ(std::string(staged), std::string(root) + "/orig/lib/libb.so");
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/./libb.so", staged, sizeof staged),
              MPII_ANSWER_STAGED);
    // sub is a listed directory and no link: ".." after it is /orig/lib
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/sub/../libb.so", staged, sizeof staged),
              MPII_ANSWER_STAGED);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/sub/../nothing", staged, sizeof staged),
              MPII_ANSWER_ABSENT);
    // /orig/lib's own link-ness is unknown (its parent is not listed): ".." after it passes through
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/../lib/libb.so", staged, sizeof staged),
              MPII_ANSWER_UNKNOWN);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/libb.so/", staged, sizeof staged),
              MPII_ANSWER_NOTDIR);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/libb.so/.", staged, sizeof staged),
              MPII_ANSWER_NOTDIR);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, "/orig/lib/none/.", staged, sizeof staged),
              MPII_ANSWER_ABSENT);
    char plain[4096];
    EXPECT_EQ(mpii_stage_image_plain(index, "/orig/lib/sub/../x", plain, sizeof plain), 1);
    EXPECT_EQ(std::string(plain), "/orig/lib/x");
    EXPECT_EQ(mpii_stage_image_plain(index, "/orig/lib/../x", plain, sizeof plain), -1);
    mpii_image_destroy(index);

    int removed = 0;
    ASSERT_EQ(mpii_unstage_image(shm.c_str(), image.c_str(), &removed), MPII_OK);
    EXPECT_EQ(removed, 1);
    EXPECT_EQ(mpii_stage_image_load(shm.c_str(), image.c_str(), root, sizeof root, &hold, &index),
              MPII_ERR_NOTFOUND);
}

TEST(StageImage, ADamagedStageIsRefusedOrItsDamagedCopyNotServed)
{
    for (int damage = 0; damage < 3; damage++) {
        TempDir t;
        Staged s(t);
        const std::string &image = s.image, &shm = s.shm;
        char root[4096];
        ASSERT_EQ(mpii_stage_image_root(shm.c_str(), image.c_str(), root, sizeof root), MPII_OK);
        std::string r = root;
        if (damage == 0) {  // one byte of the index
            std::string index = r + "/.mpiimport/index";
            int fd = open(index.c_str(), O_RDWR);
            ASSERT_GE(fd, 0);
            char c = 0;
            ASSERT_EQ(pread(fd, &c, 1, 60), 1);
            c = static_cast<char>(c ^ 0x5a);
            ASSERT_EQ(pwrite(fd, &c, 1, 60), 1);
            ASSERT_EQ(close(fd), 0);
        } else if (damage == 1) {  // a staged file of another size
            std::ofstream(r + "/orig/lib/liba.so", std::ios::app) << "more";
        } else {  // no seal: a stager killed before it finished
            ASSERT_EQ(unlink((r + "/.mpiimport/seal").c_str()), 0);
        }
        mpii_image *index = nullptr;
        mpii_stage_hold hold = MPII_STAGE_HOLD_INIT;
        mpii_status st = mpii_stage_image_load(shm.c_str(), image.c_str(), root, sizeof root, &hold, &index);
        char staged[8192];
        if (damage == 1) {
            // loading costs the index, not one stat per file: the damaged
            // copy is found when it is used, and never served (its original is)
            ASSERT_EQ(st, MPII_OK);
            EXPECT_EQ(mpii_stage_image_resolve(index, hold.path, "/orig/lib/liba.so", staged, sizeof staged),
                      MPII_ANSWER_UNKNOWN);
            EXPECT_EQ(mpii_stage_image_resolve(index, hold.path, "/orig/lib/libb.so", staged, sizeof staged),
                      MPII_ANSWER_STAGED);
            mpii_image_destroy(index);
            mpii_stage_hold_close(&hold);
            index = nullptr;
        } else {
            EXPECT_NE(st, MPII_OK) << "damage " << damage;
            EXPECT_EQ(index, nullptr);
        }
        // staging again repairs it (the stager checks every file)
        ASSERT_EQ(s.stage(), MPII_OK);
        EXPECT_EQ(s.already, 0) << "damage " << damage;
        ASSERT_EQ(mpii_stage_image_load(shm.c_str(), image.c_str(), root, sizeof root, &hold, &index), MPII_OK);
        EXPECT_EQ(mpii_stage_image_resolve(index, hold.path, "/orig/lib/liba.so", staged, sizeof staged),
                  MPII_ANSWER_STAGED);
        mpii_image_destroy(index);
        mpii_stage_hold_close(&hold);
    }
}

TEST(StageHold, OnlyThisUsersClosedDirectoryIsHeld)
{
    TempDir t;
    mpii_stage_hold hold = MPII_STAGE_HOLD_INIT;
    std::string open_dir = t.dir + "/open", link = t.dir + "/link", ours = t.dir + "/ours";
    ASSERT_EQ(mkdir(open_dir.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(ours.c_str(), 0700), 0);
    ASSERT_EQ(symlink(ours.c_str(), link.c_str()), 0);
    EXPECT_EQ(mpii_stage_hold_open(open_dir.c_str(), &hold), MPII_ERR_UNSAFE);   // others may write
    EXPECT_EQ(mpii_stage_hold_open(link.c_str(), &hold), MPII_ERR_UNSAFE);       // a link to it
    EXPECT_EQ(mpii_stage_hold_open((t.dir + "/none").c_str(), &hold), MPII_ERR_NOTFOUND);
    EXPECT_EQ(hold.fd, -1);
    ASSERT_EQ(chmod(ours.c_str(), 01700), 0);                                     // being removed
    EXPECT_EQ(mpii_stage_hold_open(ours.c_str(), &hold), MPII_ERR_UNSAFE);
    ASSERT_EQ(chmod(ours.c_str(), 0700), 0);
    ASSERT_EQ(mpii_stage_hold_open(ours.c_str(), &hold), MPII_OK);
    EXPECT_GE(hold.fd, 3);
    EXPECT_EQ(std::string(hold.path), "/proc/self/fd/" + std::to_string(hold.fd));
    EXPECT_NE(fcntl(hold.fd, F_GETFD) & FD_CLOEXEC, 0);
    struct stat a, b;
    ASSERT_EQ(stat(ours.c_str(), &a), 0);
    ASSERT_EQ(stat(hold.path, &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_TRUE(mpii_stage_hold_valid(&hold));
    mpii_stage_hold_close(&hold);
    EXPECT_EQ(hold.fd, -1);
    EXPECT_FALSE(mpii_stage_hold_valid(&hold));
}

TEST(StageHold, TheHeldRootIsReadWhateverIsDoneToItsName)
{
    // a process holds a staged image; the stage is replaced under the same
    // name (by anyone who can: here a rename and a new directory): the
    // process still reads the directory it checked, and sees that it is gone
    TempDir t;
    Staged s(t);
    char root[4096];
    mpii_stage_hold hold = MPII_STAGE_HOLD_INIT;
    mpii_image *index = nullptr;
    ASSERT_EQ(mpii_stage_image_load(s.shm.c_str(), s.image.c_str(), root, sizeof root, &hold, &index), MPII_OK);
    std::string r = root, aside = r + ".aside";
    ASSERT_EQ(rename(r.c_str(), aside.c_str()), 0);
    ASSERT_EQ(mkdir(r.c_str(), 0700), 0);
    ASSERT_EQ(mkdir((r + "/orig").c_str(), 0700), 0);
    ASSERT_EQ(mkdir((r + "/orig/lib").c_str(), 0700), 0);
    std::ofstream(r + "/orig/lib/liba.so") << "someone else's";
    char staged[8192];
    ASSERT_EQ(mpii_stage_image_resolve(index, hold.path, "/orig/lib/liba.so", staged, sizeof staged),
              MPII_ANSWER_STAGED);
    std::ifstream f(staged);
    std::string got((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::ifstream g(aside + "/orig/lib/liba.so");
    std::string want((std::istreambuf_iterator<char>(g)), std::istreambuf_iterator<char>());
    EXPECT_EQ(got, want);
    EXPECT_NE(got, "someone else's");
    EXPECT_TRUE(mpii_stage_hold_valid(&hold));   // renamed, not removed: still the stage checked
    // unstaging (of the directory now under the name, then of the held one) marks and removes
    ASSERT_EQ(rename(r.c_str(), (r + ".other").c_str()), 0);
    ASSERT_EQ(rename(aside.c_str(), r.c_str()), 0);
    int removed = 0;
    ASSERT_EQ(mpii_unstage_image(s.shm.c_str(), s.image.c_str(), &removed), MPII_OK);
    EXPECT_EQ(removed, 1);
    EXPECT_FALSE(mpii_stage_hold_valid(&hold));
    mpii_image_destroy(index);
    mpii_stage_hold_close(&hold);
}

TEST(StageHold, AStageReplacedByAChangedImageIsSeenAsGoing)
{
    TempDir t;
    Staged s(t);
    char root[4096];
    mpii_stage_hold hold = MPII_STAGE_HOLD_INIT;
    mpii_image *index = nullptr;
    ASSERT_EQ(mpii_stage_image_load(s.shm.c_str(), s.image.c_str(), root, sizeof root, &hold, &index), MPII_OK);
    EXPECT_TRUE(mpii_stage_hold_valid(&hold));
    // the stage's root given away (as staging a changed image does first)
    ASSERT_EQ(chmod(root, 01700), 0);
    EXPECT_FALSE(mpii_stage_hold_valid(&hold));
    mpii_image_destroy(index);
    mpii_stage_hold_close(&hold);
}

const char *no_env(void *, const char *) { return nullptr; }

TEST(StageImage, NotADirectoryNeverAnswersAFileQuestion)
{
    TempDir t;
    std::string file = t.dir + "/data.bin";
    std::ofstream(file, std::ios::binary) << "payload";
    mpii_config cfg;
    ASSERT_EQ(mpii_config_load(&cfg, no_env, nullptr, nullptr, 0), MPII_OK);
    snprintf(cfg.stage_dir, sizeof cfg.stage_dir, "%s", t.dir.c_str());
    mpii_context *ctx = nullptr;
    char err[256] = "";
    ASSERT_EQ(mpii_context_create(&cfg, &mpii_self_ops, &ctx, err, sizeof err), MPII_OK) << err;
    const mpii_entry *e = nullptr;
    unsigned flags = 0;
    ASSERT_EQ(mpii_context_listing(ctx, file.c_str(), &e, &flags), MPII_OK);
    EXPECT_EQ(e, nullptr);
    EXPECT_TRUE(flags & MPII_MISS_NOT_DIR);
    ASSERT_EQ(mpii_context_file(ctx, file.c_str(), 1, &e), MPII_OK);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->size, 7u);
    EXPECT_EQ(mpii_context_finish(ctx), MPII_OK);
    mpii_context_destroy(ctx);
}

}  // namespace

// Every directory the image lists (and every directory its listings name)
// exists in the stage; listings say which names are symbolic links; the
// image's top directories' link-ness is recorded from the real file system
// (.mpiimport/roots), as `mpiimport run`'s lstat()/readlink() need it.
TEST(StageImage, MakesListedDirectoriesAndKnowsLinks)
{
    TempDir t;
    const std::string tree = t.dir + "/tree", ltree = t.dir + "/ltree";
    ASSERT_EQ(mkdir(tree.c_str(), 0755), 0);
    ASSERT_EQ(symlink("tree", ltree.c_str()), 0);
    mpii_image *img = nullptr;
    ASSERT_EQ(mpii_image_create(&img), MPII_OK);
    const char *names[] = {"dlink", "f.so", "link.so", "sub"};
    const mpii_dirent_type types[] = {
        static_cast<mpii_dirent_type>(MPII_DIRENT_DIR | MPII_DIRENT_LINK), MPII_DIRENT_FILE,
        static_cast<mpii_dirent_type>(MPII_DIRENT_FILE | MPII_DIRENT_LINK), MPII_DIRENT_DIR};
    ASSERT_EQ(mpii_image_add_listing(img, tree.c_str(), names, types, 4), MPII_OK);
    const char *lnames[] = {"x"};
    const mpii_dirent_type ltypes[] = {MPII_DIRENT_FILE};
    ASSERT_EQ(mpii_image_add_listing(img, ltree.c_str(), lnames, ltypes, 1), MPII_OK);
    ASSERT_EQ(mpii_image_add_file(img, (tree + "/f.so").c_str(), "FF", 2, 1000000000LL, 2, 0), MPII_OK);
    const std::string image = t.dir + "/links.mpii", shm = t.dir + "/shm";
    ASSERT_EQ(mpii_image_write_file(img, image.c_str(), "links"), MPII_OK);
    // the listing's own answers: types without the flag, the flag apart
    const mpii_entry *l = mpii_image_lookup(img, MPII_ENTRY_LISTING, tree.c_str());
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(mpii_listing_find(l, "link.so"), MPII_DIRENT_FILE);
    EXPECT_EQ(mpii_listing_find(l, "dlink"), MPII_DIRENT_DIR);
    EXPECT_EQ(mpii_listing_is_link(l, "link.so"), 1);
    EXPECT_EQ(mpii_listing_is_link(l, "f.so"), 0);
    EXPECT_EQ(mpii_listing_is_link(l, "none"), -1);
    mpii_image_destroy(img);

    ASSERT_EQ(mkdir(shm.c_str(), 0700), 0);
    int already = 0;
    uint64_t files = 0, bytes = 0;
    ASSERT_EQ(mpii_stage_image(shm.c_str(), image.c_str(), 5.0, &already, &files, &bytes), MPII_OK);
    char root[4096];
    mpii_stage_hold hold = MPII_STAGE_HOLD_INIT;
    mpii_image *index = nullptr;
    ASSERT_EQ(mpii_stage_image_load(shm.c_str(), image.c_str(), root, sizeof root, &hold, &index), MPII_OK);
    struct stat sb;
    char staged_buf[8192];
    for (const char *d : {"", "/sub", "/dlink"}) {
        const std::string staged = std::string(root) + tree + d;
        EXPECT_TRUE(lstat(staged.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode)) << staged;
    }
    EXPECT_TRUE(lstat((std::string(root) + ltree).c_str(), &sb) == 0 && S_ISDIR(sb.st_mode));
    EXPECT_EQ(mpii_stage_image_is_link(index, (tree + "/link.so").c_str()), 1);
    EXPECT_EQ(mpii_stage_image_is_link(index, (tree + "/f.so").c_str()), 0);
    EXPECT_EQ(mpii_stage_image_is_link(index, (tree + "/sub").c_str()), 0);
    EXPECT_EQ(mpii_stage_image_is_link(index, (tree + "/none").c_str()), -1);
    EXPECT_EQ(mpii_stage_image_is_link(index, tree.c_str()), -1); // its parent is not listed
    // ".." after a listed symbolic link follows the link: the image cannot tell
    EXPECT_EQ(mpii_stage_image_resolve(index, root, (tree + "/dlink/../f.so").c_str(), staged_buf,
                                       sizeof staged_buf), MPII_ANSWER_UNKNOWN);
    EXPECT_EQ(mpii_stage_image_resolve(index, root, (tree + "/sub/../f.so").c_str(), staged_buf,
                                       sizeof staged_buf), MPII_ANSWER_STAGED);
    mpii_image_destroy(index);
    // the tops, from one lstat() each at staging: tree is a directory, ltree a link
    std::ifstream roots(std::string(root) + "/.mpiimport/roots");
    std::string text((std::istreambuf_iterator<char>(roots)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("d " + tree + "\n"), std::string::npos) << text;
    EXPECT_NE(text.find("l " + ltree + "\n"), std::string::npos) << text;
}
