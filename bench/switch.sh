#!/usr/bin/env bash
# Switch time between two models under a budget that holds one, in one run:
# the orchestra (bench_orchestra --switch), a bare unload + load, the same
# end to end through `orchestra serve` over HTTP, and llama.cpp's own router
# (llama-server --models-dir DIR --models-max 1) on the same two files.
# Build the peer first: bench/build-llama-server.sh.
# usage: bench/switch.sh [A.gguf B.gguf]   (default: two synthetic 80M models)
# SWITCH_REPACK=false (not an ORCH_ variable: those are config overrides): weights kept as the files have them on every side
# (orchestra's `repack = false`, llama-server's --no-repack): loads without
# the copy into the CPU's repacked layout.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
server=.deps/llama-server/bin/llama-server
[ -x "$server" ] || { echo "no $server: run bench/build-llama-server.sh" >&2; exit 1; }
[ -x build/bench/bench_orchestra ] || { echo "build first (scripts/demo.sh or scripts/test.sh)" >&2; exit 1; }
a=${1:-build/bench/switch-a.gguf}
b=${2:-build/bench/switch-b.gguf}
[ -f "$a" ] || build/orchestra mkmodel --params 80M --seed 11 -o "$a"
[ -f "$b" ] || build/orchestra mkmodel --params 80M --seed 12 -o "$b"

out=$(build/bench/bench_orchestra --switch "$a" "$b" 2>&1 | sed -n '/^switch between/,$p')
echo "$out" | grep -v '^SWITCH_MS'
ours=$(echo "$out" | sed -n 's/^SWITCH_MS //p')

dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
cp "$a" "$dir/model-a.gguf"
cp "$b" "$dir/model-b.gguf"
port=18187
norepack=""; repack_key=""
if [ "${SWITCH_REPACK:-true}" = false ]; then norepack="--no-repack"; repack_key="repack = false\n"; fi
"$server" --models-dir "$dir" --models-max 1 --host 127.0.0.1 --port $port -t 1 -c 512 $norepack \
  >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
req() { # MODEL [PORT] -> seconds
  curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:${2:-$port}/v1/completions" \
    -H 'Content-Type: application/json' \
    -d "{\"model\":\"$1\",\"prompt\":\"hello\",\"max_tokens\":1}"
}
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# switch_ms PORT A B: median (request after a switch - warm request), ms
switch_ms() {
  local sw=() wa=()
  req "$2" "$1" >/dev/null; req "$2" "$1" >/dev/null
  for _ in $(seq 1 7); do
    for m in "$3" "$2"; do
      sw+=("$(req "$m" "$1")")
      wa+=("$(req "$m" "$1")")
    done
  done
  local s w
  s=$(med "${sw[@]}"); w=$(med "${wa[@]}")
  echo "$s $w" | awk '{printf "%.1f %.1f %.2f", $1 * 1000, $2 * 1000, ($1 - $2) * 1000}'
}

# orchestra serve, end to end: a budget that holds one of the two models
oport=18188
budget=$(( $(stat -c %s "$a") + 150 * 1024 * 1024 ))
# one sequence of 512 tokens, as the router's children get with -c 512
printf "[defaults]\nmemory_budget = %s\nn_threads = 1\nn_ctx = 512\nn_parallel = 1\nidle_ttl = -1\n${repack_key}[model-a]\npath = %s\n[model-b]\npath = %s\n" \
  "$budget" "$(realpath "$a")" "$(realpath "$b")" > "$dir/o.ini"
build/orchestra -c "$dir/o.ini" serve --port $oport 2>"$dir/orchestra.log" &
opid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$oport/health" >/dev/null 2>&1 && break; sleep 0.1; done
read -r osw owa ohttp <<<"$(switch_ms $oport model-a model-b)"
kill -TERM $opid 2>/dev/null || { echo "orchestra serve ended early:" >&2; cat "$dir/orchestra.log" >&2; exit 1; }
wait $opid 2>/dev/null || true
echo "  orchestra serve (HTTP, one-model budget): request after a switch $osw ms, warm request $owa ms: switch $ohttp ms"
ids=$(curl -s "http://127.0.0.1:$port/models" | grep -o '"id":"[^"]*"' | cut -d'"' -f4)
ma=$(echo "$ids" | grep -m1 model-a); mb=$(echo "$ids" | grep -m1 model-b)
[ -n "$ma" ] && [ -n "$mb" ] || { echo "router lists no models: $ids" >&2; tail "$dir/server.log" >&2; exit 1; }
read -r rsw rwa router <<<"$(switch_ms $port "$ma" "$mb")"
echo "  llama-server router (--models-max 1): request after a switch $rsw ms, warm request $rwa ms: switch $router ms"
echo "  ratio orchestra / router switch: in process $(awk -v o="$ours" -v r="$router" 'BEGIN {printf "%.3f", o / r}'), through HTTP $(awk -v o="$ohttp" -v r="$router" 'BEGIN {printf "%.3f", o / r}')"
