// test_context_threads.cpp — the context's one lock: a non-root rank's
// receive merges messages (knowledge grows: its entries move) while another
// thread reads entries under mpii_context_lock(). Fed by a test transport
// that plays rank 1 of 2 and hands out prepared messages. Without the lock
// around the merge, the reader touches freed memory (ASan in CI reports it;
// without ASan, the bytes read go wrong).
#include <gtest/gtest.h>

#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "mpiimport/config.h"
#include "mpiimport/context.h"
#include "mpiimport/image.h"

namespace {

std::vector<std::vector<uint8_t>> g_messages;  // what the fake root sends, in order
std::atomic<size_t> g_next{0};

struct mpii_transport_fake {
    int unused;
};

mpii_status fake_init(const mpii_transport_options *, mpii_transport **out, char *, size_t)
{
    *out = reinterpret_cast<mpii_transport *>(new mpii_transport_fake());
    return MPII_OK;
}
int fake_rank(const mpii_transport *) { return 1; }
int fake_size(const mpii_transport *) { return 2; }
mpii_status fake_node_info(const mpii_transport *, mpii_node_info *info)
{
    *info = mpii_node_info{1, 2, 0, 1};  // the leader of node 1: it receives over the transport
    return MPII_OK;
}
mpii_status fake_bcast_start(mpii_transport *, int, const void *, size_t, mpii_bcast_req **req)
{
    *req = reinterpret_cast<mpii_bcast_req *>(&g_next);  // never dereferenced
    return MPII_OK;
}
mpii_status fake_bcast_wait(mpii_transport *, mpii_bcast_req *, double, void **buf, size_t *len)
{
    size_t i = g_next.fetch_add(1);
    if (i >= g_messages.size())
        return MPII_ERR_TIMEOUT;
    *len = g_messages[i].size();
    *buf = malloc(*len);
    if (*buf == nullptr)
        return MPII_ERR_NOMEM;
    memcpy(*buf, g_messages[i].data(), *len);
    return MPII_OK;
}
mpii_status fake_barrier(mpii_transport *, double) { return MPII_OK; }
void fake_finalize(mpii_transport *t) { delete reinterpret_cast<mpii_transport_fake *>(t); }

mpii_status fake_group_bcast_start(mpii_transport *t, int, const void *buf, size_t len, mpii_bcast_req **req)
{
    return fake_bcast_start(t, 0, buf, len, req);
}

const mpii_transport_ops fake_ops = {"fake",          fake_init,       fake_rank,
                                     fake_size,       fake_node_info,  fake_bcast_start,
                                     fake_bcast_wait, fake_group_bcast_start, fake_barrier,
                                     fake_barrier,    fake_finalize,   0};

const char *no_env(void *, const char *) { return nullptr; }

std::string path_of(int message, int i) { return "/shared/m" + std::to_string(message) + "/f" + std::to_string(i); }

TEST(ContextThreads, ReadsUnderTheLockWhileReceiveMerges)
{
    const int messages = 80, per_message = 200;
    g_messages.clear();
    g_next = 0;
    std::vector<uint8_t> hello(16, 0);
    memcpy(hello.data(), "MPIIHELO", 8);
    g_messages.push_back(hello);
    for (int m = 0; m < messages; m++) {
        mpii_image *img = nullptr;
        ASSERT_EQ(mpii_image_create(&img), MPII_OK);
        for (int i = 0; i < per_message; i++) {
            std::string p = path_of(m, i);
            ASSERT_EQ(mpii_image_add_file(img, p.c_str(), p.data(), p.size(), i, p.size(), 0), MPII_OK);
            // every message also re-sends what the reader reads: each merge
            // replaces (frees) the entries it is looking at
            std::string q = path_of(0, i);
            ASSERT_EQ(mpii_image_add_file(img, q.c_str(), q.data(), q.size(), i, q.size(), 0), MPII_OK);
        }
        uint8_t *buf = nullptr;
        size_t len = 0;
        ASSERT_EQ(mpii_image_serialize(img, (uint64_t)m + 1, "m", &buf, &len), MPII_OK);
        g_messages.emplace_back(buf, buf + len);
        free(buf);
        mpii_image_destroy(img);
    }
    mpii_config cfg;
    ASSERT_EQ(mpii_config_load(&cfg, no_env, nullptr, nullptr, 0), MPII_OK);
    char stage_tmpl[] = "/tmp/mpii-threads-XXXXXX";  // the node's stage (serve.c) goes here
    ASSERT_NE(mkdtemp(stage_tmpl), nullptr);
    snprintf(cfg.stage_dir, sizeof cfg.stage_dir, "%s", stage_tmpl);
    mpii_context *ctx = nullptr;
    char err[256] = "";
    ASSERT_EQ(mpii_context_create(&cfg, &fake_ops, &ctx, err, sizeof err), MPII_OK) << err;
    ASSERT_EQ(mpii_context_receive(ctx, 1.0, nullptr, 0), MPII_OK);  // message 0 known first

    std::atomic<bool> done{false};
    std::atomic<long> reads{0}, wrong{0};
    std::atomic<bool> reading{false};
    std::thread reader([&] {
        while (!done.load()) {
            for (int i = 0; i < per_message; i += 7) {
                std::string p = path_of(0, i);
                mpii_context_lock(ctx);
                const mpii_entry *e = mpii_context_lookup(ctx, p.c_str());
                const uint8_t *data = nullptr;
                size_t len = 0;
                void *owned = nullptr;
                if (e == nullptr || e->mtime_ns != i ||
                    mpii_context_entry_bytes(ctx, e, &data, &len, &owned) != MPII_OK || len != p.size() ||
                    memcmp(data, p.data(), p.size()) != 0)
                    wrong++;
                free(owned);
                mpii_context_unlock(ctx);
                reads++;
                reading = true;
            }
        }
    });
    while (!reading.load())
        std::this_thread::yield();
    for (int m = 1; m < messages; m++)
        ASSERT_EQ(mpii_context_receive(ctx, 1.0, nullptr, 0), MPII_OK);
    done = true;
    reader.join();
    EXPECT_GT(reads.load(), 0);
    EXPECT_EQ(wrong.load(), 0);
    for (int m = 0; m < messages; m++)
        EXPECT_NE(mpii_context_lookup(ctx, path_of(m, per_message - 1).c_str()), nullptr);
    mpii_context_destroy(ctx);
    std::string rm = std::string("rm -rf '") + stage_tmpl + "'";
    EXPECT_EQ(system(rm.c_str()), 0);
}

}  // namespace
