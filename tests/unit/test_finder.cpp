// test_finder.cpp — unit tests of mpii_find_in_dir (core/src/finder.c): on
// real temporary directory trees, its decision (kind, loader, origin,
// package directory) is compared with CPython's own
// importlib.machinery.FileFinder run by /usr/bin/python3 on the same tree and
// name; plus the listing callback's contract (MPII_ERR_GAP propagates, only
// directory listings are asked for, no per-candidate probe), argument checks,
// mpii_path_join and the suffix table.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mpiimport/finder.h"
#include "mpiimport/image.h"
#include "mpiimport/status.h"
#include "python_runner.h"

namespace {

using mpii_test::kPython;

using mpii_test::run_python;
using mpii_test::shell_quote;

std::vector<std::string> lines(const std::string &s)
{
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line))
        out.push_back(line);
    return out;
}

struct ImageDeleter {
    void operator()(mpii_image *img) const { mpii_image_destroy(img); }
};

// The listing callback of these tests: reads the real directory, resolves
// symlinks and DT_UNKNOWN with stat, and keeps what it read in an image.
struct FsLister {
    std::unique_ptr<mpii_image, ImageDeleter> img;
    int calls = 0;
    std::vector<std::string> dirs;

    FsLister()
    {
        mpii_image *p = nullptr;
        EXPECT_EQ(mpii_image_create(&p), MPII_OK);
        img.reset(p);
    }
};

mpii_dirent_type resolve(int dfd, const struct dirent *d)
{
    if (d->d_type == DT_REG)
        return MPII_DIRENT_FILE;
    if (d->d_type == DT_DIR)
        return MPII_DIRENT_DIR;
    if (d->d_type == DT_LNK || d->d_type == DT_UNKNOWN) {
        struct stat st;
        if (fstatat(dfd, d->d_name, &st, 0) != 0)
            return MPII_DIRENT_OTHER; // dangling
        if (S_ISREG(st.st_mode))
            return MPII_DIRENT_FILE;
        if (S_ISDIR(st.st_mode))
            return MPII_DIRENT_DIR;
    }
    return MPII_DIRENT_OTHER;
}

mpii_status fs_listing(void *arg, const char *dir, const mpii_entry **listing, unsigned *miss_flags)
{
    FsLister *l = static_cast<FsLister *>(arg);
    l->calls++;
    l->dirs.emplace_back(dir);
    *listing = nullptr;
    *miss_flags = 0;
    if (const mpii_entry *e = mpii_image_lookup(l->img.get(), MPII_ENTRY_LISTING, dir)) {
        *listing = e;
        return MPII_OK;
    }
    if (const mpii_entry *m = mpii_image_lookup(l->img.get(), MPII_ENTRY_MISS, dir)) {
        *miss_flags = m->flags;
        return MPII_OK;
    }
    DIR *d = opendir(dir);
    if (d == nullptr) {
        struct stat st;
        const unsigned flags = stat(dir, &st) == 0 ? MPII_MISS_NOT_DIR : 0u;
        mpii_status st2 = mpii_image_add_miss(l->img.get(), dir, flags);
        if (st2 != MPII_OK)
            return st2;
        *miss_flags = flags;
        return MPII_OK;
    }
    std::vector<std::string> names;
    std::vector<mpii_dirent_type> types;
    while (const struct dirent *e = readdir(d)) {
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0)
            continue;
        names.emplace_back(e->d_name);
        types.push_back(resolve(dirfd(d), e));
    }
    closedir(d);
    std::vector<const char *> ptrs;
    for (const std::string &n : names)
        ptrs.push_back(n.c_str());
    mpii_status st = mpii_image_add_listing(l->img.get(), dir, ptrs.data(), types.data(), ptrs.size());
    if (st != MPII_OK)
        return st;
    *listing = mpii_image_lookup(l->img.get(), MPII_ENTRY_LISTING, dir);
    return *listing ? MPII_OK : MPII_ERR_NOTFOUND;
}

const char *loader_class(mpii_loader_kind k)
{
    switch (k) {
    case MPII_LOADER_EXTENSION: return "ExtensionFileLoader";
    case MPII_LOADER_SOURCE: return "SourceFileLoader";
    case MPII_LOADER_BYTECODE: return "SourcelessFileLoader";
    }
    return "?";
}

const char *kind_name(mpii_find_kind k)
{
    switch (k) {
    case MPII_FIND_NONE: return "none";
    case MPII_FIND_MODULE: return "module";
    case MPII_FIND_PACKAGE: return "package";
    case MPII_FIND_NAMESPACE: return "namespace";
    }
    return "?";
}

// CPython's decision: kind, loader class, origin, submodule_search_locations.
const char *const kFindSpecScript =
    "import sys, importlib.machinery as m, importlib._bootstrap_external as b\n"
    "d, n = sys.argv[1], sys.argv[2]\n"
    "s = m.FileFinder(d, *b._get_supported_file_loaders()).find_spec(n)\n"
    "if s is None:\n"
    "    print('none'); print(''); print(''); print('')\n"
    "else:\n"
    "    locs = s.submodule_search_locations\n"
    "    kind = 'namespace' if s.loader is None else ('package' if locs is not None else 'module')\n"
    "    print(kind)\n"
    "    print(type(s.loader).__name__ if s.loader is not None else '')\n"
    "    print(s.origin if s.origin is not None and s.loader is not None else '')\n"
    "    print('\\t'.join(locs) if locs is not None else '')\n";

class FinderTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (access(kPython, X_OK) != 0)
            GTEST_SKIP() << kPython << " is not available";
        char tmpl[] = "/tmp/mpii_finder_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        // The suffixes in importlib's loader order, from the interpreter.
        const std::string out = run_python(
            "import importlib.machinery as m, importlib._bootstrap_external as b\n"
            "for loader, suffixes in b._get_supported_file_loaders():\n"
            "    for s in suffixes: print(loader.__name__, s)\n"
            "print('EXT', '\\t'.join(m.EXTENSION_SUFFIXES))\n",
            {});
        std::vector<std::string> expected_order;
        for (const std::string &line : lines(out)) {
            const size_t sp = line.find(' ');
            ASSERT_NE(sp, std::string::npos) << line;
            const std::string cls = line.substr(0, sp), suffix = line.substr(sp + 1);
            if (cls == "EXT") {
                std::istringstream in(suffix);
                std::string s;
                while (std::getline(in, s, '\t'))
                    ext_.push_back(s);
                continue;
            }
            mpii_loader_kind k = cls == "ExtensionFileLoader"  ? MPII_LOADER_EXTENSION
                                 : cls == "SourceFileLoader"   ? MPII_LOADER_SOURCE
                                 : cls == "SourcelessFileLoader" ? MPII_LOADER_BYTECODE
                                                                 : static_cast<mpii_loader_kind>(0);
            ASSERT_NE(static_cast<int>(k), 0) << "unknown loader " << cls;
            ASSERT_EQ(mpii_suffix_table_add(&suffixes_, suffix.c_str(), k), MPII_OK) << suffix;
            expected_order.push_back(suffix);
        }
        // Extension suffixes (EXTENSION_SUFFIXES order), then .py, then .pyc.
        std::vector<std::string> want = ext_;
        want.push_back(".py");
        want.push_back(".pyc");
        ASSERT_EQ(expected_order, want);
        ASSERT_GE(ext_.size(), 2u);
    }
    void TearDown() override
    {
        if (!dir_.empty())
            std::filesystem::remove_all(dir_);
    }

    std::string path(const std::string &rel) const { return dir_ + "/" + rel; }
    void touch(const std::string &rel) const
    {
        std::filesystem::create_directories(std::filesystem::path(path(rel)).parent_path());
        std::ofstream(path(rel)) << "";
        ASSERT_TRUE(std::filesystem::is_regular_file(path(rel))) << rel;
    }
    void mkdir_p(const std::string &rel) const { std::filesystem::create_directories(path(rel)); }
    void symlink_to(const std::string &target, const std::string &rel) const
    {
        ASSERT_EQ(symlink(target.c_str(), path(rel).c_str()), 0) << rel << ": " << std::strerror(errno);
    }

    // Runs both finders on (dir, name); every field must agree, and the kind
    // must be the expected one.
    mpii_find_result expect_like_cpython(const std::string &dir, const std::string &name,
                                         mpii_find_kind expected)
    {
        FsLister lister;
        mpii_find_result r{};
        std::memset(&r, 0x5A, sizeof r);
        const mpii_status st = mpii_find_in_dir(&suffixes_, fs_listing, &lister, dir.c_str(), name.c_str(), &r);
        EXPECT_EQ(st, MPII_OK) << mpii_strerror(st);
        const std::vector<std::string> py = lines(run_python(kFindSpecScript, {dir, name}));
        EXPECT_EQ(py.size(), 4u);
        if (st != MPII_OK || py.size() != 4)
            return r;
        EXPECT_EQ(py[0], kind_name(expected)) << "CPython itself disagrees with the test's expectation";
        EXPECT_EQ(kind_name(r.kind), py[0]) << dir << " " << name;
        if (r.kind == MPII_FIND_MODULE || r.kind == MPII_FIND_PACKAGE) {
            EXPECT_EQ(loader_class(r.loader), py[1]);
            EXPECT_EQ(r.origin, py[2]);
        } else {
            EXPECT_STREQ(r.origin, "");
        }
        if (r.kind == MPII_FIND_PACKAGE || r.kind == MPII_FIND_NAMESPACE)
            EXPECT_EQ(r.location, py[3]);
        else
            EXPECT_TRUE(py[3].empty());
        return r;
    }

    std::string dir_;
    std::vector<std::string> ext_;
    mpii_suffix_table suffixes_{};
};

} // namespace

// ---- decisions compared with CPython ----

TEST_F(FinderTest, PlainSourceModule)
{
    touch("x.py");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
    EXPECT_EQ(r.loader, MPII_LOADER_SOURCE);
    EXPECT_EQ(std::string(r.origin), path("x.py"));
}

TEST_F(FinderTest, RegularPackage)
{
    touch("x/__init__.py");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_PACKAGE);
    EXPECT_EQ(r.loader, MPII_LOADER_SOURCE);
    EXPECT_EQ(std::string(r.origin), path("x/__init__.py"));
    EXPECT_EQ(std::string(r.location), path("x"));
}

TEST_F(FinderTest, SourcelessPackage)
{
    touch("x/__init__.pyc");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_PACKAGE);
    EXPECT_EQ(r.loader, MPII_LOADER_BYTECODE);
    EXPECT_EQ(std::string(r.origin), path("x/__init__.pyc"));
}

TEST_F(FinderTest, ExtensionPackage)
{
    touch("x/__init__" + ext_[0]); // e.g. __init__.cpython-311-x86_64-linux-gnu.so, empty
    touch("x/__init__.pyc");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_PACKAGE);
    EXPECT_EQ(r.loader, MPII_LOADER_EXTENSION);
    EXPECT_EQ(std::string(r.origin), path("x/__init__" + ext_[0]));
}

TEST_F(FinderTest, PackageWinsOverModule)
{
    touch("x/__init__.py");
    touch("x.py");
    touch("x" + ext_[0]);
    expect_like_cpython(dir_, "x", MPII_FIND_PACKAGE);
}

TEST_F(FinderTest, FirstExtensionSuffixWins)
{
    touch("x.py");
    touch("x.so");
    touch("x.abi3.so");
    touch("x" + ext_[0]);
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
    EXPECT_EQ(r.loader, MPII_LOADER_EXTENSION);
    EXPECT_EQ(std::string(r.origin), path("x" + ext_[0]));
}

TEST_F(FinderTest, LaterExtensionSuffixBeatsSource)
{
    touch("x.py");
    touch("x.so");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
    EXPECT_EQ(r.loader, MPII_LOADER_EXTENSION);
    EXPECT_EQ(std::string(r.origin), path("x.so"));
}

TEST_F(FinderTest, SourceWinsOverBytecode)
{
    touch("x.py");
    touch("x.pyc");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
    EXPECT_EQ(r.loader, MPII_LOADER_SOURCE);
}

TEST_F(FinderTest, SourcelessModule)
{
    touch("x.pyc");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
    EXPECT_EQ(r.loader, MPII_LOADER_BYTECODE);
}

TEST_F(FinderTest, DirectoryWithoutInitIsNamespace)
{
    mkdir_p("x/sub");
    touch("x/other.py");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_NAMESPACE);
    EXPECT_EQ(std::string(r.location), path("x"));
}

TEST_F(FinderTest, ModuleWinsOverNamespaceDirectory)
{
    mkdir_p("x");
    touch("x.py");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
    EXPECT_EQ(std::string(r.origin), path("x.py"));
    EXPECT_STREQ(r.location, "");
}

TEST_F(FinderTest, InitThatIsADirectoryDoesNotMakeAPackage)
{
    mkdir_p("x/__init__.py");
    expect_like_cpython(dir_, "x", MPII_FIND_NAMESPACE);
}

TEST_F(FinderTest, DirectoryNamedLikeAModuleIsNotAModule)
{
    mkdir_p("x.py");
    expect_like_cpython(dir_, "x", MPII_FIND_NONE);
    touch("x.pyc");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
    EXPECT_EQ(r.loader, MPII_LOADER_BYTECODE);
}

TEST_F(FinderTest, SymlinkToFileIsAModule)
{
    touch("real/target.py");
    symlink_to(path("real/target.py"), "x.py");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
    EXPECT_EQ(std::string(r.origin), path("x.py")); // the link's path, not the target's
}

TEST_F(FinderTest, DanglingSymlinkIsNothing)
{
    symlink_to(path("does-not-exist.py"), "x.py");
    expect_like_cpython(dir_, "x", MPII_FIND_NONE);
}

TEST_F(FinderTest, SymlinkToPackageDirectoryIsAPackage)
{
    touch("real/pkg/__init__.py");
    symlink_to(path("real/pkg"), "x");
    mpii_find_result r = expect_like_cpython(dir_, "x", MPII_FIND_PACKAGE);
    EXPECT_EQ(std::string(r.location), path("x"));
}

TEST_F(FinderTest, PlainFileNamedLikeTheModuleIsIgnored)
{
    touch("x"); // no suffix
    expect_like_cpython(dir_, "x", MPII_FIND_NONE);
    touch("x.py");
    expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
}

TEST_F(FinderTest, DanglingSymlinkNamedLikeTheModuleIsIgnored)
{
    symlink_to(path("gone"), "x");
    expect_like_cpython(dir_, "x", MPII_FIND_NONE);
    touch("x.py");
    expect_like_cpython(dir_, "x", MPII_FIND_MODULE);
}

TEST_F(FinderTest, MissingNameIsNothing)
{
    touch("y.py");
    touch("xx.py");
    touch("X.py"); // case matters on Linux
    mkdir_p("xy");
    expect_like_cpython(dir_, "x", MPII_FIND_NONE);
}

TEST_F(FinderTest, MissingDirectoryIsNothing)
{
    expect_like_cpython(path("no-such-dir"), "x", MPII_FIND_NONE);
}

TEST_F(FinderTest, FileAsPathEntryIsNothing)
{
    touch("app.zip");
    expect_like_cpython(path("app.zip"), "x", MPII_FIND_NONE);
}

TEST_F(FinderTest, TrailingSlashOnPathEntry)
{
    touch("x.py");
    touch("p/__init__.py");
    mpii_find_result r = expect_like_cpython(dir_ + "/", "x", MPII_FIND_MODULE);
    EXPECT_EQ(std::string(r.origin), path("x.py"));
    r = expect_like_cpython(dir_ + "/", "p", MPII_FIND_PACKAGE);
    EXPECT_EQ(std::string(r.location), path("p"));
}

TEST_F(FinderTest, DeeperPathEntry)
{
    touch("site/pkg/sub/__init__.py");
    touch("site/pkg/mod.py");
    expect_like_cpython(path("site/pkg"), "sub", MPII_FIND_PACKAGE);
    expect_like_cpython(path("site/pkg"), "mod", MPII_FIND_MODULE);
}

// ---- the listing callback's contract ----

TEST_F(FinderTest, ModuleLookupAsksOnlyForTheBaseListing)
{
    touch("x.py");
    touch("x.pyc");
    touch("x"); // a file named like the module: still no listing of it
    FsLister lister;
    mpii_find_result r{};
    ASSERT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, dir_.c_str(), "x", &r), MPII_OK);
    EXPECT_EQ(r.kind, MPII_FIND_MODULE);
    EXPECT_EQ(lister.calls, 1);
    ASSERT_EQ(lister.dirs.size(), 1u);
    EXPECT_EQ(lister.dirs[0], dir_);

    FsLister lister2;
    ASSERT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister2, dir_.c_str(), "absent", &r), MPII_OK);
    EXPECT_EQ(r.kind, MPII_FIND_NONE);
    EXPECT_EQ(lister2.calls, 1);
}

TEST_F(FinderTest, PackageLookupAsksOnlyForDirectoryListings)
{
    touch("x/__init__.pyc");
    FsLister lister;
    mpii_find_result r{};
    ASSERT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, dir_.c_str(), "x", &r), MPII_OK);
    EXPECT_EQ(r.kind, MPII_FIND_PACKAGE);
    ASSERT_GE(lister.calls, 2);
    EXPECT_LE(static_cast<size_t>(lister.calls), 1 + suffixes_.count);
    EXPECT_EQ(lister.dirs[0], dir_);
    for (size_t i = 1; i < lister.dirs.size(); i++)
        EXPECT_EQ(lister.dirs[i], path("x")) << "asked for something other than a directory listing";
}

namespace {

struct GapLister {
    FsLister fs;
    std::string gap_dir; // "" = every directory
    int calls = 0;
};

mpii_status gap_listing(void *arg, const char *dir, const mpii_entry **listing, unsigned *miss_flags)
{
    GapLister *g = static_cast<GapLister *>(arg);
    g->calls++;
    if (g->gap_dir.empty() || g->gap_dir == dir)
        return MPII_ERR_GAP;
    return fs_listing(&g->fs, dir, listing, miss_flags);
}

} // namespace

TEST_F(FinderTest, GapInBaseListingPropagates)
{
    touch("x.py");
    GapLister g;
    mpii_find_result r{};
    EXPECT_EQ(mpii_find_in_dir(&suffixes_, gap_listing, &g, dir_.c_str(), "x", &r), MPII_ERR_GAP);
    EXPECT_EQ(g.calls, 1);
    EXPECT_NE(r.kind, MPII_FIND_MODULE);
}

TEST_F(FinderTest, GapInPackageListingPropagates)
{
    touch("x/__init__.py");
    touch("x.py");
    GapLister g;
    g.gap_dir = path("x");
    mpii_find_result r{};
    EXPECT_EQ(mpii_find_in_dir(&suffixes_, gap_listing, &g, dir_.c_str(), "x", &r), MPII_ERR_GAP);
    // Once the listing is known, the same question is answered.
    g.gap_dir = "/nowhere";
    EXPECT_EQ(mpii_find_in_dir(&suffixes_, gap_listing, &g, dir_.c_str(), "x", &r), MPII_OK);
    EXPECT_EQ(r.kind, MPII_FIND_PACKAGE);
}

TEST_F(FinderTest, OtherCallbackErrorsPropagate)
{
    auto failing = [](void *, const char *, const mpii_entry **, unsigned *) -> mpii_status {
        return MPII_ERR_TIMEOUT;
    };
    mpii_find_result r{};
    EXPECT_EQ(mpii_find_in_dir(&suffixes_, failing, nullptr, dir_.c_str(), "x", &r), MPII_ERR_TIMEOUT);
}

TEST_F(FinderTest, ListingFromAHandBuiltImage)
{
    // No file system: the listings come from an image, as on a non-root rank.
    FsLister lister;
    const char *root_names[] = {"pkg", "mod.py", "ns"};
    const mpii_dirent_type root_types[] = {MPII_DIRENT_DIR, MPII_DIRENT_FILE, MPII_DIRENT_DIR};
    ASSERT_EQ(mpii_image_add_listing(lister.img.get(), "/virtual", root_names, root_types, 3), MPII_OK);
    const char *pkg_names[] = {"__init__.py"};
    const mpii_dirent_type pkg_types[] = {MPII_DIRENT_FILE};
    ASSERT_EQ(mpii_image_add_listing(lister.img.get(), "/virtual/pkg", pkg_names, pkg_types, 1), MPII_OK);
    ASSERT_EQ(mpii_image_add_listing(lister.img.get(), "/virtual/ns", nullptr, nullptr, 0), MPII_OK);
    mpii_find_result r{};
    ASSERT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, "/virtual", "pkg", &r), MPII_OK);
    EXPECT_EQ(r.kind, MPII_FIND_PACKAGE);
    EXPECT_STREQ(r.origin, "/virtual/pkg/__init__.py");
    EXPECT_STREQ(r.location, "/virtual/pkg");
    ASSERT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, "/virtual", "mod", &r), MPII_OK);
    EXPECT_EQ(r.kind, MPII_FIND_MODULE);
    EXPECT_STREQ(r.origin, "/virtual/mod.py");
    ASSERT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, "/virtual", "ns", &r), MPII_OK);
    EXPECT_EQ(r.kind, MPII_FIND_NAMESPACE);
    EXPECT_STREQ(r.location, "/virtual/ns");
    ASSERT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, "/virtual", "nope", &r), MPII_OK);
    EXPECT_EQ(r.kind, MPII_FIND_NONE);
}

TEST_F(FinderTest, InvalidArguments)
{
    FsLister lister;
    mpii_find_result r{};
    const char *bad_names[] = {"", "a.b", "a/b", "."};
    for (const char *n : bad_names)
        EXPECT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, dir_.c_str(), n, &r), MPII_ERR_INVALID)
            << '"' << n << '"';
    EXPECT_EQ(mpii_find_in_dir(nullptr, fs_listing, &lister, dir_.c_str(), "x", &r), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_find_in_dir(&suffixes_, nullptr, &lister, dir_.c_str(), "x", &r), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, nullptr, "x", &r), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, dir_.c_str(), nullptr, &r), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_find_in_dir(&suffixes_, fs_listing, &lister, dir_.c_str(), "x", nullptr), MPII_ERR_INVALID);
    EXPECT_EQ(lister.calls, 0);
}

// ---- helpers ----

TEST(FinderPathJoin, JoinsLikeImportlib)
{
    char out[64];
    ASSERT_EQ(mpii_path_join(out, sizeof out, "/a/b", "c"), MPII_OK);
    EXPECT_STREQ(out, "/a/b/c");
    ASSERT_EQ(mpii_path_join(out, sizeof out, "/a/b/", "c"), MPII_OK);
    EXPECT_STREQ(out, "/a/b/c");
    ASSERT_EQ(mpii_path_join(out, sizeof out, "/a//", "c"), MPII_OK);
    EXPECT_STREQ(out, "/a/c");
    ASSERT_EQ(mpii_path_join(out, sizeof out, "/", "c"), MPII_OK);
    EXPECT_STREQ(out, "/c");
    ASSERT_EQ(mpii_path_join(out, sizeof out, "//", "c"), MPII_OK);
    EXPECT_STREQ(out, "/c");
}

TEST(FinderPathJoin, ReportsTooLong)
{
    char out[8];
    ASSERT_EQ(mpii_path_join(out, sizeof out, "/abc", "de"), MPII_OK); // 7 + NUL fits
    EXPECT_STREQ(out, "/abc/de");
    EXPECT_EQ(mpii_path_join(out, sizeof out, "/abc", "def"), MPII_ERR_TOOLONG);
    EXPECT_EQ(mpii_path_join(out, 0, "/abc", "d"), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_path_join(nullptr, 8, "/abc", "d"), MPII_ERR_INVALID);
}

TEST(FinderSuffixTable, AddsInOrderAndChecksLimits)
{
    mpii_suffix_table t{};
    ASSERT_EQ(mpii_suffix_table_add(&t, ".so", MPII_LOADER_EXTENSION), MPII_OK);
    ASSERT_EQ(mpii_suffix_table_add(&t, ".py", MPII_LOADER_SOURCE), MPII_OK);
    EXPECT_EQ(t.count, 2u);
    EXPECT_STREQ(t.suffix[0], ".so");
    EXPECT_EQ(t.loader[0], MPII_LOADER_EXTENSION);
    EXPECT_STREQ(t.suffix[1], ".py");
    EXPECT_EQ(t.loader[1], MPII_LOADER_SOURCE);
    EXPECT_EQ(mpii_suffix_table_add(&t, "", MPII_LOADER_SOURCE), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_suffix_table_add(&t, ".x", static_cast<mpii_loader_kind>(0)), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_suffix_table_add(&t, ".x", static_cast<mpii_loader_kind>(4)), MPII_ERR_INVALID);
    EXPECT_EQ(mpii_suffix_table_add(&t, std::string(MPII_SUFFIX_MAX, 's').c_str(), MPII_LOADER_SOURCE),
              MPII_ERR_TOOLONG);
    EXPECT_EQ(t.count, 2u);
    while (t.count < MPII_MAX_SUFFIXES)
        ASSERT_EQ(mpii_suffix_table_add(&t, ".y", MPII_LOADER_BYTECODE), MPII_OK);
    EXPECT_EQ(mpii_suffix_table_add(&t, ".z", MPII_LOADER_BYTECODE), MPII_ERR_TOOLONG);
    EXPECT_EQ(t.count, static_cast<size_t>(MPII_MAX_SUFFIXES));
}
