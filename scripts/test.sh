#!/usr/bin/env bash
# Builds Orchestra four ways and runs the tests:
#   build/       -Werror, all tests (ctest); then the real-model tests again
#                on llama.cpp's baseline CPU variant (x64: no AVX), so that a
#                CPU-dependent assumption fails here and not on a user's machine
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer), all tests;
#                the real-model ones again on the baseline CPU variant
#   build-tsan/  ThreadSanitizer, the concurrency tests; the real-model ones
#                among them again on the baseline CPU variant
#   build-fuzz/  clang + libFuzzer + ASan: the model-file pre-check's fuzz
#                target, a bounded deterministic run (ORCH_FUZZ_RUNS, seed 1)
# Installs what it needs first (scripts/setup.sh, idempotent).
# ORCH_TEST_QUICK=1 runs only the plain build.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pc=$(bash scripts/setup.sh)
export PKG_CONFIG_PATH="${pc}${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
jobs=$(nproc 2>/dev/null || echo 2)
total=0
model=${ORCH_TEST_MODEL:-$top/../shared/models/stories260K.gguf}
# tests that skip note it here (tests/test.h); a skip with the model present is a failure
export ORCH_TEST_SKIP_LOG="$top/build/skipped.log"
mkdir -p "$top/build"
: > "$ORCH_TEST_SKIP_LOG"
# run_ctest DIR ARGS...: ctest, echoed, counted into $total
run_ctest() {
  local dir=$1; shift
  (cd "$dir" && "$@") | tee "$dir/ctest.log"
  local n
  n=$(sed -n 's/.*tests passed, 0 tests failed out of \([0-9]*\).*/\1/p' "$dir/ctest.log" | tail -n1)
  total=$((total + ${n:-0}))
}

build() { # DIR CMAKE-ARGS...
  local dir=$1; shift
  cmake -S . -B "$dir" -DORCH_WERROR=ON -DORCH_TESTING=ON -DORCH_BENCH=ON "$@" >/dev/null
  if ! cmake --build "$dir" -j"$jobs" >"$dir/build.log" 2>&1; then
    grep -E 'error|warning' "$dir/build.log" | head -50
    echo "build in $dir failed (full log: $dir/build.log)"
    exit 1
  fi
}

echo "== plain build: all tests"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_ctest build ctest --output-on-failure -j"$jobs"

# The Python package (python/): its own unittest suite on the shared library
# just built; each test counts in the summary.
echo "== Python package: unittest on build/liborchestra.so"
if (cd python && ORCH_LIB="$top/build/liborchestra.so.0" ORCH_BIN="$top/build/orchestra" \
      python3 -m unittest discover -s tests -v) > build/python.log 2>&1; then
  tail -n 3 build/python.log
  npy=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' build/python.log)
  pyskip=$(sed -n 's/.*skipped=\([0-9]*\).*/\1/p' build/python.log | tail -n1)
  if [ -n "${pyskip:-}" ] && [ "$pyskip" -gt 0 ]; then
    grep -E "skipped '" build/python.log | sed 's/^/  /'
    echo "python: test_orchestra skipped $pyskip" >> "$ORCH_TEST_SKIP_LOG"
  fi
  total=$((total + ${npy:-0} - ${pyskip:-0}))
else
  grep -E "^(FAIL|ERROR):|Error|assert" build/python.log | head -40
  tail -n 5 build/python.log
  echo "the Python package's tests failed (full log: build/python.log)"
  exit 1
fi

# The baseline CPU variant, where llama.cpp loads its CPU backends at run time
backenddir=$(pkg-config --variable=backenddir llama 2>/dev/null || true)
x64dir=""
if [ -n "$backenddir" ] && [ -f "$backenddir/libggml-cpu-x64.so" ]; then
  echo "== real-model tests on the baseline CPU variant (libggml-cpu-x64.so only)"
  x64dir="$top/build/cpu-x64"
  mkdir -p "$x64dir" && cp -f "$backenddir/libggml-cpu-x64.so" "$x64dir/"
  ORCH_GGML_BACKEND_DIR="$x64dir" run_ctest build ctest --output-on-failure -j"$jobs" -L model
else
  echo "== no run-time CPU variants in this llama.cpp: the baseline-variant runs do not apply"
fi

if [ -z "${ORCH_TEST_QUICK:-}" ]; then
  # Whatever the pre-check accepts, llama.cpp must load and run without
  # aborting: the fuzz target aborts (and this run fails) when it does not.
  runs=${ORCH_FUZZ_RUNS:-10000}
  echo "== fuzz: model-file pre-check vs llama.cpp's loader ($runs runs, seed 1)"
  CC=clang CXX=clang++ build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DORCH_TESTING=OFF -DORCH_BENCH=OFF \
    -DORCH_FUZZ=ON -DORCH_SANITIZE=address
  mkdir -p build-fuzz/run
  if (cd build-fuzz/run && ASAN_OPTIONS=detect_leaks=1 TMPDIR="$PWD" \
        ../fuzz-precheck -runs="$runs" -seed=1 -max_len=128 -len_control=0 -print_final_stats=1 \
        > ../fuzz.log 2>&1); then
    grep -E "^Done|^fuzz:" build-fuzz/fuzz.log | head -2
    total=$((total + 1))
  else
    tail -40 build-fuzz/fuzz.log
    echo "fuzz target found an input the pre-check accepts and llama.cpp aborts on or leaks" \
         "after (build-fuzz/run)"
    exit 1
  fi

  echo "== ASan + UBSan (+ LSan): all tests"
  build build-asan -DCMAKE_BUILD_TYPE=Debug "-DORCH_SANITIZE=address;undefined"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=report_objects=1 \
    run_ctest build-asan ctest --output-on-failure -j"$jobs"
  if [ -n "$x64dir" ]; then
    echo "== ASan + UBSan: real-model tests on the baseline CPU variant"
    ORCH_GGML_BACKEND_DIR="$x64dir" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      run_ctest build-asan ctest --output-on-failure -j"$jobs" -L model
  fi

  echo "== ThreadSanitizer: concurrency tests"
  build build-tsan -DCMAKE_BUILD_TYPE=Debug -DORCH_SANITIZE=thread
  # TSan wants a low-entropy address space: run without ASLR where allowed
  norand=""
  setarch "$(uname -m)" -R true 2>/dev/null && norand="setarch $(uname -m) -R"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
    run_ctest build-tsan $norand ctest --output-on-failure -j"$jobs" -L concurrency
  if [ -n "$x64dir" ]; then
    echo "== ThreadSanitizer: real-model concurrency tests on the baseline CPU variant"
    ORCH_GGML_BACKEND_DIR="$x64dir" \
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
      run_ctest build-tsan $norand ctest --output-on-failure -j"$jobs" -L concurrency -L model
  fi
fi
nskip=$(wc -l < "$ORCH_TEST_SKIP_LOG")
if [ "$nskip" -gt 0 ]; then
  echo "== skipped tests ($nskip):"
  sort "$ORCH_TEST_SKIP_LOG" | uniq -c
  if [ -f "$model" ]; then
    echo "the test model is at $model, yet tests skipped as if it were absent"
    echo "$total passed, $nskip failed"
    exit 1
  fi
fi
echo "== all test runs passed (ctest executables across the builds and CPU variants; $nskip skipped)"
echo "$total passed, 0 failed"
