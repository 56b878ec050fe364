#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test Orchestra.
#
#  1. Debian packages (compiler, cmake, libinih, jansson, cmocka, npm; clang
#     and its runtime for the pre-check's fuzz target; python3 for the Python
#     package's tests).
#  2. The npm clients the daemon's tests drive (openai, ollama, LangChain.js,
#     the AI SDK), into .deps/node.
#  4. llama.cpp's common/ (chat templates, tool calls, JSON schemas) from the
#     same source, built once into .deps/llama-common.
#  3. llama.cpp: a system copy when `pkg-config llama` finds one; otherwise the
#     pinned release (node-llama-cpp 3.22.1 = llama.cpp v0.5.0 build) from npm:
#     prebuilt shared libraries plus headers taken from the release's git
#     bundle, laid out under .deps/llama with a llama.pc of our own, so the
#     build sees one kind of dependency either way.
#
#  5. With the pinned release: llama.cpp's CPU backend built again from the
#     same source for this machine's CPU (-march=native), into
#     .deps/llama/lib/native, which the library prefers on a CPU with the
#     same instruction set (ORCH_NATIVE_CPU=0 skips it).
#
# Idempotent: a second run finds everything in place and does nothing.
# Prints, as its last line, the PKG_CONFIG_PATH the build should use.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps="$top/.deps"
prefix="$deps/llama"
NLC_VERSION=3.22.1

log() { printf 'setup: %s\n' "$*" >&2; }

# ---- 1. Debian packages -----------------------------------------------------
need_pkgs=()
for p in build-essential cmake pkg-config libinih-dev libjansson-dev libcmocka-dev \
         git ca-certificates clang libclang-rt-14-dev libmicrohttpd-dev nettle-dev libcurl4-openssl-dev curl python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need_pkgs+=("$p")
done
# npm may come from Node's own installer rather than Debian's package.
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# ---- 2. the real HTTP clients the daemon's tests drive (npm, pinned) ----------
# openai and ollama; for agents: LangChain.js (@langchain/openai, @langchain/ollama)
# and the Vercel AI SDK (ai, @ai-sdk/openai-compatible, @ai-sdk/openai: the Responses
# API), with zod for schemas.
NODE_PKGS="openai@6.49.0 ollama@0.6.4 @langchain/core@1.4.0 @langchain/openai@1.6.0 \
@langchain/ollama@1.3.0 ai@7.0.173 @ai-sdk/openai-compatible@3.0.92 @ai-sdk/openai@4.0.118 \
zod@4.6.7"
node_stamp="$deps/node/.complete-$(echo "$NODE_PKGS" | cksum | cut -d' ' -f1)"
if [ ! -f "$node_stamp" ]; then
  log "installing the npm packages $NODE_PKGS into .deps/node"
  mkdir -p "$deps/node"
  # shellcheck disable=SC2086
  if (cd "$deps/node" && npm install --silent --no-audit --no-fund --no-save $NODE_PKGS >/dev/null 2>&1); then
    touch "$node_stamp"
  else
    log "npm install failed: the daemon's client tests will skip"
  fi
fi

# ---- 4. llama.cpp's common/ (chat templates, tool calls, JSON schemas) ---------
# common_build SRC: builds the part of llama.cpp's common library Orchestra
# uses (its Jinja engine, chat layer and tool-call parsers, JSON schema to
# grammar) as one static archive, .deps/llama-common/lib/libllama-common.a,
# with its headers (include/llama-common/: "llama-common/chat.h") and a
# llama-common.pc. SRC is a llama.cpp source tree of
# the same version as the llama.cpp linked (empty: the pinned bundle). Cached
# by the source's commit; about 80 s on 2 cores, once.
common_build() {
  local src=$1 out="$deps/llama-common" tmp="" rev
  if [ -z "$src" ]; then
    [ -f "$deps/llama.cpp.bundle" ] || { log "no llama.cpp source: set ORCH_LLAMA_SRC to the tree of the llama.cpp that pkg-config finds"; exit 1; }
    rev=$(git bundle list-heads "$deps/llama.cpp.bundle" | awk 'NR==1{print $1}')
  else
    rev=$(cd "$src" && { git rev-parse HEAD 2>/dev/null || echo "tree-$(cksum < common/chat.cpp | cut -d' ' -f1)"; })
  fi
  [ -f "$out/.complete-$rev-2" ] && return 0
  log "building llama.cpp's common/ ($rev) into .deps/llama-common"
  if [ -z "$src" ]; then
    tmp=$(mktemp -d) && src="$tmp/src"
    git init -q "$src"
    git -C "$src" fetch -q "$deps/llama.cpp.bundle" HEAD
    git -C "$src" checkout -q FETCH_HEAD -- common vendor/nlohmann src/llama-ext.h models/templates
  fi
  local inc
  inc=$(PKG_CONFIG_PATH="${llama_pc}${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" pkg-config --cflags llama)
  rm -rf "$out" && mkdir -p "$out/obj" "$out/lib/pkgconfig" "$out/include/llama-common"
  sed -e 's/@LLAMA_BUILD_NUMBER@/0/' -e "s/@LLAMA_BUILD_COMMIT@/$rev/" \
      -e 's/@BUILD_COMPILER@/c++/' -e "s/@BUILD_TARGET@/$(uname -m)/" \
      "$src/common/build-info.cpp.in" > "$out/obj/build-info.cpp"
  # everything but the command-line, download, console and subprocess parts
  (cd "$src/common" && ls ./*.cpp jinja/*.cpp parsers/*.cpp) |
    grep -v -E '^\./(arg|download|hf-cache|console|preset|subproc|llguidance)\.cpp$' |
    sed "s#^#$src/common/#" > "$out/obj/list"
  echo "$out/obj/build-info.cpp" >> "$out/obj/list"
  # shellcheck disable=SC2086
  if ! xargs -P "$(nproc 2>/dev/null || echo 2)" -I{} sh -c \
        'o="$1/obj/$(echo "$2" | tr / _).o"; c++ -std=c++17 -O2 -DNDEBUG -fPIC -fvisibility=hidden \
           -I"$3/common" -I"$3/vendor" $4 -c "$2" -o "$o"' _ "$out" {} "$src" "$inc" \
        < "$out/obj/list" 2> "$out/build.log"; then
    tail -20 "$out/build.log" >&2
    log "building llama.cpp's common/ failed (log: $out/build.log)"
    exit 1
  fi
  ar rcs "$out/lib/libllama-common.a" "$out"/obj/*.o
  (cd "$src/common" && find . \( -name '*.h' -o -name '*.hpp' \) -print0 | tar --null -cf - -T -) |
    tar -xf - -C "$out/include/llama-common"
  mkdir -p "$out/include/nlohmann" && cp "$src"/vendor/nlohmann/*.hpp "$out/include/nlohmann/"
  # the real templates of about 70 model families, for the tests
  mkdir -p "$out/templates" && cp "$src"/models/templates/*.jinja "$out/templates/"
  cat > "$out/lib/pkgconfig/llama-common.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include
templatesdir=\${prefix}/templates
# built by scripts/setup.sh from llama.cpp $rev (common/, without arg/download/console)

Name: llama-common
Description: llama.cpp's chat layer, Jinja engine and JSON-schema grammars (static)
Version: 0
Requires: llama
Libs: -L\${libdir} -lllama-common -lstdc++
Cflags: -I\${includedir}
PC
  rm -rf "$out/obj" ${tmp:+"$tmp"}
  touch "$out/.complete-$rev-2"
}

# ---- 5. the CPU backend for this machine ------------------------------------------
# native_build: the release's CPU backends are built for families of CPUs
# (libggml-cpu-zen4.so, -haswell, ...), each with a fixed list of -m flags;
# the same source built with -march=native reads prompts 1.3-1.4x faster on
# the 2-core AVX-512 VM (docs/design.md, "The CPU backend"). Only
# libggml-cpu.so is built and kept: it uses the release's libggml-base.so
# (same source) through the symlink libggml-base.so.0 beside it, and
# cpu-flags records the instruction set it was built for (the "flags" or
# "Features" line of /proc/cpuinfo), which the library compares before it
# loads it. About 50 s on 2 cores, once; a failure keeps the release's.
native_build() {
  local out="$prefix/lib/native" rev feats tmp
  [ "${ORCH_NATIVE_CPU:-1}" = 0 ] && return 0
  [ -f "$deps/llama.cpp.bundle" ] || return 0
  rev=$(git bundle list-heads "$deps/llama.cpp.bundle" | awk 'NR==1{print $1}')
  feats=$(grep -m1 -E '^(flags|Features)[[:space:]]*:' /proc/cpuinfo | sed 's/^[^:]*:[[:space:]]*//')
  [ -n "$feats" ] || return 0
  if [ -f "$out/.complete-$rev" ] && [ "$(cat "$out/cpu-flags" 2>/dev/null)" = "$feats" ]; then
    return 0
  fi
  log "building llama.cpp's CPU backend for this CPU (-march=native) into $out"
  tmp=$(mktemp -d)
  git init -q "$tmp/src"
  git -C "$tmp/src" fetch -q "$deps/llama.cpp.bundle" HEAD
  git -C "$tmp/src" checkout -q FETCH_HEAD
  if cmake -S "$tmp/src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
       -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF \
       -DCMAKE_C_FLAGS=-march=native -DCMAKE_CXX_FLAGS=-march=native \
       -DCMAKE_SKIP_BUILD_RPATH=ON -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN' \
       -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
       -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF -DGGML_CCACHE=OFF > "$tmp/build.log" 2>&1 &&
     cmake --build "$tmp/build" -j"$(nproc 2>/dev/null || echo 2)" --target ggml-cpu >> "$tmp/build.log" 2>&1; then
    rm -rf "$out" && mkdir -p "$out"
    cp "$(find "$tmp/build" -name libggml-cpu.so | head -n1)" "$out/libggml-cpu.so"
    ln -s ../libggml-base.so "$out/libggml-base.so.0"
    printf '%s\n' "$feats" > "$out/cpu-flags"
    touch "$out/.complete-$rev"
  else
    tail -20 "$tmp/build.log" >&2
    log "building the CPU backend for this CPU failed: the release's backends are used"
  fi
  rm -rf "$tmp"
}

# ---- 3. llama.cpp -------------------------------------------------------------
# build_common SRC: step 4 (above), then the PKG_CONFIG_PATH line; ends setup
build_common() {
  common_build "$1"
  echo "${llama_pc:+$llama_pc:}$deps/llama-common/lib/pkgconfig"
  exit 0
}

llama_pc=""
if [ -z "${ORCH_FORCE_BOOTSTRAP:-}" ] && PKG_CONFIG_PATH="" pkg-config --exists llama 2>/dev/null; then
  log "using system llama.cpp $(pkg-config --modversion llama)"
  # its common/ must come from the same source: ORCH_LLAMA_SRC, else the pinned bundle
  build_common "${ORCH_LLAMA_SRC:-}"
fi

stamp="$prefix/.complete-$NLC_VERSION"
if [ -f "$stamp" ]; then
  # llama.pc finds its prefix from where it lies (a checkout moved since
  # setup still builds; older setups wrote an absolute prefix)
  sed -i 's#^prefix=/.*#prefix=${pcfiledir}/../..#' "$prefix/lib/pkgconfig/llama.pc"
  llama_pc="$prefix/lib/pkgconfig"
  native_build
  build_common ""
fi

case "$(uname -m)" in
  x86_64) plat=linux-x64 ;;
  aarch64) plat=linux-arm64 ;;
  *) log "no prebuilt llama.cpp for $(uname -m); install llama.cpp so that pkg-config finds it"; exit 1 ;;
esac

log "bootstrapping llama.cpp from npm node-llama-cpp@$NLC_VERSION ($plat)"
work="$deps/npm"
rm -rf "$work" "$prefix"
mkdir -p "$work" "$prefix/lib" "$prefix/include"
(cd "$work" && npm pack --silent "node-llama-cpp@$NLC_VERSION" "@node-llama-cpp/$plat@$NLC_VERSION" >/dev/null)
tar -xzf "$work/node-llama-cpp-$NLC_VERSION.tgz" -C "$work" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
mkdir -p "$work/plat"
tar -xzf "$work/node-llama-cpp-$plat-$NLC_VERSION.tgz" -C "$work/plat"

bins="$work/plat/package/bins/$plat"
cp -a "$bins"/libllama.v*.so "$bins"/libggml*.so "$prefix/lib/"
lib_llama=$(cd "$prefix/lib" && ls libllama.v*.so | head -n1)
lib_ggml=$(cd "$prefix/lib" && ls libggml.v*.so | head -n1)
ln -sf "$lib_llama" "$prefix/lib/libllama.so"
ln -sf "$lib_ggml" "$prefix/lib/libggml.so"

# Headers (and, for benchmarks, the full source) live in the release's git bundle.
git init -q "$work/src"
git -C "$work/src" fetch -q "$work/package/llama/gitRelease.bundle" HEAD
git -C "$work/src" archive FETCH_HEAD include ggml/include | tar -x -C "$work"
cp "$work"/include/*.h "$work"/ggml/include/*.h "$prefix/include/"
cp "$work/package/llama/gitRelease.bundle" "$deps/llama.cpp.bundle"

tag=$(sed -n 's/.*"tag": *"\(.*\)".*/\1/p' "$work/package/llama/llama.cpp.info.json")
mkdir -p "$prefix/lib/pkgconfig"
cat > "$prefix/lib/pkgconfig/llama.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include
# Folder holding the run-time loaded CPU backends (libggml-cpu-*.so).
backenddir=\${libdir}

Name: llama
Description: llama.cpp $tag (prebuilt, from node-llama-cpp $NLC_VERSION)
Version: ${tag#v}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lllama -lggml -lggml-base
Cflags: -I\${includedir}
PC
rm -rf "$work"
touch "$stamp"
log "llama.cpp installed in $prefix"
llama_pc="$prefix/lib/pkgconfig"
native_build
build_common ""
