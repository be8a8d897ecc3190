// test_buffer.cpp — mpii_buffer_alloc: small buffers are plain malloc, large
// ones 2 MiB aligned; every byte is writable and the block is free()able.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "mpiimport/buffer.h"

TEST(Buffer, ZeroLengthIsNull) { EXPECT_EQ(mpii_buffer_alloc(0), nullptr); }

TEST(Buffer, SmallAndLargeAreWritableAndFreeable)
{
    const size_t sizes[] = {1, 4095, MPII_BUFFER_HUGE_MIN - 1, MPII_BUFFER_HUGE_MIN,
                            MPII_BUFFER_HUGE_MIN + 12345, (size_t)33 << 20};
    for (size_t len : sizes) {
        auto *p = static_cast<unsigned char *>(mpii_buffer_alloc(len));
        ASSERT_NE(p, nullptr) << len;
        std::memset(p, 0xA5, len);
        EXPECT_EQ(p[0], 0xA5);
        EXPECT_EQ(p[len - 1], 0xA5);
        if (len >= MPII_BUFFER_HUGE_MIN) {
            EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % ((uintptr_t)2 << 20), 0u) << len;
        }
        std::free(p);
    }
}
