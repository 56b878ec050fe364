#!/usr/bin/env bash
# Memory per loaded model, orchestra serve against llama.cpp's own router
# (llama-server --models-dir DIR --models-max N), in one run: N distinct
# model files (1, 2, 4) are each loaded by a one-token request, then the
# whole process tree of each server is measured (the daemon and its model
# processes: orchestra's workers, its spare worker, the router's children):
# RSS and PSS summed from /proc/PID/smaps_rollup (PSS splits the pages the
# processes share, such as llama.cpp's libraries and the page cache of a
# file mapped twice). Each side gets one sequence of 512 tokens per model
# and one thread. Prints figures and the ratio orchestra / router; asserts
# nothing. Build the peer first: bench/build-llama-server.sh.
# usage: bench/memory.sh [PARAMS]   (default 17M: a synthetic F16 model of 31 MB)
# env: ORCH_BIN (default build/orchestra), COUNTS (default "1 2 4"),
#      Q4_0=1: the models' matrices in Q4_0, which llama.cpp repacks on AVX2,
#      AVX-512 and ARM CPUs (F16 is repacked only into AMX tiles)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${ORCH_BIN:-build/orchestra}
server=.deps/llama-server/bin/llama-server
[ -x "$server" ] || { echo "no $server: run bench/build-llama-server.sh" >&2; exit 1; }
[ -x "$bin" ] || { echo "no $bin: build first (scripts/demo.sh or scripts/test.sh)" >&2; exit 1; }
params=${1:-17M}
counts=${COUNTS:-1 2 4}
kind=f16; mk=()
if [ "${Q4_0:-0}" = 1 ]; then kind=q4_0; mk=(--q4_0); fi
max=0
for n in $counts; do [ "$n" -gt "$max" ] && max=$n; done

dir=$(mktemp -d)
cleanup() {
  pkill -TERM -P $$ 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p "$dir/models" build/bench
for i in $(seq 1 "$max"); do
  f=build/bench/memory-$params-$kind-$i.gguf
  [ -f "$f" ] || "$bin" -q mkmodel --params "$params" "${mk[@]}" --seed $((40 + i)) -o "$f"
  ln -s "$(realpath "$f")" "$dir/models/model-$i.gguf"
done

# tree_kb PID: "RSS PSS" in kB of PID and every process under it
tree_kb() {
  local all=("$1") i=0
  while [ $i -lt ${#all[@]} ]; do
    local kids
    kids=$(cat /proc/"${all[$i]}"/task/*/children 2>/dev/null || true)
    for k in $kids; do all+=("$k"); done
    i=$((i + 1))
  done
  for p in "${all[@]}"; do cat /proc/"$p"/smaps_rollup 2>/dev/null || true; done |
    awk '/^Rss:/ {r += $2} /^Pss:/ {s += $2} END {printf "%d %d", r, s}'
}
up() {
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not come up" >&2
  return 1
}
req() { # PORT MODEL
  curl -sf -o /dev/null "http://127.0.0.1:$1/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$2\",\"prompt\":\"Once upon a time\",\"max_tokens\":1}" ||
    { echo "request for $2 on port $1 failed" >&2; return 1; }
}
settle() { sleep 1; } # a worker's or child's last pages after its reply
# loaded PID PORT N: the server PID on PORT, idle then with model-1..N
# loaded: "PSS-idle RSS PSS" (kB); stops it
loaded() {
  local pid=$1 idle rss pss
  up "$2" >&2
  settle
  read -r _ idle <<<"$(tree_kb "$pid")"
  for i in $(seq 1 "$3"); do req "$2" "model-$i" >&2; done
  settle
  read -r rss pss <<<"$(tree_kb "$pid")"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$idle $rss $pss"
}

echo "memory per loaded model: synthetic $params $kind models ($(du -m --apparent-size build/bench/memory-$params-$kind-1.gguf | cut -f1) MB each), 1 thread, 512 cells per model"
printf '%-8s %-14s %10s %10s %14s %14s\n' models server 'RSS MB' 'PSS MB' 'PSS/model MB' 'added/model MB'
for n in $counts; do
  # orchestra serve: N roles on N files, a budget that holds them all
  port=$((18700 + n))
  {
    printf '[defaults]\nn_threads = 1\nn_ctx = 512\nn_parallel = 1\nidle_ttl = -1\n'
    for i in $(seq 1 "$n"); do printf '[model-%d]\npath = %s\n' "$i" "$(realpath "$dir/models/model-$i.gguf")"; done
  } > "$dir/o.ini"
  "$bin" -q -c "$dir/o.ini" serve --port $port 2>"$dir/orchestra.log" &
  read -r o0 orss opss <<<"$(loaded $! $port "$n")"

  # the router: one child per model, N kept
  rport=$((18710 + n))
  rm -rf "$dir/r"; mkdir "$dir/r"
  for i in $(seq 1 "$n"); do ln -s "$(realpath "$dir/models/model-$i.gguf")" "$dir/r/model-$i.gguf"; done
  "$server" --models-dir "$dir/r" --models-max "$n" --host 127.0.0.1 --port $rport -t 1 -c 512 \
    >"$dir/router.log" 2>&1 &
  read -r r0 rrss rpss <<<"$(loaded $! $rport "$n")"

  row() { awk -v n="$n" -v s="$1" -v r="$2" -v p="$3" -v z="$4" 'BEGIN {
    printf "%-8d %-14s %10.1f %10.1f %14.1f %14.1f\n", n, s, r / 1024, p / 1024, p / 1024 / n, (p - z) / 1024 / n }'; }
  row orchestra "$orss" "$opss" "$o0"
  row llama-router "$rrss" "$rpss" "$r0"
  awk -v n="$n" -v o="$opss" -v r="$rpss" -v a="$o0" -v b="$r0" 'BEGIN {
    printf "%-8d ratio orchestra / router: PSS per model %.2f, added per model %.2f\n", n, o / r, (o - a) / (r - b) }'
done
