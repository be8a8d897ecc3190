#!/usr/bin/env bash
# fuzz.sh [SECONDS] [TARGET...] — runs the libFuzzer targets of tests/fuzz/
# (the image parser raw and with its header fixed up, the recorded-list file
# reader, the ELF dependency reader) for SECONDS each (default 60), one at a
# time. Installs what is missing (clang and its compiler-rt, which holds
# libFuzzer), configures and builds build-fuzz with clang
# (-DMPIIMPORT_FUZZ=ON; the main gcc build is not touched), writes the seeds
# from real files (fuzz_seeds), runs every target once over its seeds at
# full length, then fuzzes. Each target's corpus is kept in
# build-fuzz/fuzz/corpus/TARGET (grows run after run, not in git), logs in
# build-fuzz/fuzz/logs/, crash/leak/timeout inputs in
# build-fuzz/fuzz/artifacts/TARGET/. Prints per target executions, exec/s,
# coverage (cov = edges, ft = features, from libFuzzer's last stats line);
# exits non-zero on any crash, leak, timeout or broken invariant, with the
# path of the saved input. Environment: FUZZ_BUILD (default build-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=60
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  SECONDS_EACH=$1
  shift
fi
ALL_TARGETS=(fuzz_image fuzz_image_fixup fuzz_image_file fuzz_elf)
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=("${ALL_TARGETS[@]}"); fi
for t in "${TARGETS[@]}"; do
  case " ${ALL_TARGETS[*]} " in
    *" $t "*) ;;
    *) echo "fuzz.sh: unknown target '$t'; known: ${ALL_TARGETS[*]}" >&2; exit 2 ;;
  esac
done
BUILD=${FUZZ_BUILD:-build-fuzz}

# ---- what it needs, installed only when missing (as install-deps.sh does) ----
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "fuzz.sh: installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
# python3 (Debian's /usr/bin/python3, its standard library) and python3-numpy:
# real files the seeds are made of.
install_missing clang cmake make python3 python3-numpy
# libFuzzer's runtime (libclang_rt.fuzzer) is in compiler-rt's -dev package
# for this clang's major version (Debian 12: clang 14, libclang-rt-14-dev).
CLANG_MAJOR=$(clang -dumpversion | cut -d. -f1)
install_missing "libclang-rt-${CLANG_MAJOR}-dev"

# ---- build and seeds ----
PYLIB=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DMPIIMPORT_FUZZ=ON \
      -DMPIIMPORT_BUILD_TESTS=OFF -DMPIIMPORT_BUILD_HOOK=OFF -DTRANSPORT= \
      -DMPIIMPORT_FUZZ_PYLIB="$PYLIB" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target fuzz_targets >/dev/null
cmake --build "$BUILD" --target fuzz_seeds >/dev/null

FUZZ_DIR=$BUILD/fuzz
mkdir -p "$FUZZ_DIR/logs"
seeds_of() { case $1 in fuzz_elf) echo "$FUZZ_DIR/seeds/elf" ;; *) echo "$FUZZ_DIR/seeds/image" ;; esac; }

# ---- run ----
failed=()
summary=()
for t in "${TARGETS[@]}"; do
  bin=$BUILD/tests/fuzz/$t
  seeds=$(seeds_of "$t")
  corpus=$FUZZ_DIR/corpus/$t
  artifacts=$FUZZ_DIR/artifacts/$t
  log=$FUZZ_DIR/logs/$t.log
  mkdir -p "$corpus" "$artifacts"
  # libFuzzer cuts inputs to 1 MiB unless told: check the seeds whole first
  # (libc.so.6's dynamic section is past 1 MiB), then fuzz at the default.
  max_seed=$(find "$seeds" -type f -printf '%s\n' | sort -n | tail -1)
  rc=0
  "$bin" -runs=0 -max_len="${max_seed:-4096}" -artifact_prefix="$artifacts/" "$seeds" >"$log.seeds" 2>&1 || rc=$?
  if [ $rc -eq 0 ]; then
    echo "fuzz.sh: $t: fuzzing for ${SECONDS_EACH}s (log: $log)"
    "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
           -artifact_prefix="$artifacts/" "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
  else
    echo "fuzz.sh: $t: a seed fails (log: $log)"
    cp "$log.seeds" "$log"
  fi
  done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
  corp=$(sed -nE 's/.* corp: ([^ ]+).*/\1/p' <<<"$done_line")
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -1)
  line=$(printf '%-17s execs %-10s exec/s %-7s cov %-5s ft %-6s corpus %s' "$t" "${execs:-?}" "${rate:-?}" \
         "${cov:-?}" "${ft:-?}" "${corp:-?}")
  if [ $rc -ne 0 ]; then
    crash=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -1)
    line+="  FAILED (exit $rc)${crash:+, input: $crash}"
    failed+=("$t")
    echo "fuzz.sh: $t FAILED; from $log:" >&2
    grep -E 'ERROR|invariant failed|SUMMARY|Test unit written|timeout|leak' "$log" | head -20 >&2 || true
  fi
  summary+=("$line")
done

echo "fuzz.sh: ${SECONDS_EACH}s per target; corpora in $FUZZ_DIR/corpus"
for s in "${summary[@]}"; do echo "  $s"; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (reproduce: $BUILD/tests/fuzz/TARGET INPUT)" >&2
  exit 1
fi
echo "fuzz.sh: no crash, leak, timeout or broken invariant"
