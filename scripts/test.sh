#!/usr/bin/env bash
# Builds Orchestra three ways and runs the tests:
#   build/       -Werror, all tests (ctest)
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer), all tests
#   build-tsan/  ThreadSanitizer, the concurrency tests
# Installs what it needs first (scripts/setup.sh, idempotent).
# ORCH_TEST_QUICK=1 runs only the plain build.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pc=$(bash scripts/setup.sh)
export PKG_CONFIG_PATH="${pc}${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
jobs=$(nproc 2>/dev/null || echo 2)

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
(cd build && ctest --output-on-failure -j"$jobs")

if [ -z "${ORCH_TEST_QUICK:-}" ]; then
  echo "== ASan + UBSan (+ LSan): all tests"
  build build-asan -DCMAKE_BUILD_TYPE=Debug "-DORCH_SANITIZE=address;undefined"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     LSAN_OPTIONS=report_objects=1 \
     ctest --output-on-failure -j"$jobs")

  echo "== ThreadSanitizer: concurrency tests"
  build build-tsan -DCMAKE_BUILD_TYPE=Debug -DORCH_SANITIZE=thread
  # TSan wants a low-entropy address space: run without ASLR where allowed
  norand=""
  setarch "$(uname -m)" -R true 2>/dev/null && norand="setarch $(uname -m) -R"
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
     $norand ctest --output-on-failure -j"$jobs" -L concurrency)
fi
echo "== all test runs passed"
