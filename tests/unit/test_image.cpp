// test_image.cpp — unit tests of the image (core/src/image.c): adding and
// looking up entries of each kind, replacement, listings (sorting, lookup,
// duplicates), merge, data-byte accounting, the serialise/parse round trip,
// and the parser's defences: every truncation, every flipped byte, magic,
// version, trailing bytes, and hand-crafted images whose checksum is right
// but whose structure is not.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mpiimport/checksum.h"
#include "mpiimport/image.h"
#include "mpiimport/status.h"

namespace {

struct ImageDeleter {
    void operator()(mpii_image *img) const { mpii_image_destroy(img); }
};
using ImagePtr = std::unique_ptr<mpii_image, ImageDeleter>;

ImagePtr new_image()
{
    mpii_image *img = nullptr;
    EXPECT_EQ(mpii_image_create(&img), MPII_OK);
    EXPECT_NE(img, nullptr);
    return ImagePtr(img);
}

std::vector<uint8_t> pattern(size_t n, unsigned seed)
{
    std::vector<uint8_t> v(n);
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        v[i] = static_cast<uint8_t>(x >> 16);
    }
    return v;
}

std::string data_of(const mpii_entry *e)
{
    return e->data_len ? std::string(reinterpret_cast<const char *>(e->data), e->data_len)
                       : std::string();
}

struct Serialized {
    uint8_t *buf = nullptr;
    size_t len = 0;
    ~Serialized() { std::free(buf); }
    std::vector<uint8_t> bytes() const { return std::vector<uint8_t>(buf, buf + len); }
};

void serialize(const mpii_image *img, uint64_t seq, const char *label, Serialized *out)
{
    ASSERT_EQ(mpii_image_serialize(img, seq, label, &out->buf, &out->len), MPII_OK);
    ASSERT_NE(out->buf, nullptr);
}

// Parses from an exact-size heap copy, so ASan sees any read past the end.
mpii_status parse_copy(const std::vector<uint8_t> &bytes, ImagePtr *out, uint64_t *seq = nullptr,
                       char *label = nullptr, size_t label_cap = 0)
{
    std::unique_ptr<uint8_t[]> copy(bytes.empty() ? nullptr : new uint8_t[bytes.size()]);
    if (!bytes.empty())
        std::memcpy(copy.get(), bytes.data(), bytes.size());
    mpii_image *img = reinterpret_cast<mpii_image *>(0x1); // must be reset by parse
    mpii_status st = mpii_image_parse(copy.get(), bytes.size(), &img, seq, label, label_cap);
    if (st != MPII_OK) {
        EXPECT_EQ(img, nullptr) << "parse failed but left *out set";
    }
    out->reset(st == MPII_OK ? img : nullptr);
    return st;
}

bool is_parse_error(mpii_status st)
{
    return st == MPII_ERR_TRUNCATED || st == MPII_ERR_CORRUPT || st == MPII_ERR_CHECKSUM ||
           st == MPII_ERR_VERSION;
}

// Every field of every entry of a is in b, and the counts agree.
void expect_same_entries(const mpii_image *a, const mpii_image *b)
{
    ASSERT_EQ(mpii_image_count(a), mpii_image_count(b));
    EXPECT_EQ(mpii_image_data_bytes(a), mpii_image_data_bytes(b));
    for (size_t i = 0; i < mpii_image_count(a); i++) {
        const mpii_entry *x = mpii_image_entry_at(a, i);
        ASSERT_NE(x, nullptr);
        const mpii_entry *y = mpii_image_lookup(b, x->kind, x->path);
        ASSERT_NE(y, nullptr) << "kind " << x->kind << " " << x->path;
        EXPECT_EQ(y->kind, x->kind);
        EXPECT_EQ(y->flags, x->flags) << x->path;
        EXPECT_STREQ(y->path, x->path);
        EXPECT_EQ(y->path_len, x->path_len);
        EXPECT_EQ(y->data_len, x->data_len) << x->path;
        EXPECT_TRUE(data_of(x) == data_of(y)) << "data differs for " << x->path;
        EXPECT_EQ(y->mtime_ns, x->mtime_ns) << x->path;
        EXPECT_EQ(y->size, x->size) << x->path;
    }
}

// A small image with one entry of each kind.
ImagePtr small_image()
{
    ImagePtr img = new_image();
    EXPECT_EQ(mpii_image_add_file(img.get(), "/s/a.py", "x = 1\n", 6, 1700000000123456789LL, 6, 0),
              MPII_OK);
    const char *names[] = {"b", "a.py"};
    const mpii_dirent_type types[] = {MPII_DIRENT_DIR, MPII_DIRENT_FILE};
    EXPECT_EQ(mpii_image_add_listing(img.get(), "/s", names, types, 2), MPII_OK);
    EXPECT_EQ(mpii_image_add_miss(img.get(), "/m", MPII_MISS_NOT_DIR), MPII_OK);
    EXPECT_EQ(mpii_image_add_code(img.get(), "/s/a.py", "\xe3" "code", 5, 7, 6), MPII_OK);
    return img;
}

// ---- hand-crafted wire images ----

void put_le(std::vector<uint8_t> &v, uint64_t x, int bytes)
{
    for (int i = 0; i < bytes; i++)
        v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}

struct CraftedEntry {
    uint8_t kind = MPII_ENTRY_FILE;
    uint8_t reserved = 0;
    uint16_t flags = 0;
    std::string path = "/p";
    std::string data = "DATA";
    int64_t mtime = 5;
    uint64_t size = 4;
    // When set, written instead of the true lengths.
    bool fake_path_len = false;
    uint32_t path_len = 0;
    bool fake_data_len = false;
    uint64_t data_len = 0;
};

// Header + payload with a correct checksum, seeded exactly as image.c does:
// seed = checksum(header[0..40), 0), checksum = checksum(payload, seed).
std::vector<uint8_t> craft(const std::vector<CraftedEntry> &entries, uint64_t count,
                           const std::string &label = "", bool fake_label_len = false,
                           uint16_t label_len = 0)
{
    std::vector<uint8_t> payload;
    put_le(payload, fake_label_len ? label_len : label.size(), 2);
    payload.insert(payload.end(), label.begin(), label.end());
    for (const CraftedEntry &e : entries) {
        payload.push_back(e.kind);
        payload.push_back(e.reserved);
        put_le(payload, e.flags, 2);
        put_le(payload, e.fake_path_len ? e.path_len : e.path.size(), 4);
        put_le(payload, e.fake_data_len ? e.data_len : e.data.size(), 8);
        put_le(payload, static_cast<uint64_t>(e.mtime), 8);
        put_le(payload, e.size, 8);
        payload.insert(payload.end(), e.path.begin(), e.path.end());
        payload.insert(payload.end(), e.data.begin(), e.data.end());
    }
    std::vector<uint8_t> buf = {'M', 'P', 'I', 'I', 'M', 'G', '\r', '\n'};
    put_le(buf, MPII_IMAGE_VERSION, 4);
    put_le(buf, 0, 4);
    put_le(buf, 77, 8); // sequence
    put_le(buf, count, 8);
    put_le(buf, payload.size(), 8);
    const uint64_t seed = mpii_checksum64(buf.data(), 40, 0);
    put_le(buf, mpii_checksum64(payload.data(), payload.size(), seed), 8);
    EXPECT_EQ(buf.size(), MPII_IMAGE_HEADER_SIZE);
    buf.insert(buf.end(), payload.begin(), payload.end());
    return buf;
}

// Recomputes the header checksum after the test edited header or payload.
void reseal(std::vector<uint8_t> &buf)
{
    const uint64_t seed = mpii_checksum64(buf.data(), 40, 0);
    const uint64_t sum =
        mpii_checksum64(buf.data() + MPII_IMAGE_HEADER_SIZE, buf.size() - MPII_IMAGE_HEADER_SIZE, seed);
    for (int i = 0; i < 8; i++)
        buf[40 + i] = static_cast<uint8_t>(sum >> (8 * i));
}

} // namespace

// ---- in-memory image ----

TEST(Image, CreateRejectsNullAndStartsEmpty)
{
    EXPECT_EQ(mpii_image_create(nullptr), MPII_ERR_INVALID);
    ImagePtr img = new_image();
    EXPECT_EQ(mpii_image_count(img.get()), 0u);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 0u);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/x"), nullptr);
    EXPECT_EQ(mpii_image_entry_at(img.get(), 0), nullptr);
}

TEST(Image, AddAndLookupEachKindAtTheSamePath)
{
    ImagePtr img = new_image();
    const char *path = "/usr/lib/python3/x";
    ASSERT_EQ(mpii_image_add_file(img.get(), path, "filebytes", 9, -123, 9, 0), MPII_OK);
    const char *names[] = {"n"};
    const mpii_dirent_type types[] = {MPII_DIRENT_FILE};
    ASSERT_EQ(mpii_image_add_listing(img.get(), path, names, types, 1), MPII_OK);
    ASSERT_EQ(mpii_image_add_miss(img.get(), path, MPII_MISS_NOT_DIR), MPII_OK);
    ASSERT_EQ(mpii_image_add_code(img.get(), path, "codebytes!", 10, 99, 1234), MPII_OK);
    EXPECT_EQ(mpii_image_count(img.get()), 4u);

    const mpii_entry *f = mpii_image_lookup(img.get(), MPII_ENTRY_FILE, path);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->kind, MPII_ENTRY_FILE);
    EXPECT_STREQ(f->path, path);
    EXPECT_EQ(f->path_len, std::strlen(path));
    EXPECT_EQ(data_of(f), "filebytes");
    EXPECT_EQ(f->mtime_ns, -123);
    EXPECT_EQ(f->size, 9u);
    EXPECT_EQ(f->flags, 0u);

    const mpii_entry *l = mpii_image_lookup(img.get(), MPII_ENTRY_LISTING, path);
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(l->kind, MPII_ENTRY_LISTING);
    EXPECT_EQ(mpii_listing_count(l), 1u);
    EXPECT_EQ(mpii_listing_find(l, "n"), MPII_DIRENT_FILE);

    const mpii_entry *m = mpii_image_lookup(img.get(), MPII_ENTRY_MISS, path);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->kind, MPII_ENTRY_MISS);
    EXPECT_EQ(m->flags, MPII_MISS_NOT_DIR);
    EXPECT_EQ(m->data_len, 0u);

    const mpii_entry *c = mpii_image_lookup(img.get(), MPII_ENTRY_CODE, path);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->kind, MPII_ENTRY_CODE);
    EXPECT_EQ(data_of(c), "codebytes!");
    EXPECT_EQ(c->mtime_ns, 99);
    EXPECT_EQ(c->size, 1234u);

    // Other paths, prefixes and extensions of the path are not found.
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/usr/lib/python3/y"), nullptr);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/usr/lib/python3/"), nullptr);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/usr/lib/python3/xx"), nullptr);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, nullptr), nullptr);
}

TEST(Image, KindsAreSeparateKeys)
{
    ImagePtr img = new_image();
    ASSERT_EQ(mpii_image_add_miss(img.get(), "/only/miss", 0), MPII_OK);
    EXPECT_NE(mpii_image_lookup(img.get(), MPII_ENTRY_MISS, "/only/miss"), nullptr);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/only/miss"), nullptr);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_LISTING, "/only/miss"), nullptr);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_CODE, "/only/miss"), nullptr);
}

TEST(Image, AddCopiesPathAndData)
{
    ImagePtr img = new_image();
    std::string path = "/copy/me";
    std::string data = "original";
    ASSERT_EQ(mpii_image_add_file(img.get(), path.c_str(), data.data(), data.size(), 1, 8, 0), MPII_OK);
    path[1] = 'X';
    data[0] = 'X';
    const mpii_entry *e = mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/copy/me");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(data_of(e), "original");
    EXPECT_STREQ(e->path, "/copy/me");
}

TEST(Image, GenericAddHonoursPathLenAndFlags)
{
    ImagePtr img = new_image();
    // path_len shorter than the string: only that prefix is the key.
    mpii_entry e = {MPII_ENTRY_FILE, MPII_FILE_STAT_ONLY, "/abc/def", 4, nullptr, 0, 10, 20};
    ASSERT_EQ(mpii_image_add(img.get(), &e), MPII_OK);
    const mpii_entry *got = mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/abc");
    ASSERT_NE(got, nullptr);
    EXPECT_STREQ(got->path, "/abc");
    EXPECT_EQ(got->flags, MPII_FILE_STAT_ONLY);
    EXPECT_EQ(got->size, 20u);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/abc/def"), nullptr);
}

TEST(Image, ReplaceEntryOfSameKindAndPath)
{
    ImagePtr img = new_image();
    ASSERT_EQ(mpii_image_add_file(img.get(), "/r", "one", 3, 1, 3, 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_code(img.get(), "/r", "code", 4, 1, 3), MPII_OK);
    ASSERT_EQ(mpii_image_add_file(img.get(), "/r", "three", 5, 2, 5, MPII_FILE_STAT_ONLY), MPII_OK);
    EXPECT_EQ(mpii_image_count(img.get()), 2u);
    const mpii_entry *f = mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/r");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(data_of(f), "three");
    EXPECT_EQ(f->mtime_ns, 2);
    EXPECT_EQ(f->size, 5u);
    EXPECT_EQ(f->flags, MPII_FILE_STAT_ONLY);
    const mpii_entry *c = mpii_image_lookup(img.get(), MPII_ENTRY_CODE, "/r");
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(data_of(c), "code");
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 5u + 4u);

    // Replacing a listing re-indexes it.
    const char *n1[] = {"a", "b"};
    const char *n2[] = {"c"};
    const mpii_dirent_type t2[] = {MPII_DIRENT_DIR, MPII_DIRENT_DIR};
    ASSERT_EQ(mpii_image_add_listing(img.get(), "/d", n1, t2, 2), MPII_OK);
    ASSERT_EQ(mpii_image_add_listing(img.get(), "/d", n2, t2, 1), MPII_OK);
    const mpii_entry *l = mpii_image_lookup(img.get(), MPII_ENTRY_LISTING, "/d");
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(mpii_listing_count(l), 1u);
    EXPECT_EQ(mpii_listing_find(l, "a"), 0);
    EXPECT_EQ(mpii_listing_find(l, "c"), MPII_DIRENT_DIR);
}

TEST(Image, ManyEntriesSurviveTableGrowth)
{
    ImagePtr img = new_image();
    const int n = 3000;
    for (int i = 0; i < n; i++) {
        const std::string p = "/many/" + std::to_string(i);
        ASSERT_EQ(mpii_image_add_file(img.get(), p.c_str(), p.data(), p.size(), i, i, 0), MPII_OK);
        if (i % 3 == 0) {
            ASSERT_EQ(mpii_image_add_miss(img.get(), p.c_str(), 0), MPII_OK);
        }
    }
    EXPECT_EQ(mpii_image_count(img.get()), static_cast<size_t>(n + n / 3));
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++) {
        const std::string p = "/many/" + std::to_string(i);
        bytes += p.size();
        const mpii_entry *e = mpii_image_lookup(img.get(), MPII_ENTRY_FILE, p.c_str());
        ASSERT_NE(e, nullptr) << p;
        EXPECT_EQ(data_of(e), p);
        EXPECT_EQ(e->mtime_ns, i);
        EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_MISS, p.c_str()) != nullptr, i % 3 == 0) << p;
    }
    EXPECT_EQ(mpii_image_data_bytes(img.get()), bytes);
}

TEST(Image, RejectsInvalidEntries)
{
    ImagePtr img = new_image();
    EXPECT_EQ(mpii_image_add_file(img.get(), "relative", "x", 1, 0, 1, 0), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add_file(img.get(), "", "x", 1, 0, 1, 0), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add_file(img.get(), nullptr, "x", 1, 0, 1, 0), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add_file(img.get(), "/nodata", nullptr, 3, 0, 3, 0), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add_file(img.get(), "/flags", "x", 1, 0, 1, 0x10000u), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add_miss(img.get(), "rel", 0), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add_code(img.get(), "rel.py", "c", 1, 0, 0), MPII_ERR_INVALID);
    mpii_entry bad_kind0 = {static_cast<mpii_entry_kind>(0), 0, "/k", 2, nullptr, 0, 0, 0};
    mpii_entry bad_kind5 = {static_cast<mpii_entry_kind>(5), 0, "/k", 2, nullptr, 0, 0, 0};
    mpii_entry nul_in_path = {MPII_ENTRY_FILE, 0, "/a\0b", 4, nullptr, 0, 0, 0};
    EXPECT_EQ(mpii_image_add(img.get(), &bad_kind0), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add(img.get(), &bad_kind5), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add(img.get(), &nul_in_path), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add(img.get(), nullptr), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_add(nullptr, &bad_kind0), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_count(img.get()), 0u);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 0u);
}

// ---- listings ----

TEST(Image, ListingFromUnsortedNames)
{
    ImagePtr img = new_image();
    const char *names[] = {"zeta", "alpha", "m.py", "Beta", "__init__.py", "a", "alpha.py", "~"};
    const mpii_dirent_type types[] = {MPII_DIRENT_DIR,  MPII_DIRENT_FILE, MPII_DIRENT_FILE,
                                      MPII_DIRENT_OTHER, MPII_DIRENT_FILE, MPII_DIRENT_DIR,
                                      MPII_DIRENT_OTHER, MPII_DIRENT_FILE};
    const size_t n = sizeof names / sizeof *names;
    ASSERT_EQ(mpii_image_add_listing(img.get(), "/dir", names, types, n), MPII_OK);
    const mpii_entry *l = mpii_image_lookup(img.get(), MPII_ENTRY_LISTING, "/dir");
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(mpii_listing_count(l), n);
    for (size_t i = 0; i < n; i++)
        EXPECT_EQ(mpii_listing_find(l, names[i]), static_cast<int>(types[i])) << names[i];
    const char *absent[] = {"b", "alph", "alphaa", "", "Zeta", "zeta2", "m", "A", "__init__"};
    for (const char *a : absent)
        EXPECT_EQ(mpii_listing_find(l, a), 0) << '"' << a << '"';
    EXPECT_EQ(mpii_listing_find(l, nullptr), 0);

    // mpii_listing_at walks the names in the order given (the directory's
    // readdir order, what a plain os.listdir shows); lookups above are by name.
    std::vector<std::string> walked;
    for (size_t i = 0; i < n; i++) {
        const char *name = nullptr;
        size_t len = 0;
        mpii_dirent_type type{};
        ASSERT_EQ(mpii_listing_at(l, i, &name, &len, &type), MPII_OK);
        walked.emplace_back(name, len);
        EXPECT_EQ(static_cast<int>(type), mpii_listing_find(l, walked.back().c_str()));
    }
    const std::vector<std::string> given(names, names + n);
    EXPECT_EQ(walked, given);
    const char *name;
    size_t len;
    mpii_dirent_type type;
    EXPECT_EQ(mpii_listing_at(l, n, &name, &len, &type), MPII_ERR_INVALID);
}

TEST(Image, ListingWithManyNamesBinarySearches)
{
    ImagePtr img = new_image();
    std::vector<std::string> storage;
    for (int i = 999; i >= 0; i--)
        storage.push_back("mod" + std::to_string(i) + (i % 2 ? ".py" : ""));
    std::vector<const char *> names;
    std::vector<mpii_dirent_type> types;
    for (size_t i = 0; i < storage.size(); i++) {
        names.push_back(storage[i].c_str());
        types.push_back(storage[i].size() > 3 && storage[i].compare(storage[i].size() - 3, 3, ".py") == 0
                            ? MPII_DIRENT_FILE
                            : MPII_DIRENT_DIR);
    }
    ASSERT_EQ(mpii_image_add_listing(img.get(), "/big", names.data(), types.data(), names.size()), MPII_OK);
    const mpii_entry *l = mpii_image_lookup(img.get(), MPII_ENTRY_LISTING, "/big");
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(mpii_listing_count(l), 1000u);
    for (size_t i = 0; i < storage.size(); i++)
        ASSERT_EQ(mpii_listing_find(l, names[i]), static_cast<int>(types[i])) << names[i];
    EXPECT_EQ(mpii_listing_find(l, "mod1"), 0);    // only mod1.py exists
    EXPECT_EQ(mpii_listing_find(l, "mod0.py"), 0); // only mod0 exists
}

TEST(Image, EmptyListing)
{
    ImagePtr img = new_image();
    ASSERT_EQ(mpii_image_add_listing(img.get(), "/empty", nullptr, nullptr, 0), MPII_OK);
    const mpii_entry *l = mpii_image_lookup(img.get(), MPII_ENTRY_LISTING, "/empty");
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(mpii_listing_count(l), 0u);
    EXPECT_EQ(mpii_listing_find(l, "x"), 0);
}

TEST(Image, ListingDuplicateNamesAreAnError)
{
    ImagePtr img = new_image();
    const char *names[] = {"b", "a", "b"};
    const mpii_dirent_type types[] = {MPII_DIRENT_FILE, MPII_DIRENT_FILE, MPII_DIRENT_DIR};
    EXPECT_NE(mpii_image_add_listing(img.get(), "/dup", names, types, 3), MPII_OK);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_LISTING, "/dup"), nullptr);
    EXPECT_EQ(mpii_image_count(img.get()), 0u);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 0u);
}

TEST(Image, ListingBadNamesAndTypesAreErrors)
{
    ImagePtr img = new_image();
    const mpii_dirent_type file[] = {MPII_DIRENT_FILE};
    const char *slash[] = {"a/b"};
    const char *empty[] = {""};
    const char *null_name[] = {nullptr};
    const char *ok[] = {"ok"};
    EXPECT_NE(mpii_image_add_listing(img.get(), "/d", slash, file, 1), MPII_OK);
    EXPECT_NE(mpii_image_add_listing(img.get(), "/d", empty, file, 1), MPII_OK);
    EXPECT_NE(mpii_image_add_listing(img.get(), "/d", null_name, file, 1), MPII_OK);
    const mpii_dirent_type zero[] = {static_cast<mpii_dirent_type>(0)};
    const mpii_dirent_type four[] = {static_cast<mpii_dirent_type>(4)};
    EXPECT_NE(mpii_image_add_listing(img.get(), "/d", ok, zero, 1), MPII_OK);
    EXPECT_NE(mpii_image_add_listing(img.get(), "/d", ok, four, 1), MPII_OK);
    EXPECT_NE(mpii_image_add_listing(img.get(), "rel", ok, file, 1), MPII_OK);
    EXPECT_NE(mpii_image_add_listing(img.get(), nullptr, ok, file, 1), MPII_OK);
    EXPECT_EQ(mpii_image_count(img.get()), 0u);
}

TEST(Image, ListingHelpersRejectNonListings)
{
    ImagePtr img = new_image();
    ASSERT_EQ(mpii_image_add_file(img.get(), "/f", "abc\0\x01", 5, 0, 5, 0), MPII_OK);
    const mpii_entry *f = mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/f");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(mpii_listing_count(f), 0u);
    EXPECT_EQ(mpii_listing_find(f, "abc"), 0);
    EXPECT_EQ(mpii_listing_count(nullptr), 0u);
    EXPECT_EQ(mpii_listing_find(nullptr, "abc"), 0);
    const char *name;
    size_t len;
    mpii_dirent_type type;
    EXPECT_EQ(mpii_listing_at(f, 0, &name, &len, &type), MPII_ERR_INVALID);
}

// ---- merge, data bytes, clear ----

TEST(Image, RemoveTakesOneKindAtOnePathAndKeepsTheRestFindable)
{
    mpii_image *img = nullptr;
    ASSERT_EQ(mpii_image_create(&img), MPII_OK);
    char path[64];
    for (int i = 0; i < 200; i++) {
        snprintf(path, sizeof path, "/d/f%d", i);
        ASSERT_EQ(mpii_image_add_file(img, path, "xy", 2, i, 2, 0), MPII_OK);
    }
    ASSERT_EQ(mpii_image_add_miss(img, "/d/f7", 0), MPII_OK);
    mpii_image_remove(img, MPII_ENTRY_FILE, "/d/f7");
    mpii_image_remove(img, MPII_ENTRY_FILE, "/d/f0");
    mpii_image_remove(img, MPII_ENTRY_FILE, "/d/absent");
    mpii_image_remove(nullptr, MPII_ENTRY_FILE, "/d/f1");
    EXPECT_EQ(mpii_image_count(img), 199u);
    EXPECT_EQ(mpii_image_data_bytes(img), 198u * 2);
    EXPECT_EQ(mpii_image_lookup(img, MPII_ENTRY_FILE, "/d/f7"), nullptr);
    EXPECT_EQ(mpii_image_lookup(img, MPII_ENTRY_FILE, "/d/f0"), nullptr);
    EXPECT_NE(mpii_image_lookup(img, MPII_ENTRY_MISS, "/d/f7"), nullptr);  // another kind stays
    for (int i = 1; i < 200; i++) {
        if (i == 7)
            continue;
        snprintf(path, sizeof path, "/d/f%d", i);
        const mpii_entry *e = mpii_image_lookup(img, MPII_ENTRY_FILE, path);
        ASSERT_NE(e, nullptr) << path;
        EXPECT_EQ(e->mtime_ns, i);
    }
    mpii_image_destroy(img);
}

TEST(Image, MergeAddsAndReplaces)
{
    ImagePtr dst = new_image(), src = new_image();
    ASSERT_EQ(mpii_image_add_file(dst.get(), "/x", "old", 3, 1, 3, 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_miss(dst.get(), "/only-dst", 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_file(src.get(), "/x", "newer", 5, 2, 5, 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_code(src.get(), "/x", "cc", 2, 2, 5), MPII_OK);
    const char *names[] = {"q"};
    const mpii_dirent_type types[] = {MPII_DIRENT_OTHER};
    ASSERT_EQ(mpii_image_add_listing(src.get(), "/l", names, types, 1), MPII_OK);

    ASSERT_EQ(mpii_image_merge(dst.get(), src.get()), MPII_OK);
    EXPECT_EQ(mpii_image_count(dst.get()), 4u);
    const mpii_entry *x = mpii_image_lookup(dst.get(), MPII_ENTRY_FILE, "/x");
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(data_of(x), "newer");
    EXPECT_EQ(x->mtime_ns, 2);
    EXPECT_NE(mpii_image_lookup(dst.get(), MPII_ENTRY_MISS, "/only-dst"), nullptr);
    EXPECT_NE(mpii_image_lookup(dst.get(), MPII_ENTRY_CODE, "/x"), nullptr);
    const mpii_entry *l = mpii_image_lookup(dst.get(), MPII_ENTRY_LISTING, "/l");
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(mpii_listing_find(l, "q"), MPII_DIRENT_OTHER);
    EXPECT_EQ(mpii_image_data_bytes(dst.get()), 5u + 2u + 4u);
    // src is untouched and independent of dst.
    EXPECT_EQ(mpii_image_count(src.get()), 3u);
    src.reset();
    EXPECT_EQ(data_of(mpii_image_lookup(dst.get(), MPII_ENTRY_FILE, "/x")), "newer");
    EXPECT_EQ(mpii_image_merge(nullptr, dst.get()), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_merge(dst.get(), nullptr), MPII_ERR_INVALID);
}

TEST(Image, MergeIntoItselfKeepsEverything)
{
    ImagePtr img = small_image();
    const uint64_t bytes = mpii_image_data_bytes(img.get());
    ASSERT_EQ(mpii_image_merge(img.get(), img.get()), MPII_OK);
    EXPECT_EQ(mpii_image_count(img.get()), 4u);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), bytes);
    EXPECT_EQ(data_of(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/s/a.py")), "x = 1\n");
}

TEST(Image, DataBytesCountsEveryKindAndReplacement)
{
    ImagePtr img = new_image();
    ASSERT_EQ(mpii_image_add_file(img.get(), "/a", "12345", 5, 0, 5, 0), MPII_OK);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 5u);
    ASSERT_EQ(mpii_image_add_code(img.get(), "/a", "123", 3, 0, 5), MPII_OK);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 8u);
    const char *names[] = {"ab"}; // encoded as type + u16 length + 2 bytes = 5
    const mpii_dirent_type types[] = {MPII_DIRENT_FILE};
    ASSERT_EQ(mpii_image_add_listing(img.get(), "/d", names, types, 1), MPII_OK);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 13u);
    ASSERT_EQ(mpii_image_add_miss(img.get(), "/m", 0), MPII_OK);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 13u);
    ASSERT_EQ(mpii_image_add_file(img.get(), "/a", "1", 1, 0, 1, 0), MPII_OK);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 9u);
    ASSERT_EQ(mpii_image_add_file(img.get(), "/a", nullptr, 0, 0, 100, MPII_FILE_STAT_ONLY), MPII_OK);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 8u);

    mpii_image_clear(img.get());
    EXPECT_EQ(mpii_image_count(img.get()), 0u);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 0u);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_CODE, "/a"), nullptr);
    EXPECT_EQ(mpii_image_lookup(img.get(), MPII_ENTRY_LISTING, "/d"), nullptr);
    ASSERT_EQ(mpii_image_add_file(img.get(), "/a", "xy", 2, 0, 2, 0), MPII_OK);
    EXPECT_EQ(mpii_image_count(img.get()), 1u);
    EXPECT_EQ(mpii_image_data_bytes(img.get()), 2u);
    EXPECT_EQ(data_of(mpii_image_lookup(img.get(), MPII_ENTRY_FILE, "/a")), "xy");
}

// ---- wire format: round trip ----

TEST(ImageWire, RoundTripPreservesEveryField)
{
    ImagePtr img = new_image();
    const std::vector<uint8_t> mib = pattern(1u << 20, 1);
    ASSERT_EQ(mpii_image_add_file(img.get(), "/lib/big.so", mib.data(), mib.size(),
                                  1700000000999999999LL, mib.size(), 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_file(img.get(), "/lib/empty.py", nullptr, 0, 1600000000000000001LL, 0, 0),
              MPII_OK);
    ASSERT_EQ(mpii_image_add_file(img.get(), "/lib/stat_only.py", nullptr, 0, -5000000001LL,
                                  0x1234567890ULL, MPII_FILE_STAT_ONLY), MPII_OK);
    const std::string bin("\0\x01\xff\r\n", 5);
    ASSERT_EQ(mpii_image_add_file(img.get(), "/lib/bin", bin.data(), bin.size(), INT64_MIN, UINT64_MAX, 0),
              MPII_OK);
    const char *names[] = {"pkg", "big.so", "empty.py", "link", "__pycache__"};
    const mpii_dirent_type types[] = {MPII_DIRENT_DIR, MPII_DIRENT_FILE, MPII_DIRENT_FILE,
                                      MPII_DIRENT_OTHER, MPII_DIRENT_DIR};
    ASSERT_EQ(mpii_image_add_listing(img.get(), "/lib", names, types, 5), MPII_OK);
    ASSERT_EQ(mpii_image_add_listing(img.get(), "/lib/pkg", nullptr, nullptr, 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_miss(img.get(), "/nowhere", 0), MPII_OK);
    ASSERT_EQ(mpii_image_add_miss(img.get(), "/lib/app.zip", MPII_MISS_NOT_DIR), MPII_OK);
    const std::vector<uint8_t> code = pattern(777, 2);
    ASSERT_EQ(mpii_image_add_code(img.get(), "/lib/empty.py", code.data(), code.size(),
                                  1600000000000000001LL, 0), MPII_OK);
    ASSERT_EQ(mpii_image_count(img.get()), 9u);
    EXPECT_EQ(mpii_image_data_bytes(img.get()),
              mib.size() + bin.size() + code.size() + (3 + 3) + (3 + 6) + (3 + 8) + (3 + 4) + (3 + 11));

    Serialized s;
    serialize(img.get(), 0x0123456789ABCDEFULL, "import numpy.linalg", &s);
    ImagePtr back;
    uint64_t seq = 0;
    char label[64] = "garbage";
    ASSERT_EQ(parse_copy(s.bytes(), &back, &seq, label, sizeof label), MPII_OK);
    ASSERT_NE(back, nullptr);
    EXPECT_EQ(seq, 0x0123456789ABCDEFULL);
    EXPECT_STREQ(label, "import numpy.linalg");
    expect_same_entries(img.get(), back.get());
    expect_same_entries(back.get(), img.get());

    // The parsed listing is usable (indexed), not just bytes.
    const mpii_entry *l = mpii_image_lookup(back.get(), MPII_ENTRY_LISTING, "/lib");
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(mpii_listing_count(l), 5u);
    for (size_t i = 0; i < 5; i++)
        EXPECT_EQ(mpii_listing_find(l, names[i]), static_cast<int>(types[i])) << names[i];
    const mpii_entry *big = mpii_image_lookup(back.get(), MPII_ENTRY_FILE, "/lib/big.so");
    ASSERT_NE(big, nullptr);
    ASSERT_EQ(big->data_len, mib.size());
    EXPECT_EQ(std::memcmp(big->data, mib.data(), mib.size()), 0);
    const mpii_entry *empty = mpii_image_lookup(back.get(), MPII_ENTRY_FILE, "/lib/empty.py");
    ASSERT_NE(empty, nullptr);
    EXPECT_EQ(empty->data_len, 0u);
    EXPECT_EQ(empty->flags, 0u);

    // Serialising the parsed image gives the same bytes (entries keep their order).
    Serialized again;
    serialize(back.get(), 0x0123456789ABCDEFULL, "import numpy.linalg", &again);
    EXPECT_TRUE(s.bytes() == again.bytes());
}

TEST(ImageWire, HeaderLayoutIsAsDocumented)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 0x1122334455667788ULL, "lbl", &s);
    ASSERT_GE(s.len, MPII_IMAGE_HEADER_SIZE + 2u);
    EXPECT_EQ(std::memcmp(s.buf, "MPIIMG\r\n", 8), 0);
    auto le = [&](size_t off, int n) {
        uint64_t v = 0;
        for (int i = n - 1; i >= 0; i--)
            v = (v << 8) | s.buf[off + static_cast<size_t>(i)];
        return v;
    };
    EXPECT_EQ(le(8, 4), MPII_IMAGE_VERSION);
    EXPECT_EQ(le(12, 4), 0u);
    EXPECT_EQ(le(16, 8), 0x1122334455667788ULL);
    EXPECT_EQ(le(24, 8), 4u);
    EXPECT_EQ(le(32, 8), s.len - MPII_IMAGE_HEADER_SIZE);
    const uint64_t seed = mpii_checksum64(s.buf, 40, 0);
    EXPECT_EQ(le(40, 8), mpii_checksum64(s.buf + 48, s.len - 48, seed));
    EXPECT_EQ(le(48, 2), 3u);
    EXPECT_EQ(std::memcmp(s.buf + 50, "lbl", 3), 0);
}

TEST(ImageWire, EmptyImageWithoutLabelRoundTrips)
{
    ImagePtr img = new_image();
    Serialized s;
    serialize(img.get(), 0, nullptr, &s);
    EXPECT_EQ(s.len, MPII_IMAGE_HEADER_SIZE + 2u);
    ImagePtr back;
    uint64_t seq = 99;
    char label[8] = "xxxxxxx";
    ASSERT_EQ(parse_copy(s.bytes(), &back, &seq, label, sizeof label), MPII_OK);
    EXPECT_EQ(seq, 0u);
    EXPECT_STREQ(label, "");
    EXPECT_EQ(mpii_image_count(back.get()), 0u);
    // NULL sequence and label are allowed.
    ASSERT_EQ(parse_copy(s.bytes(), &back), MPII_OK);
}

TEST(ImageWire, LabelIsTruncatedToCapacityAndClampedToMax)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 1, "abcdefghij", &s);
    ImagePtr back;
    char label[5];
    ASSERT_EQ(parse_copy(s.bytes(), &back, nullptr, label, sizeof label), MPII_OK);
    EXPECT_STREQ(label, "abcd");

    const std::string long_label(3000, 'L');
    Serialized l;
    serialize(img.get(), 1, long_label.c_str(), &l);
    std::vector<char> big(4096, 'z');
    ASSERT_EQ(parse_copy(l.bytes(), &back, nullptr, big.data(), big.size()), MPII_OK);
    EXPECT_EQ(std::string(big.data()), std::string(MPII_IMAGE_LABEL_MAX, 'L'));
    EXPECT_EQ(mpii_image_count(back.get()), 4u);
}

TEST(ImageWire, SerializeRejectsNullArguments)
{
    ImagePtr img = new_image();
    uint8_t *buf = nullptr;
    size_t len = 0;
    EXPECT_EQ(mpii_image_serialize(nullptr, 0, nullptr, &buf, &len), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_serialize(img.get(), 0, nullptr, nullptr, &len), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_image_serialize(img.get(), 0, nullptr, &buf, nullptr), MPII_ERR_INVALID);
    mpii_image *out = nullptr;
    EXPECT_EQ(mpii_image_parse(nullptr, 10, &out, nullptr, nullptr, 0), MPII_ERR_INVALID);
    EXPECT_EQ(out, nullptr);
    const uint8_t byte = 0;
    EXPECT_EQ(mpii_image_parse(&byte, 1, nullptr, nullptr, nullptr, 0), MPII_ERR_INVALID);
}

// ---- wire format: corruption ----

TEST(ImageWire, EveryTruncationIsAnError)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 3, "trunc", &s);
    const std::vector<uint8_t> full = s.bytes();
    ImagePtr back;
    ASSERT_EQ(parse_copy(full, &back), MPII_OK); // the untruncated one is fine
    for (size_t len = 0; len < full.size(); len++) {
        std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(len));
        const mpii_status st = parse_copy(cut, &back);
        EXPECT_TRUE(st == MPII_ERR_TRUNCATED || st == MPII_ERR_CORRUPT || st == MPII_ERR_CHECKSUM)
            << "length " << len << ": " << mpii_strerror(st);
        EXPECT_EQ(back, nullptr);
    }
    // Short of the header, it is TRUNCATED specifically.
    std::vector<uint8_t> header_only(full.begin(), full.begin() + MPII_IMAGE_HEADER_SIZE - 1);
    EXPECT_EQ(parse_copy(header_only, &back), MPII_ERR_TRUNCATED);
    std::vector<uint8_t> one_short(full.begin(), full.end() - 1);
    EXPECT_EQ(parse_copy(one_short, &back), MPII_ERR_TRUNCATED);
}

TEST(ImageWire, EveryFlippedByteIsAnError)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 3, "flip", &s);
    const std::vector<uint8_t> full = s.bytes();
    const uint8_t masks[] = {0x01, 0x80, 0xFF};
    for (size_t pos = 0; pos < full.size(); pos++)
        for (uint8_t mask : masks) {
            std::vector<uint8_t> bad = full;
            bad[pos] ^= mask;
            ImagePtr back;
            const mpii_status st = parse_copy(bad, &back);
            EXPECT_TRUE(is_parse_error(st))
                << "byte " << pos << " ^ " << int(mask) << ": " << mpii_strerror(st);
            EXPECT_EQ(back, nullptr);
        }
}

TEST(ImageWire, WrongMagicIsCorrupt)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 1, nullptr, &s);
    for (size_t i = 0; i < 8; i++) {
        std::vector<uint8_t> bad = s.bytes();
        bad[i] = 'X';
        reseal(bad);
        ImagePtr back;
        EXPECT_EQ(parse_copy(bad, &back), MPII_ERR_CORRUPT) << "magic byte " << i;
    }
}

TEST(ImageWire, OtherVersionIsVersionError)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 1, nullptr, &s);
    const uint32_t versions[] = {0, MPII_IMAGE_VERSION + 1, 0x100u + MPII_IMAGE_VERSION, 0xFFFFFFFFu};
    for (uint32_t v : versions) {
        std::vector<uint8_t> bad = s.bytes();
        for (int i = 0; i < 4; i++)
            bad[8 + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
        ImagePtr back;
        EXPECT_EQ(parse_copy(bad, &back), MPII_ERR_VERSION) << "version " << v;
        reseal(bad); // even with a matching checksum
        EXPECT_EQ(parse_copy(bad, &back), MPII_ERR_VERSION) << "version " << v;
    }
}

TEST(ImageWire, UnknownHeaderFlagsAreAnError)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 1, nullptr, &s);
    std::vector<uint8_t> bad = s.bytes();
    bad[12] = 1;
    reseal(bad);
    ImagePtr back;
    EXPECT_EQ(parse_copy(bad, &back), MPII_ERR_CORRUPT);
}

TEST(ImageWire, ExtraTrailingByteIsAnError)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 1, nullptr, &s);
    std::vector<uint8_t> bad = s.bytes();
    bad.push_back(0);
    ImagePtr back;
    const mpii_status st = parse_copy(bad, &back);
    EXPECT_TRUE(is_parse_error(st)) << mpii_strerror(st);
    EXPECT_EQ(back, nullptr);
}

TEST(ImageWire, ChangedSequenceOrCountFailsTheChecksum)
{
    ImagePtr img = small_image();
    Serialized s;
    serialize(img.get(), 1, nullptr, &s);
    std::vector<uint8_t> seq = s.bytes();
    seq[16] ^= 2;
    ImagePtr back;
    EXPECT_EQ(parse_copy(seq, &back), MPII_ERR_CHECKSUM);
    std::vector<uint8_t> count = s.bytes();
    count[24] ^= 1;
    EXPECT_EQ(parse_copy(count, &back), MPII_ERR_CHECKSUM);
    std::vector<uint8_t> payload = s.bytes();
    payload.back() ^= 0x40;
    EXPECT_EQ(parse_copy(payload, &back), MPII_ERR_CHECKSUM);
}

TEST(ImageWire, CraftedImageIsAcceptedWhenConsistent)
{
    // Proves the crafting helper (and its checksum seeding) matches image.c,
    // so the rejections below are for the reasons they test.
    CraftedEntry e;
    CraftedEntry listing;
    listing.kind = MPII_ENTRY_LISTING;
    listing.path = "/dir";
    listing.data = std::string("\x01\x01\x00" "a" "\x02\x02\x00" "bc", 9);
    listing.mtime = 0;
    listing.size = 0;
    ImagePtr back;
    uint64_t seq = 0;
    char label[16];
    ASSERT_EQ(parse_copy(craft({e, listing}, 2, "hi"), &back, &seq, label, sizeof label), MPII_OK);
    EXPECT_EQ(seq, 77u);
    EXPECT_STREQ(label, "hi");
    const mpii_entry *f = mpii_image_lookup(back.get(), MPII_ENTRY_FILE, "/p");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(data_of(f), "DATA");
    const mpii_entry *l = mpii_image_lookup(back.get(), MPII_ENTRY_LISTING, "/dir");
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(mpii_listing_find(l, "a"), MPII_DIRENT_FILE);
    EXPECT_EQ(mpii_listing_find(l, "bc"), MPII_DIRENT_DIR);
}

TEST(ImageWire, CraftedLengthsOverflowingThePayloadAreCorrupt)
{
    ImagePtr back;
    auto expect_corrupt = [&](const CraftedEntry &e, const char *what) {
        EXPECT_EQ(parse_copy(craft({e}, 1), &back), MPII_ERR_CORRUPT) << what;
        EXPECT_EQ(back, nullptr) << what;
    };
    CraftedEntry e;
    e.fake_path_len = true;
    e.path_len = 0xFFFFFFFFu;
    expect_corrupt(e, "path_len 2^32-1");
    e.path_len = static_cast<uint32_t>(e.path.size() + e.data.size() + 1);
    expect_corrupt(e, "path_len one past the payload");

    CraftedEntry d;
    d.fake_data_len = true;
    d.data_len = UINT64_MAX;
    expect_corrupt(d, "data_len 2^64-1");
    d.data_len = UINT64_MAX - 1;
    expect_corrupt(d, "data_len 2^64-2 (path+data wraps)");
    d.data_len = d.data.size() + 1;
    expect_corrupt(d, "data_len one past the payload");
    d.data_len = 1ULL << 63;
    expect_corrupt(d, "data_len 2^63");

    // A short data_len leaves bytes after the last entry.
    CraftedEntry s;
    s.fake_data_len = true;
    s.data_len = 1;
    expect_corrupt(s, "data_len short");
}

TEST(ImageWire, CraftedStructuralErrorsAreCorrupt)
{
    ImagePtr back;
    CraftedEntry ok;
    EXPECT_EQ(parse_copy(craft({ok}, 2), &back), MPII_ERR_CORRUPT) << "count too large";
    EXPECT_EQ(parse_copy(craft({ok}, UINT64_MAX), &back), MPII_ERR_CORRUPT) << "count 2^64-1";
    EXPECT_EQ(parse_copy(craft({ok}, 0), &back), MPII_ERR_CORRUPT) << "count too small";
    EXPECT_EQ(parse_copy(craft({ok}, 1, "", true, 60000), &back), MPII_ERR_CORRUPT)
        << "label longer than payload";
    const std::string too_long(MPII_IMAGE_LABEL_MAX + 1, 'x');
    EXPECT_EQ(parse_copy(craft({ok}, 1, too_long), &back), MPII_ERR_CORRUPT) << "label over max";

    CraftedEntry kind0 = ok;
    kind0.kind = 0;
    EXPECT_EQ(parse_copy(craft({kind0}, 1), &back), MPII_ERR_CORRUPT) << "kind 0";
    CraftedEntry kind9 = ok;
    kind9.kind = 9;
    EXPECT_EQ(parse_copy(craft({kind9}, 1), &back), MPII_ERR_CORRUPT) << "kind 9";
    CraftedEntry reserved = ok;
    reserved.reserved = 1;
    EXPECT_EQ(parse_copy(craft({reserved}, 1), &back), MPII_ERR_CORRUPT) << "reserved byte";
    CraftedEntry relative = ok;
    relative.path = "p";
    EXPECT_EQ(parse_copy(craft({relative}, 1), &back), MPII_ERR_CORRUPT) << "relative path";
    CraftedEntry empty_path = ok;
    empty_path.path = "";
    EXPECT_EQ(parse_copy(craft({empty_path}, 1), &back), MPII_ERR_CORRUPT) << "empty path";
    CraftedEntry nul_path = ok;
    nul_path.path = std::string("/a\0b", 4);
    EXPECT_EQ(parse_copy(craft({nul_path}, 1), &back), MPII_ERR_CORRUPT) << "NUL in path";

    CraftedEntry listing = ok;
    listing.kind = MPII_ENTRY_LISTING;
    listing.data = std::string("\x01\x02\x00" "bb" "\x01\x01\x00" "a", 9);
    // names in the directory's order, not sorted: read as they are, found by name
    ASSERT_EQ(parse_copy(craft({listing}, 1), &back), MPII_OK) << "unsorted listing";
    {
        const mpii_entry *l = mpii_image_lookup(back.get(), MPII_ENTRY_LISTING, ok.path.c_str());
        ASSERT_NE(l, nullptr);
        EXPECT_EQ(mpii_listing_find(l, "a"), MPII_DIRENT_FILE);
        EXPECT_EQ(mpii_listing_find(l, "bb"), MPII_DIRENT_FILE);
        const char *first = nullptr;
        size_t len = 0;
        mpii_dirent_type type{};
        ASSERT_EQ(mpii_listing_at(l, 0, &first, &len, &type), MPII_OK);
        EXPECT_EQ(std::string(first, len), "bb");
    }
    listing.data = std::string("\x01\x01\x00" "a" "\x02\x01\x00" "a", 8);
    EXPECT_EQ(parse_copy(craft({listing}, 1), &back), MPII_ERR_CORRUPT) << "duplicate listing name";
    listing.data = std::string("\x01\x05\x00" "ab", 5);
    EXPECT_EQ(parse_copy(craft({listing}, 1), &back), MPII_ERR_CORRUPT) << "name past listing end";
    listing.data = std::string("\x07\x01\x00" "a", 4);
    EXPECT_EQ(parse_copy(craft({listing}, 1), &back), MPII_ERR_CORRUPT) << "bad dirent type";
    listing.data = std::string("\x01\x00\x00", 3);
    EXPECT_EQ(parse_copy(craft({listing}, 1), &back), MPII_ERR_CORRUPT) << "empty name";
    listing.data = std::string("\x01\x03\x00" "a/b", 6);
    EXPECT_EQ(parse_copy(craft({listing}, 1), &back), MPII_ERR_CORRUPT) << "slash in name";
    listing.data = std::string("\x01\x01", 2);
    EXPECT_EQ(parse_copy(craft({listing}, 1), &back), MPII_ERR_CORRUPT) << "partial record";
}
