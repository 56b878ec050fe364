#!/usr/bin/env bash
# The test suite on a GPU machine, against a CUDA build of llama.cpp found the
# way a system copy is found (pkg-config llama):
#   1. builds the pinned llama.cpp with CUDA and installs it under $WORK/llama
#      (skipped when LLAMA_PREFIX names an installed llama.cpp);
#   2. builds Orchestra against it (-Werror off: another compiler may warn
#      differently; the warnings are counted in the summary);
#   3. runs ctest and the Python tests as they are (n_gpu_layers 0: llama.cpp
#      still sends large batches to the GPU), then the real-model tests again
#      with every layer offloaded (ORCH_TEST_NGL=-1);
#   4. bench_gen on a synthetic ~100M model with 0 and with all layers on the GPU.
# Nothing is downloaded (the GPU machines here have no network): `pack`, run on
# a machine where scripts/setup.sh has run, fills .gpu/ with what a run needs:
# the llama.cpp source as a tarball (from the pinned bundle), the Debian
# packages an image may lack (unpacked into a private prefix, and only when
# pkg-config does not find them), and the test model.
#
# usage: scripts/gpu-check.sh pack
#        scripts/gpu-check.sh [LOGDIR]      (default build-gpu/logs)
# env:   CUDA_ARCH (default native), LLAMA_PREFIX, ORCH_GPU_WORK (default
#        /tmp/orch-gpu), ORCH_GPU_CUDA=0 for a dry run without CUDA,
#        ORCH_GPU_DEBS=1 to use .gpu/debs even where pkg-config finds the packages,
#        ORCH_GPU_BENCH_NGL (default "0 99"; empty: no bench), ORCH_GPU_BENCH_S (seconds each, default 120).
# Exit status: 0 when every step passed. The summary is LOGDIR/summary.txt.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pack="$top/.gpu"

if [ "${1:-}" = pack ]; then
  set -e
  bash scripts/setup.sh >/dev/null
  [ -f .deps/llama.cpp.bundle ] || { echo "no .deps/llama.cpp.bundle (a system llama.cpp has none)" >&2; exit 1; }
  rm -rf "$pack" && mkdir -p "$pack/debs"
  tmp=$(mktemp -d)
  git init -q "$tmp" && git -C "$tmp" fetch -q "$top/.deps/llama.cpp.bundle" HEAD
  # what libllama needs (no tools, examples, tests or common)
  git -C "$tmp" archive --format=tar FETCH_HEAD CMakeLists.txt cmake ggml src include vendor LICENSE \
    | xz -T0 -6 > "$pack/llama-src.tar.xz"
  rm -rf "$tmp"
  (cd "$pack/debs" && apt-get download -q pkgconf pkgconf-bin libpkgconf3 libinih1 libinih-dev \
    libjansson4 libjansson-dev libcmocka0 libcmocka-dev libmicrohttpd12 libmicrohttpd-dev >/dev/null 2>&1)
  cp "${ORCH_TEST_MODEL:-$top/../shared/models/stories260K.gguf}" "$pack/stories260K.gguf"
  du -sh "$pack"
  exit 0
fi

logs=${1:-$top/build-gpu/logs}
work=${ORCH_GPU_WORK:-/tmp/orch-gpu}
mkdir -p "$logs" "$work"
summary="$logs/summary.txt"
: > "$summary"
say() { printf '[%4ds] %s\n' "$SECONDS" "$*" | tee -a "$summary"; }
failed=0
jobs=$(nproc)
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$summary"
say "$(uname -m), $jobs CPUs, $(cc --version | head -n1)"

# ---- 0. what the image lacks: Debian packages into a private prefix --------------
missing=""
command -v pkg-config >/dev/null || missing="pkg-config"
for m in inih jansson cmocka libmicrohttpd; do
  pkg-config --exists "$m" 2>/dev/null || missing="$missing $m"
done
[ -n "${ORCH_GPU_DEBS:-}" ] && missing="$missing (ORCH_GPU_DEBS)"
if [ -n "$missing" ]; then
  say "unpacking .gpu/debs for:$missing"
  sys="$work/sys"
  mkdir -p "$sys"
  for d in "$pack"/debs/*.deb; do dpkg-deb -x "$d" "$sys"; done
  lib="$sys/usr/lib/$(uname -m)-linux-gnu"
  # their .pc files name /usr; the private requirements (gnutls) matter only
  # for static linking
  sed -i -e "s#=/usr\$#=$sys/usr#" -e "s#/usr/#$sys/usr/#g" -e '/^Requires.private:/d' \
    "$lib"/pkgconfig/*.pc
  export PATH="$sys/usr/bin:$PATH"
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
fi

# ---- 1. llama.cpp with CUDA, installed like a system copy --------------------------
if [ -z "${LLAMA_PREFIX:-}" ]; then
  LLAMA_PREFIX="$work/llama"
  src="$work/llama-src"
  rm -rf "$src" "$work/llama-build" && mkdir -p "$src"
  tar -xJf "$pack/llama-src.tar.xz" -C "$src"
  cuda=(-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-native}" -DGGML_CUDA_FA=OFF
        -DGGML_CUDA_NCCL=OFF)
  [ "${ORCH_GPU_CUDA:-1}" = 0 ] && cuda=()
  say "building llama.cpp ${cuda[*]:-(CPU only)}"
  if ! { cmake -S "$src" -B "$work/llama-build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "${cuda[@]}" \
           -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
           -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
           -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON \
           -DCMAKE_INSTALL_PREFIX="$LLAMA_PREFIX" -DCMAKE_INSTALL_LIBDIR=lib &&
         cmake --build "$work/llama-build" -j"$jobs" && cmake --install "$work/llama-build"; } \
       > "$logs/llama-build.log" 2>&1; then
    tail -n 30 "$logs/llama-build.log"
    say "llama.cpp build failed"
    exit 1
  fi
fi
# llama.cpp's .pc names the prefix it was installed to: a tree unpacked
# elsewhere (a build carried from an earlier run) gets a copy naming its place
pcdir="$work/llama-pc"
mkdir -p "$pcdir"
old=$(sed -n 's/^prefix=//p' "$LLAMA_PREFIX/lib/pkgconfig/llama.pc")
sed "s#$old#$LLAMA_PREFIX#g" "$LLAMA_PREFIX/lib/pkgconfig/llama.pc" > "$pcdir/llama.pc"
export PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$LLAMA_PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "llama.cpp $(pkg-config --modversion llama) from $(pkg-config --variable=prefix llama)"

# ---- 2. Orchestra against it ---------------------------------------------------------
b="$top/build-gpu"
if ! { cmake -S . -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DORCH_WERROR=OFF \
         -DORCH_TESTING=ON -DORCH_BENCH=ON && cmake --build "$b" -j"$jobs"; } > "$logs/orch-build.log" 2>&1; then
  grep -E 'error' "$logs/orch-build.log" | head -n 30
  say "Orchestra build failed"
  exit 1
fi
say "built; compiler warnings: $(grep -c 'warning:' "$logs/orch-build.log")"
"$b/orchestra" --version | tee -a "$summary"

# ---- 3. the tests ----------------------------------------------------------------------
model=${ORCH_TEST_MODEL:-$pack/stories260K.gguf}
[ -f "$model" ] || model="$top/../shared/models/stories260K.gguf"
export ORCH_TEST_MODEL="$model"
export ORCH_TEST_SKIP_LOG="$logs/skipped.txt"
: > "$ORCH_TEST_SKIP_LOG"
# step NAME CMD...: runs CMD in the build folder, its output in LOGDIR/NAME.log
step() {
  local name=$1
  shift
  if (cd "$b" && "$@") > "$logs/$name.log" 2>&1; then
    say "$name: passed $(grep -Eo '[0-9]+ tests failed out of [0-9]+|^Ran [0-9]+ tests' "$logs/$name.log" | tail -n1)"
  else
    failed=1
    say "$name: FAILED"
    grep -E 'Failed|FAILED|\[  ERROR|not ok|FAIL:|ERROR:|bad:|Assert|assert' "$logs/$name.log" | head -n 40 | tee -a "$summary"
  fi
}
step ctest-ngl0 ctest --output-on-failure -j"$jobs" -E test-daemon
step python-ngl0 env ORCH_LIB="$b/liborchestra.so.0" ORCH_BIN="$b/orchestra" \
  sh -c 'cd "$1/python" && exec python3 -m unittest discover -s tests -v' sh "$top"
if "$b/orchestra" --version | grep -qE '^devices .*\((gpu|igpu), '; then
  step ctest-ngl-all env ORCH_TEST_NGL=-1 ctest --output-on-failure -j"$jobs" -L model -E test-daemon
else
  say "llama.cpp found no GPU: the run with layers offloaded does not apply"
fi
if [ -s "$ORCH_TEST_SKIP_LOG" ]; then
  failed=1
  say "skipped tests:"
  sort "$ORCH_TEST_SKIP_LOG" | uniq -c | tee -a "$summary"
fi

# ---- 4. speed on the GPU (figures; nothing asserted) --------------------------------
bench=${ORCH_GPU_BENCH_NGL-0 99}
if [ -n "$bench" ]; then
  synth="$work/synth-100M.gguf"
  [ -f "$synth" ] || "$b/orchestra" -q mkmodel -o "$synth" --params 100M --seed 1 >> "$logs/bench.log" 2>&1
  for ngl in $bench; do
    timeout "${ORCH_GPU_BENCH_S:-120}" "$b/bench/bench_gen" -t "$jobs" -ngl "$ngl" "$synth" \
      >> "$logs/bench.log" 2>&1 || say "bench_gen -ngl $ngl did not finish"
  done
  grep -E 'GPU layers|tokens/s|ms \(lower|embeddings/s' "$logs/bench.log" | tee -a "$summary"
fi

[ "$failed" = 0 ] && say "gpu-check: all passed" || say "gpu-check: FAILED"
exit "$failed"
