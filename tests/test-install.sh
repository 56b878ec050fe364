#!/usr/bin/env bash
# test-install.sh — `cmake --install` into a fresh prefix, then a tiny
# program built against the installed tree twice, through pkg-config and
# through CMake's find_package(orchestra), and run: it generates with the
# test model through liborchestra.so. The installed command runs too.
# Usage: test-install.sh BUILD_DIR
set -u
BUILD=${1:?usage: test-install.sh BUILD_DIR}
SRC=${ORCH_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL=${ORCH_TEST_MODEL:-$SRC/../shared/models/stories260K.gguf}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # NAME CMD...
  local name=$1; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then ok; else bad "$name: $(head -c 600 "$TMP/err")"; fi
}

P="$TMP/prefix"
check "cmake --install" cmake --install "$BUILD" --prefix "$P"
for f in include/orchestra.h lib/liborchestra.so lib/liborchestra.a bin/orchestra \
         lib/pkgconfig/orchestra.pc lib/cmake/orchestra/orchestraConfig.cmake \
         lib/cmake/orchestra/orchestraConfigVersion.cmake share/man/man1/orchestra.1; do
  if [ -e "$P/$f" ]; then ok; else bad "installed tree lacks $f"; fi
done
soname=$(objdump -p "$P/lib/liborchestra.so" 2>/dev/null | awk '/SONAME/ {print $2}')
if [ "$soname" = "liborchestra.so.0" ]; then ok; else bad "soname '$soname', expected liborchestra.so.0"; fi
# only the public API is exported
# (global symbols: upper-case types; the C++ glue's template instances show as local)
exported() { nm -D --defined-only "$P/lib/liborchestra.so" | awk '$2 ~ /^[A-Z]$/ {print $3}'; }
if exported | grep -v '^orch_[a-z]' | grep -q .; then
  bad "liborchestra.so exports more than orch_*: $(exported | grep -v '^orch_[a-z]' | head -5 | tr '\n' ' ')"
else ok; fi
if nm -D --defined-only "$P/lib/liborchestra.so" | grep -q ' orch__'; then bad "internal orch__ symbols exported"; else ok; fi
check "installed command --version" "$P/bin/orchestra" --version
grep -q "llama.cpp" "$TMP/out" && ok || bad "--version names no llama.cpp version: $(cat "$TMP/out")"

cat > "$TMP/hello.c" <<'C'
#include <orchestra.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    printf("liborchestra %s\n", orch_version());
    if (strcmp(orch_version(), ORCH_VERSION) != 0)
        return 2;
    if (argc < 2)
        return 0;
    struct orch_model_params mp = orch_model_default_params();
    mp.path = argv[1];
    mp.n_threads = 1;
    orch_model *m;
    orch_error err;
    if (orch_model_new(&mp, &m, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 11;
    struct orch_gen_result res;
    int rc = orch_model_generate(m, "Once upon a time", &gp, &res, &err);
    if (rc) { fprintf(stderr, "%s\n", err.msg); orch_model_free(m); return 1; }
    printf("%s\n", res.text);
    orch_gen_result_clear(&res);
    orch_model_free(m);
    return 0;
}
C
model_arg=""
[ -f "$MODEL" ] && model_arg="$MODEL"

# through pkg-config
export PKG_CONFIG_PATH="$P/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
check "pkg-config knows orchestra" pkg-config --exists orchestra
check "build with pkg-config" sh -c "cc -std=c11 -Wall -Werror -o '$TMP/hello-pc' '$TMP/hello.c' \$(pkg-config --cflags --libs orchestra)"
check "run (pkg-config)" "$TMP/hello-pc" $model_arg
[ -n "$model_arg" ] && { grep -q "there was a little girl" "$TMP/out" && ok || bad "pkg-config program output: $(cat "$TMP/out")"; }
used=$(ldd "$TMP/hello-pc" | awk '/liborchestra/ {print $3}')
[ -n "$used" ] && [ "$(realpath "$used")" = "$(realpath "$P/lib/liborchestra.so.0")" ] && ok ||
  bad "pkg-config program does not use the installed liborchestra.so.0: $used"

# through CMake
mkdir -p "$TMP/cm"
cat > "$TMP/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(hello C)
find_package(orchestra 0.1 REQUIRED)
add_executable(hello ../hello.c)
target_link_libraries(hello PRIVATE orchestra::orchestra)
CM
check "configure with find_package" cmake -S "$TMP/cm" -B "$TMP/cm/build" -DCMAKE_PREFIX_PATH="$P"
check "build with find_package" cmake --build "$TMP/cm/build"
check "run (CMake)" "$TMP/cm/build/hello" $model_arg
[ -n "$model_arg" ] && { grep -q "there was a little girl" "$TMP/out" && ok || bad "CMake program output: $(cat "$TMP/out")"; }

# the Python package, installed beside the library, finds it there
if command -v python3 >/dev/null; then
  check "python from the installed tree" env -u ORCH_LIB PYTHONPATH="$P/lib/python3/dist-packages" \
    python3 -c 'import orchestra, orchestra._native as n; print(orchestra.version(), n.lib._name)'
  grep -q "$P/lib/python3/dist-packages/../../liborchestra.so.0\|$P/lib/liborchestra.so.0" "$TMP/out" && ok ||
    bad "installed python loaded another library: $(cat "$TMP/out")"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
