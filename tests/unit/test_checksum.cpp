// test_checksum.cpp — unit tests of mpii_checksum64 (core/src/checksum.c):
// published XXH64 vectors, agreement with the system's libxxhash (an
// independent implementation, loaded with dlopen when present) over every
// short length, many seeds, unaligned input and 1 MiB, and the sensitivity
// that makes it useful as a wire checksum (one flipped bit, the seed, the
// length all change the result).
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "mpiimport/checksum.h"

namespace {

std::vector<uint8_t> pseudo_random_bytes(size_t n, uint64_t seed)
{
    std::vector<uint8_t> v(n);
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = static_cast<uint8_t>(x >> 24);
    }
    return v;
}

uint64_t cs(const std::string &s, uint64_t seed = 0)
{
    return mpii_checksum64(s.data(), s.size(), seed);
}

using xxh64_fn = unsigned long long (*)(const void *, size_t, unsigned long long);

// The XXH64 of the system's libxxhash (Debian: libxxhash0, which apt itself
// depends on), or nullptr when it cannot be loaded.
xxh64_fn system_xxh64()
{
    static xxh64_fn fn = [] {
        void *h = dlopen("libxxhash.so.0", RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr)
            return static_cast<xxh64_fn>(nullptr);
        void *sym = dlsym(h, "XXH64");
        xxh64_fn f;
        static_assert(sizeof f == sizeof sym, "function pointer size");
        std::memcpy(&f, &sym, sizeof f);
        return f;
    }();
    return fn;
}

} // namespace

TEST(Checksum, KnownXxh64VectorsOfShortInputs)
{
    EXPECT_EQ(mpii_checksum64("", 0, 0), 0xEF46DB3751D8E999ULL);
    EXPECT_EQ(mpii_checksum64(nullptr, 0, 0), 0xEF46DB3751D8E999ULL);
    EXPECT_EQ(cs("a"), 0xD24EC4F1A98C6E5BULL);
    EXPECT_EQ(cs("abc"), 0x44BC2CF5AD770999ULL);
}

TEST(Checksum, KnownXxh64VectorsWithSeedAndLongInput)
{
    // The examples of the python-xxhash documentation.
    EXPECT_EQ(cs("xxhash"), 0x32DD38952C4BC720ULL);
    EXPECT_EQ(cs("xxhash", 20141025), 0xB559B98D844E0635ULL);
    // 39 bytes: one 32-byte stripe through the four lanes, then the tail.
    const std::string spam = "Nobody inspects the spammish repetition";
    ASSERT_GT(spam.size(), 32u);
    EXPECT_EQ(cs(spam), 0xFBCEA83C8A378BF1ULL);
}

TEST(Checksum, MatchesSystemLibxxhashForEveryShortLengthAndSeed)
{
    xxh64_fn ref = system_xxh64();
    if (ref == nullptr)
        GTEST_SKIP() << "libxxhash.so.0 not loadable";
    const std::vector<uint8_t> data = pseudo_random_bytes(300, 7);
    const uint64_t seeds[] = {0, 1, 20141025, 0x9E3779B185EBCA87ULL, ~0ULL};
    for (uint64_t seed : seeds)
        for (size_t len = 0; len <= data.size(); len++) {
            // An exact-size copy, so ASan sees any read past len.
            std::vector<uint8_t> exact(data.begin(), data.begin() + static_cast<long>(len));
            ASSERT_EQ(mpii_checksum64(exact.data(), len, seed), ref(exact.data(), len, seed))
                << "len " << len << " seed " << seed;
        }
}

TEST(Checksum, MatchesSystemLibxxhashOnUnalignedInputAndOneMebibyte)
{
    xxh64_fn ref = system_xxh64();
    if (ref == nullptr)
        GTEST_SKIP() << "libxxhash.so.0 not loadable";
    const std::vector<uint8_t> big = pseudo_random_bytes((1u << 20) + 16, 3);
    for (size_t off = 0; off < 8; off++) {
        const size_t len = (1u << 20) + 5 - off;
        EXPECT_EQ(mpii_checksum64(big.data() + off, len, 42), ref(big.data() + off, len, 42))
            << "offset " << off;
    }
    EXPECT_EQ(mpii_checksum64(big.data(), 1u << 20, 0), ref(big.data(), 1u << 20, 0));
}

TEST(Checksum, ReadsNothingPastLength)
{
    // The same bytes followed by different garbage give the same checksum.
    const std::vector<uint8_t> a = pseudo_random_bytes(200, 11);
    std::vector<uint8_t> b = a;
    for (size_t i = 100; i < b.size(); i++)
        b[i] ^= 0x5A;
    for (size_t len = 0; len <= 100; len++)
        ASSERT_EQ(mpii_checksum64(a.data(), len, 9), mpii_checksum64(b.data(), len, 9)) << len;
}

TEST(Checksum, SingleFlippedBitInOneMebibyteChangesChecksum)
{
    std::vector<uint8_t> buf = pseudo_random_bytes(1u << 20, 5);
    const uint64_t base = mpii_checksum64(buf.data(), buf.size(), 0);
    EXPECT_EQ(mpii_checksum64(buf.data(), buf.size(), 0), base) << "not deterministic";
    // Positions in the first stripe, each lane, the middle, and the tail.
    const size_t positions[] = {0, 8, 16, 24, 31, 32, 4096, buf.size() / 2 + 3,
                                buf.size() - 33, buf.size() - 9, buf.size() - 1};
    for (size_t pos : positions)
        for (int bit = 0; bit < 8; bit++) {
            buf[pos] ^= static_cast<uint8_t>(1u << bit);
            EXPECT_NE(mpii_checksum64(buf.data(), buf.size(), 0), base)
                << "byte " << pos << " bit " << bit;
            buf[pos] ^= static_cast<uint8_t>(1u << bit);
        }
    EXPECT_EQ(mpii_checksum64(buf.data(), buf.size(), 0), base);
}

TEST(Checksum, EveryFlippedBitOfShortInputChangesChecksum)
{
    // Inputs shorter than a stripe go through the 8-, 4- and 1-byte tails.
    for (size_t len = 1; len <= 40; len++) {
        std::vector<uint8_t> buf = pseudo_random_bytes(len, len);
        const uint64_t base = mpii_checksum64(buf.data(), len, 0);
        for (size_t pos = 0; pos < len; pos++)
            for (int bit = 0; bit < 8; bit++) {
                buf[pos] ^= static_cast<uint8_t>(1u << bit);
                ASSERT_NE(mpii_checksum64(buf.data(), len, 0), base)
                    << "len " << len << " byte " << pos << " bit " << bit;
                buf[pos] ^= static_cast<uint8_t>(1u << bit);
            }
    }
}

TEST(Checksum, DifferentSeedsGiveDifferentChecksums)
{
    const std::vector<uint8_t> big = pseudo_random_bytes(1u << 20, 8);
    const size_t lens[] = {0, 1, 5, 31, 32, 100, big.size()};
    for (size_t len : lens) {
        const uint64_t s0 = mpii_checksum64(big.data(), len, 0);
        EXPECT_NE(s0, mpii_checksum64(big.data(), len, 1)) << len;
        EXPECT_NE(s0, mpii_checksum64(big.data(), len, ~0ULL)) << len;
        EXPECT_NE(mpii_checksum64(big.data(), len, 1), mpii_checksum64(big.data(), len, 2)) << len;
    }
}

TEST(Checksum, LengthIsPartOfTheChecksum)
{
    // All-zero buffers differ only in length.
    const std::vector<uint8_t> zeros(130, 0);
    for (size_t len = 0; len < 129; len++)
        EXPECT_NE(mpii_checksum64(zeros.data(), len, 0), mpii_checksum64(zeros.data(), len + 1, 0))
            << len;
}
