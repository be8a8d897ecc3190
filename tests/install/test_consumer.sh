#!/usr/bin/env bash
# test_consumer.sh BUILD_DIR [VERSION] — mpiimport as a dependency of another
# C project: installs BUILD_DIR into a temporary prefix, moves the prefix (the
# install must be relocatable), then builds tests/install/consumer/ against it
# twice, through find_package(mpiimport CONFIG) and through pkg-config, runs
# both programs and checks their output. Registered with ctest (label
# install); removes everything it made.
# Environment: CMAKE (default cmake), CC (default cc), MPIIMPORT_CONSUMER_FLAGS
# (extra compile and link flags: the sanitizers of an instrumented build).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [VERSION]" >&2; exit 2; }
build=$(cd "$1" && pwd -P)
version=${2:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
src=$(cd "$here/../.." && pwd -P)
cmake=${CMAKE:-cmake}
cc=${CC:-cc}
read -r -a extra <<< "${MPIIMPORT_CONSUMER_FLAGS:-}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpiimport-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

fail() { echo "test_consumer: FAIL: $*" >&2; exit 1; }
# run NAME CMD...: CMD's output goes to a log, shown only when it fails
run() {
    local name=$1; shift
    if ! "$@" > "$tmp/$name.log" 2>&1; then
        cat "$tmp/$name.log" >&2
        fail "$name: $*"
    fi
}

# 1. install, then move the prefix: nothing may point into the old one
run install "$cmake" --install "$build" --prefix "$tmp/staged"
mv "$tmp/staged" "$tmp/prefix"
prefix=$tmp/prefix
cfg=$(find "$prefix" -path '*/cmake/mpiimport/mpiimportConfig.cmake' -print -quit)
pc=$(find "$prefix" -path '*/pkgconfig/mpiimport.pc' -print -quit)
[ -n "$cfg" ] || fail "no mpiimportConfig.cmake under the prefix"
[ -n "$pc" ] || fail "no mpiimport.pc under the prefix"
cfgdir=$(dirname "$cfg")
pcdir=$(dirname "$pc")
for f in "$cfgdir/mpiimportConfigVersion.cmake" "$cfgdir/mpiimportTargets.cmake" \
         "$prefix/include/mpiimport/status.h" "$prefix/include/mpiimport/checksum.h"; do
    [ -f "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
[ -n "$(find "$prefix" -name libmpiimport_core.a -print -quit)" ] || fail "libmpiimport_core.a not installed"
for path in "$build" "$src" "$tmp/staged"; do
    if grep -rlF -- "$path" "$cfgdir" "$pc"; then
        fail "the installed config names $path (files above)"
    fi
done

# the archive is position-independent: it links into a shared object
run pic "$cc" "${extra[@]}" -shared -o "$tmp/libwhole.so" \
    -Wl,--whole-archive "$(find "$prefix" -name libmpiimport_core.a -print -quit)" -Wl,--no-whole-archive

if [ -z "$version" ]; then
    version=$(PKG_CONFIG_PATH="$pcdir" pkg-config --modversion mpiimport)
fi
expected="mpiimport $version
strerror(MPII_ERR_CHECKSUM): image checksum mismatch
checksum64(\"\", 0): ef46db3751d8e999
checksum64(\"abc\", 0): 44bc2cf5ad770999"

check_output() {  # NAME PROGRAM
    local out
    out=$("$2") || fail "$1: $2 exited with $?"
    if [ "$out" != "$expected" ]; then
        printf 'expected:\n%s\ngot:\n%s\n' "$expected" "$out" >&2
        fail "$1: wrong output"
    fi
    echo "test_consumer: $1: OK"
}

# 2. find_package(mpiimport CONFIG) through CMAKE_PREFIX_PATH
run cmake-configure "$cmake" -S "$here/consumer" -B "$tmp/consumer-cmake" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_C_FLAGS="${extra[*]}" -DCMAKE_EXE_LINKER_FLAGS="${extra[*]}"
found=$(sed -n 's/^mpiimport_DIR:PATH=//p' "$tmp/consumer-cmake/CMakeCache.txt")
[ "$(cd "$found" && pwd -P)" = "$(cd "$cfgdir" && pwd -P)" ] || fail "find_package found $found, not $cfgdir"
run cmake-build "$cmake" --build "$tmp/consumer-cmake"
check_output find_package "$tmp/consumer-cmake/consumer"

# 3. pkg-config
export PKG_CONFIG_PATH=$pcdir
run pkg-config-exists pkg-config --exists mpiimport
[ "$(pkg-config --modversion mpiimport)" = "$version" ] || fail "pkg-config --modversion: not $version"
incdir=$(pkg-config --variable=includedir mpiimport)
[ "$(cd "$incdir" && pwd -P)" = "$(cd "$prefix/include" && pwd -P)" ] || fail "pkg-config includedir $incdir is not the prefix's"
read -r -a pcflags <<< "$(pkg-config --cflags --libs mpiimport)"
run pkg-config-build "$cc" -std=c11 -Wall -Wextra -Werror "${extra[@]}" -DCONSUMER_VERSION="\"$version\"" \
    -o "$tmp/consumer-pc" "$here/consumer/main.c" "${pcflags[@]}"
check_output pkg-config "$tmp/consumer-pc"

echo "test_consumer: OK (mpiimport $version; find_package and pkg-config, from a moved prefix)"
