#!/usr/bin/env bash
# Builds llama.cpp's own llama-server, from the same pinned release the
# project uses (the git bundle that scripts/setup.sh keeps in .deps/), as a
# peer for bench/switch. Benchmark-only: CI never runs this.
# Output: .deps/llama-server/bin/llama-server
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh >/dev/null
bundle=.deps/llama.cpp.bundle
[ -f "$bundle" ] || { echo "no $bundle: scripts/setup.sh bootstraps it (system llama.cpp installs have none)" >&2; exit 1; }
src=.deps/llama.cpp-src
if [ ! -f "$src/CMakeLists.txt" ]; then
  rm -rf "$src"
  git init -q "$src"
  git -C "$src" fetch -q "$top/$bundle" HEAD
  git -C "$src" checkout -q FETCH_HEAD
fi
cmake -S "$src" -B .deps/llama-server -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build .deps/llama-server -j"$(nproc)" --target llama-server
ls -la .deps/llama-server/bin/llama-server
