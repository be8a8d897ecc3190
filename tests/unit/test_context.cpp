// test_context.cpp — the context on the one-process transport: the root reads
// through knowledge (each directory and file once), code entries, snapshots
// (recorded lists without bytes, packed images with them), replay with its
// staleness checks, and freezing.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "mpiimport/config.h"
#include "mpiimport/context.h"
#include "mpiimport/image.h"

namespace {

const char *no_env(void *, const char *) { return nullptr; }

struct Tree {
    std::string dir;
    Tree()
    {
        char tmpl[] = "/tmp/mpii-ctx-XXXXXX";
        const char *d = mkdtemp(tmpl);
        EXPECT_NE(d, nullptr);
        dir = d ? d : "";
    }
    ~Tree() { std::string cmd = "rm -rf '" + dir + "'"; EXPECT_EQ(system(cmd.c_str()), 0); }
    std::string put(const std::string &rel, const std::string &text)
    {
        std::string p = dir + "/" + rel;
        std::ofstream(p, std::ios::binary) << text;
        return p;
    }
};

mpii_context *make_ctx(const std::string &stage)
{
    mpii_config cfg;
    EXPECT_EQ(mpii_config_load(&cfg, no_env, nullptr, nullptr, 0), MPII_OK);
    snprintf(cfg.stage_dir, sizeof cfg.stage_dir, "%s", stage.c_str());
    mpii_context *ctx = nullptr;
    char err[256] = "";
    EXPECT_EQ(mpii_context_create(&cfg, &mpii_self_ops, &ctx, err, sizeof err), MPII_OK) << err;
    return ctx;
}

void set_mtime(const std::string &path, time_t secs)
{
    struct timespec ts[2] = {{secs, 0}, {secs, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), ts, 0), 0);
}

// Whether the context knows a CODE fact for path (seen in a copy of its knowledge).
bool knows_code(mpii_context *ctx, const std::string &path)
{
    mpii_image *img = nullptr;
    EXPECT_EQ(mpii_context_snapshot(ctx, 1, &img), MPII_OK);
    bool known = img != nullptr && mpii_image_lookup(img, MPII_ENTRY_CODE, path.c_str()) != nullptr;
    mpii_image_destroy(img);
    return known;
}

TEST(Context, RootReadsEachFactOnceThenAnswersFromKnowledge)
{
    Tree t;
    t.put("a.py", "A = 1\n");
    mpii_context *ctx = make_ctx(t.dir);
    ASSERT_NE(ctx, nullptr);
    const mpii_entry *e = nullptr;
    ASSERT_EQ(mpii_context_listing(ctx, t.dir.c_str(), &e, nullptr), MPII_OK);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(mpii_listing_find(e, "a.py"), MPII_DIRENT_FILE);
    uint64_t calls = mpii_context_stats(ctx)->fs_calls;
    EXPECT_GT(calls, 0u);
    ASSERT_EQ(mpii_context_listing(ctx, t.dir.c_str(), &e, nullptr), MPII_OK);
    ASSERT_EQ(mpii_context_file(ctx, (t.dir + "/a.py").c_str(), 1, &e), MPII_OK);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(std::string((const char *)e->data, e->data_len), "A = 1\n");
    uint64_t after_file = mpii_context_stats(ctx)->fs_calls;
    ASSERT_EQ(mpii_context_file(ctx, (t.dir + "/a.py").c_str(), 1, &e), MPII_OK);
    ASSERT_EQ(mpii_context_file(ctx, (t.dir + "/missing.py").c_str(), 0, &e), MPII_OK);
    EXPECT_EQ(e, nullptr);
    uint64_t after_miss = mpii_context_stats(ctx)->fs_calls;
    ASSERT_EQ(mpii_context_file(ctx, (t.dir + "/missing.py").c_str(), 0, &e), MPII_OK);
    EXPECT_EQ(e, nullptr);
    EXPECT_EQ(mpii_context_stats(ctx)->fs_calls, after_miss);  // the miss is remembered
    EXPECT_GT(after_file, calls);
    EXPECT_EQ(mpii_context_finish(ctx), MPII_OK);
    mpii_context_destroy(ctx);
}

TEST(Context, SourceCodeAsksForCompileThenUsesTheCode)
{
    Tree t;
    std::string src = t.put("m.py", "X = 2\n");
    mpii_context *ctx = make_ctx(t.dir);
    const uint8_t magic[4] = {0xa7, 0x0d, 0x0d, 0x0a};
    mpii_code_kind kind;
    const mpii_entry *s = nullptr, *c = nullptr;
    std::string pyc = t.dir + "/__pycache__/m.cpython-311.pyc";
    ASSERT_EQ(mpii_context_source_code(ctx, magic, src.c_str(), pyc.c_str(), &kind, &s, &c), MPII_OK);
    EXPECT_EQ(kind, MPII_CODE_COMPILE_NEEDED);
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(mpii_context_add_code(ctx, src.c_str(), "code", 4, s->mtime_ns, s->size), MPII_OK);
    ASSERT_EQ(mpii_context_source_code(ctx, magic, src.c_str(), pyc.c_str(), &kind, &s, &c), MPII_OK);
    EXPECT_EQ(kind, MPII_CODE_COMPILED);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(std::string((const char *)c->data, c->data_len), "code");
    mpii_context_destroy(ctx);
}

TEST(Context, PackedImageReplaysUnchangedAndRereadsChanged)
{
    Tree t;
    std::string a = t.put("a.py", "A = 1\n"), b = t.put("b.so", "binary");
    set_mtime(a, 1000000);
    set_mtime(b, 1000000);
    std::string image = t.dir + "/app.mpii";
    {
        mpii_context *ctx = make_ctx(t.dir);
        const mpii_entry *e;
        ASSERT_EQ(mpii_context_listing(ctx, t.dir.c_str(), &e, nullptr), MPII_OK);
        ASSERT_EQ(mpii_context_file(ctx, a.c_str(), 0, &e), MPII_OK);
        ASSERT_EQ(mpii_context_file(ctx, b.c_str(), 1, &e), MPII_OK);
        mpii_image *snap = nullptr;
        ASSERT_EQ(mpii_context_snapshot(ctx, 1, &snap), MPII_OK);
        ASSERT_EQ(mpii_image_write_file(snap, image.c_str(), "test"), MPII_OK);
        mpii_image_destroy(snap);
        mpii_context_destroy(ctx);
    }
    mpii_image *img = nullptr;
    ASSERT_EQ(mpii_image_read_file(image.c_str(), &img, nullptr, 0), MPII_OK);
    // the image file itself changed the directory: the listing is stale, the files are not
    {
        mpii_context *ctx = make_ctx(t.dir);
        uint64_t reused = 0, reread = 0;
        ASSERT_EQ(mpii_context_replay(ctx, img, 0, &reused, &reread), MPII_OK);
        EXPECT_EQ(reused, 2u);
        EXPECT_EQ(reread, 1u);
        mpii_context_destroy(ctx);
    }
    // a changed file is read again: the new bytes win
    std::ofstream(b, std::ios::binary) << "changed binary";
    {
        mpii_context *ctx = make_ctx(t.dir);
        uint64_t reused = 0, reread = 0;
        ASSERT_EQ(mpii_context_replay(ctx, img, 0, &reused, &reread), MPII_OK);
        EXPECT_EQ(reread, 2u);
        const mpii_entry *e = nullptr;
        uint64_t calls = mpii_context_stats(ctx)->fs_calls;
        ASSERT_EQ(mpii_context_file(ctx, b.c_str(), 1, &e), MPII_OK);
        ASSERT_NE(e, nullptr);
        EXPECT_EQ(std::string((const char *)e->data, e->data_len), "changed binary");
        EXPECT_EQ(mpii_context_stats(ctx)->fs_calls, calls);  // served from the replay
        mpii_context_destroy(ctx);
    }
    // trusted: nothing is checked, the old bytes are used as they are
    {
        mpii_context *ctx = make_ctx(t.dir);
        uint64_t reused = 0, reread = 0;
        ASSERT_EQ(mpii_context_replay(ctx, img, MPII_REPLAY_TRUST, &reused, &reread), MPII_OK);
        EXPECT_EQ(reread, 0u);
        EXPECT_EQ(mpii_context_stats(ctx)->fs_calls, 0u);
        mpii_context_destroy(ctx);
    }
    mpii_image_destroy(img);
}

TEST(Context, RecordedListHoldsNoBytesAndRereadsEveryFile)
{
    Tree t;
    std::string b = t.put("b.so", "binary");
    mpii_context *ctx = make_ctx(t.dir);
    const mpii_entry *e;
    ASSERT_EQ(mpii_context_file(ctx, b.c_str(), 1, &e), MPII_OK);
    mpii_image *list = nullptr;
    ASSERT_EQ(mpii_context_snapshot(ctx, 0, &list), MPII_OK);
    const mpii_entry *le = mpii_image_lookup(list, MPII_ENTRY_FILE, b.c_str());
    ASSERT_NE(le, nullptr);
    EXPECT_EQ(le->data_len, 0u);
    EXPECT_TRUE(le->flags & MPII_FILE_DATA_OMITTED);
    mpii_context_destroy(ctx);
    ctx = make_ctx(t.dir);
    uint64_t reused = 0, reread = 0;
    ASSERT_EQ(mpii_context_replay(ctx, list, 0, &reused, &reread), MPII_OK);
    EXPECT_EQ(reread, 1u);
    ASSERT_EQ(mpii_context_file(ctx, b.c_str(), 1, &e), MPII_OK);
    EXPECT_EQ(std::string((const char *)e->data, e->data_len), "binary");
    mpii_image_destroy(list);
    mpii_context_destroy(ctx);
}

TEST(Context, FrozenRootStopsSending)
{
    Tree t;
    t.put("a.py", "A\n");
    mpii_context *ctx = make_ctx(t.dir);
    mpii_context_freeze(ctx);
    EXPECT_TRUE(mpii_context_frozen(ctx));
    const mpii_entry *e;
    ASSERT_EQ(mpii_context_listing(ctx, t.dir.c_str(), &e, nullptr), MPII_OK);
    ASSERT_EQ(mpii_context_flush_always(ctx, "x"), MPII_OK);
    EXPECT_EQ(mpii_context_stats(ctx)->bcast_count, 0u);
    EXPECT_EQ(mpii_context_finish(ctx), MPII_OK);
    mpii_context_destroy(ctx);
}

TEST(Context, ForgetMakesTheRootReadAFileAgain)
{
    Tree t;
    std::string a = t.put("a.py", "A = 1\n");
    mpii_context *ctx = make_ctx(t.dir);
    const mpii_entry *e = nullptr;
    ASSERT_EQ(mpii_context_file(ctx, a.c_str(), 1, &e), MPII_OK);
    ASSERT_EQ(mpii_context_add_code(ctx, a.c_str(), "code", 4, e->mtime_ns, e->size), MPII_OK);
    std::ofstream(a, std::ios::binary) << "A = 'changed'\n";
    ASSERT_EQ(mpii_context_file(ctx, a.c_str(), 1, &e), MPII_OK);
    EXPECT_EQ(std::string((const char *)e->data, e->data_len), "A = 1\n");  // knowledge, not the disk
    mpii_context_forget(ctx, a.c_str());
    EXPECT_FALSE(knows_code(ctx, a));  // the code went with the file
    uint64_t calls = mpii_context_stats(ctx)->fs_calls;
    ASSERT_EQ(mpii_context_file(ctx, a.c_str(), 1, &e), MPII_OK);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(std::string((const char *)e->data, e->data_len), "A = 'changed'\n");
    EXPECT_GT(mpii_context_stats(ctx)->fs_calls, calls);
    mpii_context_forget(ctx, (t.dir + "/never-known").c_str());  // harmless
    mpii_context_destroy(ctx);
}

TEST(Context, ReplayKeepsAMissThatStillHolds)
{
    Tree t;
    std::string file = t.put("f.py", "F\n");
    std::string gone = t.dir + "/gone.py";
    mpii_image *img = nullptr;
    ASSERT_EQ(mpii_image_create(&img), MPII_OK);
    ASSERT_EQ(mpii_image_add_miss(img, gone.c_str(), 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_miss(img, file.c_str(), MPII_MISS_NOT_DIR), MPII_OK);  // not a directory
    {
        mpii_context *ctx = make_ctx(t.dir);
        uint64_t reused = 0, reread = 0;
        ASSERT_EQ(mpii_context_replay(ctx, img, 0, &reused, &reread), MPII_OK);
        EXPECT_EQ(reused, 2u);
        EXPECT_EQ(reread, 0u);
        mpii_context_destroy(ctx);
    }
    // the missing file appeared: read afresh, its bytes known
    t.put("gone.py", "back\n");
    {
        mpii_context *ctx = make_ctx(t.dir);
        uint64_t reused = 0, reread = 0;
        ASSERT_EQ(mpii_context_replay(ctx, img, 0, &reused, &reread), MPII_OK);
        EXPECT_EQ(reread, 1u);
        const mpii_entry *e = nullptr;
        ASSERT_EQ(mpii_context_file(ctx, gone.c_str(), 1, &e), MPII_OK);
        ASSERT_NE(e, nullptr);
        EXPECT_EQ(std::string((const char *)e->data, e->data_len), "back\n");
        mpii_context_destroy(ctx);
    }
    mpii_image_destroy(img);
}

TEST(ImageFile, AFifoOrADirectoryIsRefusedAtOnce)
{
    Tree t;
    std::string fifo = t.dir + "/image.fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    mpii_image *img = nullptr;
    // no writer: a blocking open() would never return
    EXPECT_EQ(mpii_image_read_file(fifo.c_str(), &img, nullptr, 0), MPII_ERR_NOTREG);
    EXPECT_EQ(mpii_image_read_file(t.dir.c_str(), &img, nullptr, 0), MPII_ERR_NOTREG);
    EXPECT_EQ(mpii_image_read_file("/dev/null", &img, nullptr, 0), MPII_ERR_NOTREG);
    EXPECT_EQ(mpii_image_read_file((t.dir + "/none").c_str(), &img, nullptr, 0), MPII_ERR_NOTFOUND);
    EXPECT_EQ(img, nullptr);
    EXPECT_STREQ(mpii_strerror(MPII_ERR_NOTREG), "not a regular file");
}

TEST(Context, AFifoUnderAServedDirectoryIsNotAFileAndDoesNotBlock)
{
    // rank 0 asked for the bytes of a FIFO (a data "file" of a package, a
    // named pipe in the program's tree): no writer, so a blocking open()
    // would never return; it is answered as no regular file
    Tree t;
    std::string fifo = t.dir + "/data.fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    mpii_context *ctx = make_ctx(t.dir);
    ASSERT_NE(ctx, nullptr);
    const mpii_entry *e = nullptr;
    ASSERT_EQ(mpii_context_file(ctx, fifo.c_str(), 1, &e), MPII_OK);
    EXPECT_EQ(e, nullptr);
    ASSERT_EQ(mpii_context_file(ctx, "/dev/null", 1, &e), MPII_OK);
    EXPECT_EQ(e, nullptr);
    EXPECT_EQ(mpii_context_finish(ctx), MPII_OK);
    mpii_context_destroy(ctx);
}

TEST(Context, ARecordedListIsFactsOnly)
{
    // a list file crafted to carry code and bytes (as another user could):
    // replayed as a list, neither is used; the files on disk are read
    Tree t;
    std::string a = t.put("a.py", "A = 'on disk'\n");
    struct stat sb;
    ASSERT_EQ(stat(a.c_str(), &sb), 0);
    int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    mpii_image *list = nullptr;
    ASSERT_EQ(mpii_image_create(&list), MPII_OK);
    std::string evil = "A = 'planted'\n";  // the same size as the file, so size and mtime match
    evil.resize((size_t)sb.st_size, ' ');
    ASSERT_EQ(mpii_image_add_file(list, a.c_str(), evil.data(), evil.size(), mtime, evil.size(), 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_code(list, a.c_str(), "evil code", 9, mtime, (uint64_t)sb.st_size), MPII_OK);
    mpii_context *ctx = make_ctx(t.dir);
    uint64_t reused = 0, reread = 0;
    ASSERT_EQ(mpii_context_replay(ctx, list, MPII_REPLAY_FACTS_ONLY, &reused, &reread), MPII_OK);
    EXPECT_EQ(reread, 1u);
    EXPECT_FALSE(knows_code(ctx, a));
    const mpii_entry *e = nullptr;
    ASSERT_EQ(mpii_context_file(ctx, a.c_str(), 1, &e), MPII_OK);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(std::string((const char *)e->data, e->data_len), "A = 'on disk'\n");
    mpii_context_destroy(ctx);
    // the same file as a packed image (which is code, and says so): used as it is
    ctx = make_ctx(t.dir);
    ASSERT_EQ(mpii_context_replay(ctx, list, 0, &reused, &reread), MPII_OK);
    EXPECT_TRUE(knows_code(ctx, a));
    mpii_context_destroy(ctx);
    mpii_image_destroy(list);
}

}  // namespace
