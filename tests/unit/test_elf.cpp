// test_elf.cpp — unit tests of the ELF dependency reader (core/src/elf.c):
// DT_NEEDED names and $ORIGIN-relative RPATH/RUNPATH directories of real
// shared objects compiled here with gcc at run time (RUNPATH, RPATH, several
// entries, ${ORIGIN}), a real system library cross-checked against readelf,
// hand-built ELF64/ELF32 images for every error path and normalisation rule,
// and robustness: every truncation and random header corruption of a real
// library must return a status without reading outside the buffer (run the
// suite under ASan/UBSan to make that a hard check).
#include <gtest/gtest.h>

#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "mpiimport/elf.h"
#include "mpiimport/status.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using Strings = std::vector<std::string>;

Bytes read_bytes(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_text(const std::string &path, const std::string &text)
{
    std::ofstream out(path, std::ios::binary);
    out << text;
}

// Output of a shell command, or "" when it fails.
std::string run_capture(const std::string &cmd, int *rc = nullptr)
{
    std::string outtext;
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) {
        if (rc)
            *rc = -1;
        return outtext;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        outtext.append(buf, n);
    int status = pclose(p);
    if (rc)
        *rc = status;
    return outtext;
}

// The reader's result as C++ values; frees the C struct.
struct Deps {
    mpii_status status = MPII_ERR_INVALID;
    Strings needed;
    Strings dirs;
};

Deps read_deps(const Bytes &data, const char *origin = "/x/y/pkg")
{
    Deps d;
    mpii_elf_deps out;
    std::memset(&out, 0xA5, sizeof out); // garbage: the reader must reset it
    // A dedicated copy, so ASan sees reads past the end of exactly len bytes.
    uint8_t *copy = static_cast<uint8_t *>(std::malloc(data.empty() ? 1 : data.size()));
    if (!data.empty())
        std::memcpy(copy, data.data(), data.size());
    d.status = mpii_elf_deps_read(copy, data.size(), origin, &out);
    std::free(copy);
    if (d.status != MPII_OK) {
        EXPECT_EQ(out.needed_count, 0u);
        EXPECT_EQ(out.origin_dir_count, 0u);
    }
    for (size_t i = 0; i < out.needed_count; i++)
        d.needed.emplace_back(out.needed[i]);
    for (size_t i = 0; i < out.origin_dir_count; i++)
        d.dirs.emplace_back(out.origin_dirs[i]);
    mpii_elf_deps_free(&out);
    EXPECT_EQ(out.needed, nullptr);
    EXPECT_EQ(out.origin_dirs, nullptr);
    return d;
}

bool contains(const Strings &v, const std::string &s)
{
    for (const auto &x : v)
        if (x == s)
            return true;
    return false;
}

// ---- shared objects compiled at run time ----------------------------------

class CompiledElf : public ::testing::Test {
protected:
    static std::string dir_;

    static void SetUpTestSuite()
    {
        char tmpl[] = "/tmp/mpii_elf_test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        write_text(dir_ + "/helper.c", "int helper(void) { return 42; }\n");
        write_text(dir_ + "/ext.c",
                   "#include <string.h>\n"
                   "int helper(void);\n"
                   "int ext(const char *s) { return helper() + (int)strlen(s); }\n");
        const std::string cc = "gcc -shared -fPIC -Wl,--no-as-needed ";
        ASSERT_EQ(sh(cc + "-o " + dir_ + "/libhelper.so " + dir_ + "/helper.c"), 0);
        const std::string ext = cc + dir_ + "/ext.c -L" + dir_ + " -lhelper ";
        ASSERT_EQ(sh(ext + "-o " + dir_ + "/libext_runpath.so "
                     "-Wl,-rpath,'$ORIGIN/../pkg.libs' -Wl,--enable-new-dtags"),
                  0);
        ASSERT_EQ(sh(ext + "-o " + dir_ + "/libext_rpath.so "
                     "-Wl,-rpath,'$ORIGIN/../pkg.libs' -Wl,--disable-new-dtags"),
                  0);
        ASSERT_EQ(sh(ext + "-o " + dir_ + "/libext_two.so "
                     "-Wl,-rpath,'$ORIGIN/a:/usr/lib:${ORIGIN}/../b/./c' -Wl,--enable-new-dtags"),
                  0);
        ASSERT_EQ(sh(ext + "-o " + dir_ + "/libext_plain.so -Wl,-rpath,/usr/lib/foo"), 0);
    }

    static void TearDownTestSuite()
    {
        std::error_code ec;
        if (!dir_.empty())
            fs::remove_all(dir_, ec);
    }

    static int sh(const std::string &cmd)
    {
        int rc = std::system((cmd + " 2>&1").c_str());
        return rc;
    }

    static Bytes lib(const std::string &name) { return read_bytes(dir_ + "/" + name); }

    // The dynamic-section tags readelf reports, to check a fixture is what it
    // claims to be (RPATH vs RUNPATH), independently of the reader under test.
    static std::string readelf_d(const std::string &name)
    {
        return run_capture("readelf -d " + dir_ + "/" + name + " 2>/dev/null");
    }
};

std::string CompiledElf::dir_;

TEST_F(CompiledElf, RunpathOriginDirIsNormalised)
{
    ASSERT_NE(readelf_d("libext_runpath.so").find("(RUNPATH)"), std::string::npos);
    Bytes b = lib("libext_runpath.so");
    ASSERT_GT(b.size(), 0u);
    Deps d = read_deps(b);
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_TRUE(contains(d.needed, "libhelper.so"));
    EXPECT_TRUE(contains(d.needed, "libc.so.6"));
    EXPECT_EQ(d.dirs, (Strings{"/x/y/pkg.libs"}));
}

TEST_F(CompiledElf, RpathOriginDirIsNormalised)
{
    std::string dyn = readelf_d("libext_rpath.so");
    ASSERT_NE(dyn.find("(RPATH)"), std::string::npos);
    ASSERT_EQ(dyn.find("(RUNPATH)"), std::string::npos);
    Deps d = read_deps(lib("libext_rpath.so"));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_TRUE(contains(d.needed, "libhelper.so"));
    EXPECT_TRUE(contains(d.needed, "libc.so.6"));
    EXPECT_EQ(d.dirs, (Strings{"/x/y/pkg.libs"}));
}

TEST_F(CompiledElf, SeveralEntriesKeepOnlyOriginOnesInOrder)
{
    Deps d = read_deps(lib("libext_two.so"));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_TRUE(contains(d.needed, "libhelper.so"));
    EXPECT_EQ(d.dirs, (Strings{"/x/y/pkg/a", "/x/y/b/c"}));
}

TEST_F(CompiledElf, OriginDirWithTrailingSlashAndDotsGivesSameResult)
{
    Deps d = read_deps(lib("libext_two.so"), "/x//y/./pkg/");
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_EQ(d.dirs, (Strings{"/x/y/pkg/a", "/x/y/b/c"}));
}

TEST_F(CompiledElf, NoOriginEntriesGiveNoDirs)
{
    Deps d = read_deps(lib("libext_plain.so"));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_TRUE(contains(d.needed, "libhelper.so"));
    EXPECT_TRUE(d.dirs.empty());
}

TEST_F(CompiledElf, HelperWithoutSearchPath)
{
    Deps d = read_deps(lib("libhelper.so"));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_FALSE(contains(d.needed, "libhelper.so"));
    EXPECT_TRUE(d.dirs.empty());
}

TEST_F(CompiledElf, NeededMatchesReadelfOrder)
{
    std::string dyn = readelf_d("libext_runpath.so");
    Strings expected;
    size_t pos = 0;
    while ((pos = dyn.find("Shared library: [", pos)) != std::string::npos) {
        pos += std::strlen("Shared library: [");
        size_t end = dyn.find(']', pos);
        ASSERT_NE(end, std::string::npos);
        expected.push_back(dyn.substr(pos, end - pos));
    }
    ASSERT_GE(expected.size(), 2u);
    Deps d = read_deps(lib("libext_runpath.so"));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_EQ(d.needed, expected);
}

// Every prefix of a real library: some status, never a crash or a read past
// the end (ASan catches it: read_deps hands over an exact-size heap copy).
TEST_F(CompiledElf, EveryTruncationReturnsAStatus)
{
    Bytes full = lib("libext_two.so");
    ASSERT_GT(full.size(), 4096u);
    size_t ok = 0, errors = 0;
    for (size_t n = 0; n < full.size(); n = n < 4096 ? n + 1 : n + 97) {
        Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        Deps d = read_deps(cut);
        if (n < 4) {
            EXPECT_EQ(d.status, MPII_ERR_INVALID) << n;
        } else if (n < sizeof(Elf64_Ehdr)) {
            EXPECT_EQ(d.status, MPII_ERR_CORRUPT) << n;
        }
        EXPECT_TRUE(d.status == MPII_OK || d.status == MPII_ERR_CORRUPT ||
                    d.status == MPII_ERR_INVALID)
            << n << ": " << mpii_strerror(d.status);
        if (d.status == MPII_OK) {
            ok++;
            // Whatever it found must be a subset of the real answer.
            for (const auto &dir : d.dirs)
                EXPECT_TRUE(dir == "/x/y/pkg/a" || dir == "/x/y/b/c") << dir;
        } else {
            errors++;
        }
    }
    EXPECT_GT(ok, 0u);
    EXPECT_GT(errors, 0u);
    Deps whole = read_deps(full);
    EXPECT_EQ(whole.status, MPII_OK);
}

// Random corruption of the ELF header, the program headers and the dynamic
// section (deterministic seed): some status, never a crash.
TEST_F(CompiledElf, RandomHeaderFlipsReturnAStatus)
{
    Bytes full = lib("libext_two.so");
    ASSERT_GE(full.size(), sizeof(Elf64_Ehdr));
    Elf64_Ehdr eh;
    std::memcpy(&eh, full.data(), sizeof eh);
    ASSERT_LE(eh.e_phoff + static_cast<uint64_t>(eh.e_phnum) * eh.e_phentsize, full.size());
    // Byte ranges worth corrupting: [begin, end).
    std::vector<std::pair<size_t, size_t>> ranges;
    ranges.emplace_back(0, sizeof eh);
    ranges.emplace_back(eh.e_phoff, eh.e_phoff + static_cast<size_t>(eh.e_phnum) * eh.e_phentsize);
    for (size_t i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        std::memcpy(&ph, full.data() + eh.e_phoff + i * eh.e_phentsize, sizeof ph);
        if (ph.p_type == PT_DYNAMIC && ph.p_offset + ph.p_filesz <= full.size())
            ranges.emplace_back(ph.p_offset, ph.p_offset + ph.p_filesz);
    }
    ASSERT_EQ(ranges.size(), 3u) << "no PT_DYNAMIC in the fixture";

    std::mt19937 rng(20240611u);
    size_t ok = 0, corrupt = 0, invalid = 0;
    for (int iter = 0; iter < 2000; iter++) {
        Bytes b = full;
        int flips = 1 + static_cast<int>(rng() % 8);
        for (int f = 0; f < flips; f++) {
            const auto &r = ranges[rng() % ranges.size()];
            size_t pos = r.first + rng() % (r.second - r.first);
            switch (rng() % 3) {
            case 0: b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
            case 1: b[pos] = static_cast<uint8_t>(rng()); break;
            default: b[pos] = (rng() % 2) ? 0xFF : 0x00; break;
            }
        }
        Deps d = read_deps(b);
        switch (d.status) {
        case MPII_OK: ok++; break;
        case MPII_ERR_CORRUPT: corrupt++; break;
        case MPII_ERR_INVALID: invalid++; break;
        default: ADD_FAILURE() << "unexpected status " << mpii_strerror(d.status); break;
        }
    }
    // The corruption must actually have reached the checks.
    EXPECT_GT(ok, 0u);
    EXPECT_GT(corrupt, 0u);
    EXPECT_GT(invalid, 0u);
}

// ---- real system libraries --------------------------------------------------

TEST(ElfSystem, RealLibraryParsesAndMatchesReadelf)
{
    const char *candidates[] = {
        "/usr/lib/python3/dist-packages/numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/x86_64-linux-gnu/libm.so.6",
    };
    int tested = 0;
    for (const char *path : candidates) {
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        SCOPED_TRACE(path);
        Bytes b = read_bytes(path);
        ASSERT_EQ(static_cast<size_t>(st.st_size), b.size());
        Deps d = read_deps(b, "/some/dir");
        ASSERT_EQ(d.status, MPII_OK) << mpii_strerror(d.status);
        EXPECT_FALSE(d.needed.empty());
        int rc = -1;
        std::string dyn = run_capture(std::string("readelf -d ") + path + " 2>/dev/null", &rc);
        if (rc == 0) {
            Strings expected;
            size_t pos = 0;
            while ((pos = dyn.find("Shared library: [", pos)) != std::string::npos) {
                pos += std::strlen("Shared library: [");
                size_t end = dyn.find(']', pos);
                ASSERT_NE(end, std::string::npos);
                expected.push_back(dyn.substr(pos, end - pos));
            }
            EXPECT_EQ(d.needed, expected);
        }
        tested++;
    }
    ASSERT_GT(tested, 0) << "no system library found";
}

// ---- hand-built images ------------------------------------------------------

// One dynamic entry: a string-valued tag (its value becomes the string's
// offset) or a raw value.
struct DynSpec {
    uint64_t tag;
    std::string str;
    bool is_str;
    uint64_t raw;
};
DynSpec S(uint64_t tag, const std::string &s) { return DynSpec{tag, s, true, 0}; }
DynSpec R(uint64_t tag, uint64_t v) { return DynSpec{tag, "", false, v}; }

struct Layout {
    size_t phoff = 0, load_ph = 0, dyn_ph = 0, dyn_off = 0, strtab_off = 0, strsz = 0;
    size_t dynent = 0;
};

constexpr uint64_t kBase = 0x400000; // vaddr = file offset + kBase: translation matters

// A minimal ELF: header, [PT_LOAD of the whole file, PT_DYNAMIC], dynamic
// section, string table. DT_STRTAB/DT_STRSZ/DT_NULL are added unless
// auto_tables is false.
template <class Ehdr, class Phdr, class Dyn>
Bytes build_elf(const std::vector<DynSpec> &entries, bool auto_tables, unsigned char cls,
                Layout *lay)
{
    std::string strtab(1, '\0');
    std::vector<std::pair<uint64_t, uint64_t>> dyn;
    for (const auto &e : entries) {
        if (e.is_str) {
            dyn.emplace_back(e.tag, strtab.size());
            strtab += e.str;
            strtab += '\0';
        } else {
            dyn.emplace_back(e.tag, e.raw);
        }
    }
    size_t phoff = sizeof(Ehdr);
    size_t dyn_off = phoff + 2 * sizeof(Phdr);
    size_t ndyn = dyn.size() + (auto_tables ? 3 : 0);
    size_t strtab_off = dyn_off + ndyn * sizeof(Dyn);
    size_t total = strtab_off + strtab.size();
    if (auto_tables) {
        dyn.emplace_back(DT_STRTAB, kBase + strtab_off);
        dyn.emplace_back(DT_STRSZ, strtab.size());
        dyn.emplace_back(DT_NULL, 0);
    }
    Bytes b(total, 0);

    Ehdr eh;
    std::memset(&eh, 0, sizeof eh);
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = cls;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_DYN;
    eh.e_machine = cls == ELFCLASS64 ? EM_X86_64 : EM_386;
    eh.e_version = EV_CURRENT;
    eh.e_phoff = phoff;
    eh.e_ehsize = sizeof(Ehdr);
    eh.e_phentsize = sizeof(Phdr);
    eh.e_phnum = 2;
    std::memcpy(b.data(), &eh, sizeof eh);

    Phdr load;
    std::memset(&load, 0, sizeof load);
    load.p_type = PT_LOAD;
    load.p_offset = 0;
    load.p_vaddr = load.p_paddr = kBase;
    load.p_filesz = load.p_memsz = total;
    load.p_flags = PF_R;
    load.p_align = 0x1000;
    std::memcpy(b.data() + phoff, &load, sizeof load);

    Phdr dph;
    std::memset(&dph, 0, sizeof dph);
    dph.p_type = PT_DYNAMIC;
    dph.p_offset = dyn_off;
    dph.p_vaddr = dph.p_paddr = kBase + dyn_off;
    dph.p_filesz = dph.p_memsz = dyn.size() * sizeof(Dyn);
    dph.p_flags = PF_R | PF_W;
    dph.p_align = 8;
    std::memcpy(b.data() + phoff + sizeof(Phdr), &dph, sizeof dph);

    for (size_t i = 0; i < dyn.size(); i++) {
        Dyn d;
        std::memset(&d, 0, sizeof d);
        d.d_tag = static_cast<decltype(d.d_tag)>(dyn[i].first);
        d.d_un.d_val = static_cast<decltype(d.d_un.d_val)>(dyn[i].second);
        std::memcpy(b.data() + dyn_off + i * sizeof(Dyn), &d, sizeof d);
    }
    std::memcpy(b.data() + strtab_off, strtab.data(), strtab.size());

    if (lay) {
        lay->phoff = phoff;
        lay->load_ph = phoff;
        lay->dyn_ph = phoff + sizeof(Phdr);
        lay->dyn_off = dyn_off;
        lay->strtab_off = strtab_off;
        lay->strsz = strtab.size();
        lay->dynent = sizeof(Dyn);
    }
    return b;
}

Bytes elf64(const std::vector<DynSpec> &e, Layout *lay = nullptr, bool auto_tables = true)
{
    return build_elf<Elf64_Ehdr, Elf64_Phdr, Elf64_Dyn>(e, auto_tables, ELFCLASS64, lay);
}
Bytes elf32(const std::vector<DynSpec> &e, Layout *lay = nullptr, bool auto_tables = true)
{
    return build_elf<Elf32_Ehdr, Elf32_Phdr, Elf32_Dyn>(e, auto_tables, ELFCLASS32, lay);
}

template <class T>
void put(Bytes &b, size_t off, T v)
{
    ASSERT_LE(off + sizeof v, b.size());
    std::memcpy(b.data() + off, &v, sizeof v);
}

Strings dirs_of(const std::string &runpath, const char *origin = "/x/y/pkg")
{
    Deps d = read_deps(elf64({S(DT_RUNPATH, runpath)}), origin);
    EXPECT_EQ(d.status, MPII_OK) << runpath;
    return d.dirs;
}

TEST(ElfBuilt, Elf64BasicWithVaddrTranslation)
{
    Deps d = read_deps(elf64({S(DT_NEEDED, "libfoo.so.1"), S(DT_RUNPATH, "$ORIGIN/../foo.libs"),
                              S(DT_NEEDED, "libc.so.6")}));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_EQ(d.needed, (Strings{"libfoo.so.1", "libc.so.6"}));
    EXPECT_EQ(d.dirs, (Strings{"/x/y/foo.libs"}));
}

TEST(ElfBuilt, Elf32IsReadToo)
{
    Deps d = read_deps(elf32({S(DT_NEEDED, "libbar.so"), S(DT_RPATH, "${ORIGIN}/lib:/opt/lib")}));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_EQ(d.needed, (Strings{"libbar.so"}));
    EXPECT_EQ(d.dirs, (Strings{"/x/y/pkg/lib"}));
}

TEST(ElfBuilt, RpathAndRunpathBothListedInOrder)
{
    Deps d = read_deps(elf64({S(DT_RPATH, "$ORIGIN/r"), S(DT_RUNPATH, "$ORIGIN/u")}));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_EQ(d.dirs, (Strings{"/x/y/pkg/r", "/x/y/pkg/u"}));
}

TEST(ElfBuilt, NormalisationRules)
{
    EXPECT_EQ(dirs_of("$ORIGIN"), (Strings{"/x/y/pkg"}));
    EXPECT_EQ(dirs_of("$ORIGIN/"), (Strings{"/x/y/pkg"}));
    EXPECT_EQ(dirs_of("$ORIGIN//a///b/"), (Strings{"/x/y/pkg/a/b"}));
    EXPECT_EQ(dirs_of("$ORIGIN/./a/./b/.."), (Strings{"/x/y/pkg/a"}));
    EXPECT_EQ(dirs_of("$ORIGIN/../../../../../.."), (Strings{"/"}));
    EXPECT_EQ(dirs_of("$ORIGIN/../../../../z"), (Strings{"/z"}));
    EXPECT_EQ(dirs_of("$ORIGIN/.a/..b/..."), (Strings{"/x/y/pkg/.a/..b/..."}));
    EXPECT_EQ(dirs_of("${ORIGIN}"), (Strings{"/x/y/pkg"}));
    EXPECT_EQ(dirs_of("${ORIGIN}.libs"), (Strings{"/x/y/pkg.libs"}));
    EXPECT_EQ(dirs_of("$ORIGIN/lib", "/"), (Strings{"/lib"}));
}

TEST(ElfBuilt, DuplicatesAndEmptyEntriesDropped)
{
    EXPECT_EQ(dirs_of("$ORIGIN/a:$ORIGIN/./a/:${ORIGIN}//a::$ORIGIN/b:$ORIGIN/a:"),
              (Strings{"/x/y/pkg/a", "/x/y/pkg/b"}));
    Deps d = read_deps(elf64({S(DT_RPATH, "$ORIGIN/a"), S(DT_RUNPATH, "$ORIGIN/a:$ORIGIN/c")}));
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_EQ(d.dirs, (Strings{"/x/y/pkg/a", "/x/y/pkg/c"}));
}

TEST(ElfBuilt, EntriesThatAreNotOriginRelativeAreIgnored)
{
    EXPECT_EQ(dirs_of("/usr/lib:/opt/$LIB:relative/dir:"), Strings{});
    EXPECT_EQ(dirs_of("$ORIGINAL/x:$ORIGIN_x:$ORIGIN1"), Strings{}); // not the token
    EXPECT_EQ(dirs_of("$ORIGIN/$LIB:$ORIGIN/${PLATFORM}/x:$ORIGIN/ok"), (Strings{"/x/y/pkg/ok"}));
    EXPECT_EQ(dirs_of("lib/$ORIGIN"), Strings{}); // relative after expansion
    EXPECT_EQ(dirs_of("${ORIGIN/x:$ORIGIN}/y"), (Strings{"/x/y/pkg}/y"})); // '$' kept literally
    std::string long_comp(5000, 'a');
    EXPECT_EQ(dirs_of("$ORIGIN/" + long_comp + ":$ORIGIN/short"), (Strings{"/x/y/pkg/short"}));
}

TEST(ElfBuilt, NoDynamicSegmentIsEmptyOk)
{
    Layout lay;
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")}, &lay);
    put<uint32_t>(b, lay.dyn_ph + offsetof(Elf64_Phdr, p_type), PT_NOTE);
    Deps d = read_deps(b);
    EXPECT_EQ(d.status, MPII_OK);
    EXPECT_TRUE(d.needed.empty());
    EXPECT_TRUE(d.dirs.empty());

    Bytes none = elf64({});
    put<uint16_t>(none, offsetof(Elf64_Ehdr, e_phnum), 0);
    EXPECT_EQ(read_deps(none).status, MPII_OK);
}

TEST(ElfBuilt, DtNullEndsTheSection)
{
    // Built as NEEDED first, NEEDED after, STRTAB, STRSZ, NULL; reordered to
    // NEEDED first, STRTAB, STRSZ, NULL, NEEDED after.
    Layout lay;
    Bytes b = elf64({S(DT_NEEDED, "libfirst.so"), S(DT_NEEDED, "libafter.so")}, &lay);
    std::vector<Elf64_Dyn> dyn(5);
    std::memcpy(dyn.data(), b.data() + lay.dyn_off, 5 * sizeof(Elf64_Dyn));
    ASSERT_EQ(dyn[4].d_tag, DT_NULL);
    std::vector<Elf64_Dyn> reordered{dyn[0], dyn[2], dyn[3], dyn[4], dyn[1]};
    std::memcpy(b.data() + lay.dyn_off, reordered.data(), 5 * sizeof(Elf64_Dyn));
    Deps d = read_deps(b);
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_EQ(d.needed, (Strings{"libfirst.so"}));

    // DT_STRTAB/DT_STRSZ after DT_NULL: NEEDED without a string table.
    Deps e = read_deps(elf64({S(DT_NEEDED, "libfirst.so"), R(DT_NULL, 0)}));
    EXPECT_EQ(e.status, MPII_ERR_CORRUPT);
}

TEST(ElfBuilt, NotElfIsInvalid)
{
    const std::string text = "#!/usr/bin/env python3\nprint('hello')\n";
    EXPECT_EQ(read_deps(Bytes(text.begin(), text.end())).status, MPII_ERR_INVALID);
    EXPECT_EQ(read_deps(Bytes{}).status, MPII_ERR_INVALID);
    EXPECT_EQ(read_deps(Bytes{0x7f, 'E', 'L'}).status, MPII_ERR_INVALID);
}

TEST(ElfBuilt, UnsupportedIdentIsInvalid)
{
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")});
    Bytes be = b;
    be[EI_DATA] = ELFDATA2MSB;
    EXPECT_EQ(read_deps(be).status, MPII_ERR_INVALID);
    Bytes cls = b;
    cls[EI_CLASS] = ELFCLASSNONE;
    EXPECT_EQ(read_deps(cls).status, MPII_ERR_INVALID);
    Bytes ver = b;
    ver[EI_VERSION] = 2;
    EXPECT_EQ(read_deps(ver).status, MPII_ERR_INVALID);
}

TEST(ElfBuilt, BadArgumentsAreInvalid)
{
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")});
    mpii_elf_deps out;
    EXPECT_EQ(mpii_elf_deps_read(b.data(), b.size(), "relative/dir", &out), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_elf_deps_read(b.data(), b.size(), nullptr, &out), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_elf_deps_read(nullptr, b.size(), "/x", &out), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_elf_deps_read(b.data(), b.size(), "/x", nullptr), MPII_ERR_INVALID);
    std::string long_origin = "/" + std::string(5000, 'a');
    EXPECT_EQ(mpii_elf_deps_read(b.data(), b.size(), long_origin.c_str(), &out), MPII_ERR_TOOLONG);
    mpii_elf_deps_free(nullptr);
    mpii_elf_deps_free(&out);
}

TEST(ElfBuilt, TruncatedHeaderIsCorrupt)
{
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")});
    EXPECT_EQ(read_deps(Bytes(b.begin(), b.begin() + 20)).status, MPII_ERR_CORRUPT);
    Bytes b32 = elf32({S(DT_NEEDED, "libfoo.so")});
    EXPECT_EQ(read_deps(Bytes(b32.begin(), b32.begin() + 51)).status, MPII_ERR_CORRUPT);
    EXPECT_EQ(read_deps(b32).status, MPII_OK);
}

TEST(ElfBuilt, ProgramHeadersOutsideBufferAreCorrupt)
{
    Layout lay;
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")}, &lay);
    Bytes far = b;
    put<uint64_t>(far, offsetof(Elf64_Ehdr, e_phoff), b.size() - 10);
    EXPECT_EQ(read_deps(far).status, MPII_ERR_CORRUPT);
    Bytes huge = b;
    put<uint64_t>(huge, offsetof(Elf64_Ehdr, e_phoff), UINT64_MAX - 8);
    EXPECT_EQ(read_deps(huge).status, MPII_ERR_CORRUPT);
    Bytes many = b;
    put<uint16_t>(many, offsetof(Elf64_Ehdr, e_phnum), 0xfff0);
    EXPECT_EQ(read_deps(many).status, MPII_ERR_CORRUPT);
    Bytes small = b;
    put<uint16_t>(small, offsetof(Elf64_Ehdr, e_phentsize), sizeof(Elf64_Phdr) - 1);
    EXPECT_EQ(read_deps(small).status, MPII_ERR_CORRUPT);
    Bytes zero = b;
    put<uint16_t>(zero, offsetof(Elf64_Ehdr, e_phentsize), 0);
    EXPECT_EQ(read_deps(zero).status, MPII_ERR_CORRUPT);
}

TEST(ElfBuilt, ExtendedProgramHeaderCount)
{
    Layout lay;
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")}, &lay);
    // PN_XNUM: the count lives in section header 0's sh_info.
    size_t shoff = b.size();
    b.resize(b.size() + sizeof(Elf64_Shdr), 0);
    Elf64_Shdr sh;
    std::memset(&sh, 0, sizeof sh);
    sh.sh_info = 2;
    std::memcpy(b.data() + shoff, &sh, sizeof sh);
    put<uint64_t>(b, offsetof(Elf64_Ehdr, e_shoff), shoff);
    put<uint16_t>(b, offsetof(Elf64_Ehdr, e_shentsize), sizeof(Elf64_Shdr));
    put<uint16_t>(b, offsetof(Elf64_Ehdr, e_shnum), 0);
    put<uint16_t>(b, offsetof(Elf64_Ehdr, e_phnum), PN_XNUM);
    Deps d = read_deps(b);
    ASSERT_EQ(d.status, MPII_OK);
    EXPECT_EQ(d.needed, (Strings{"libfoo.so"}));
    Bytes bad = b;
    put<uint64_t>(bad, offsetof(Elf64_Ehdr, e_shoff), b.size() - 8);
    EXPECT_EQ(read_deps(bad).status, MPII_ERR_CORRUPT);
    Bytes lots = b;
    put<uint32_t>(lots, shoff + offsetof(Elf64_Shdr, sh_info), 0xffffffffu);
    EXPECT_EQ(read_deps(lots).status, MPII_ERR_CORRUPT);
}

TEST(ElfBuilt, DynamicSegmentOutsideBufferIsCorrupt)
{
    Layout lay;
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")}, &lay);
    Bytes off = b;
    put<uint64_t>(off, lay.dyn_ph + offsetof(Elf64_Phdr, p_offset), b.size() + 1);
    EXPECT_EQ(read_deps(off).status, MPII_ERR_CORRUPT);
    Bytes sz = b;
    put<uint64_t>(sz, lay.dyn_ph + offsetof(Elf64_Phdr, p_filesz), UINT64_MAX);
    EXPECT_EQ(read_deps(sz).status, MPII_ERR_CORRUPT);
    Bytes two = b; // a second PT_DYNAMIC
    put<uint32_t>(two, lay.load_ph + offsetof(Elf64_Phdr, p_type), PT_DYNAMIC);
    EXPECT_EQ(read_deps(two).status, MPII_ERR_CORRUPT);
}

TEST(ElfBuilt, StringTableMustLieInALoadSegment)
{
    Layout lay;
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")}, &lay);
    // The DT_STRTAB entry is the second to last (before DT_STRSZ, DT_NULL).
    size_t strtab_ent = lay.dyn_off + 1 * lay.dynent;
    size_t strsz_ent = lay.dyn_off + 2 * lay.dynent;
    ASSERT_EQ(b[strtab_ent], DT_STRTAB);
    ASSERT_EQ(b[strsz_ent], DT_STRSZ);
    size_t val = offsetof(Elf64_Dyn, d_un);

    Bytes untranslated = b; // a file offset where a vaddr belongs
    put<uint64_t>(untranslated, strtab_ent + val, lay.strtab_off);
    EXPECT_EQ(read_deps(untranslated).status, MPII_ERR_CORRUPT);

    Bytes past = b; // the range ends after the segment's file image
    put<uint64_t>(past, strsz_ent + val, lay.strsz + 1);
    EXPECT_EQ(read_deps(past).status, MPII_ERR_CORRUPT);

    Bytes wrap = b;
    put<uint64_t>(wrap, strsz_ent + val, UINT64_MAX);
    EXPECT_EQ(read_deps(wrap).status, MPII_ERR_CORRUPT);

    Bytes noload = b; // no PT_LOAD at all
    put<uint32_t>(noload, lay.load_ph + offsetof(Elf64_Phdr, p_type), PT_NOTE);
    EXPECT_EQ(read_deps(noload).status, MPII_ERR_CORRUPT);

    Bytes seg_past_file = b; // the segment claims more file bytes than exist
    put<uint64_t>(seg_past_file, lay.load_ph + offsetof(Elf64_Phdr, p_offset), 0x1000000);
    EXPECT_EQ(read_deps(seg_past_file).status, MPII_ERR_CORRUPT);

    Bytes zero = b;
    put<uint64_t>(zero, strsz_ent + val, 0);
    EXPECT_EQ(read_deps(zero).status, MPII_ERR_CORRUPT);

    Bytes conflict = elf64({S(DT_NEEDED, "libfoo.so"), R(DT_STRSZ, 3)});
    EXPECT_EQ(read_deps(conflict).status, MPII_ERR_CORRUPT);
    Bytes missing = elf64({S(DT_NEEDED, "libfoo.so"), R(DT_NULL, 0)}, nullptr, false);
    EXPECT_EQ(read_deps(missing).status, MPII_ERR_CORRUPT);
    // Without string-valued entries no string table is needed.
    EXPECT_EQ(read_deps(elf64({R(DT_FLAGS, 0), R(DT_NULL, 0)}, nullptr, false)).status, MPII_OK);
}

TEST(ElfBuilt, StringsMustBeTerminatedInsideTheTable)
{
    Layout lay;
    Bytes b = elf64({S(DT_NEEDED, "libfoo.so")}, &lay);
    size_t strsz_ent = lay.dyn_off + 2 * lay.dynent;
    size_t val = offsetof(Elf64_Dyn, d_un);
    Bytes cut = b; // DT_STRSZ ends before "libfoo.so"'s NUL
    put<uint64_t>(cut, strsz_ent + val, lay.strsz - 1);
    EXPECT_EQ(read_deps(cut).status, MPII_ERR_CORRUPT);
    Bytes nonul = b; // the NUL overwritten: the string runs to the end of the file
    nonul.back() = 'x';
    EXPECT_EQ(read_deps(nonul).status, MPII_ERR_CORRUPT);
    Bytes beyond = elf64({R(DT_NEEDED, 1000)});
    EXPECT_EQ(read_deps(beyond).status, MPII_ERR_CORRUPT);
    Bytes rbeyond = elf64({R(DT_RUNPATH, UINT64_MAX)});
    EXPECT_EQ(read_deps(rbeyond).status, MPII_ERR_CORRUPT);
}

TEST(ElfBuilt, LimitsAreEnforced)
{
    std::vector<DynSpec> at_limit(MPII_ELF_MAX_NEEDED, R(DT_NEEDED, 0)); // all ""
    Deps ok = read_deps(elf64(at_limit));
    EXPECT_EQ(ok.status, MPII_OK);
    EXPECT_EQ(ok.needed.size(), static_cast<size_t>(MPII_ELF_MAX_NEEDED));
    at_limit.push_back(R(DT_NEEDED, 0));
    EXPECT_EQ(read_deps(elf64(at_limit)).status, MPII_ERR_CORRUPT);

    EXPECT_EQ(read_deps(elf64({S(DT_NEEDED, std::string(5000, 'n'))})).status, MPII_ERR_CORRUPT);

    // Many entries pointing at one long search path: bounded total work.
    std::string path = "$ORIGIN/" + std::string(40000, 'p');
    std::vector<DynSpec> repeated{S(DT_RUNPATH, path)};
    EXPECT_EQ(read_deps(elf64(repeated)).status, MPII_OK);
    repeated.push_back(R(DT_RUNPATH, 1)); // same string again: over the budget
    EXPECT_EQ(read_deps(elf64(repeated)).status, MPII_ERR_CORRUPT);
}

} // namespace
