#!/usr/bin/env bash
# A decode beside a busy neighbour: generated tokens/s of a 2-thread decode
# alone and with one process spinning on a CPU beside it, for Orchestra
# (`orchestra generate`, the library's decode path) and llama.cpp's own
# llama-server (one slot, the same threads, model and prompt), in one run,
# alternated, medians of REPS. Prints the ratios; asserts nothing.
# Build the peer first: bench/build-llama-server.sh.
# usage: bench/neighbour.sh [MODEL.gguf]   (default: a synthetic 17M model)
# env:   REPS (default 3), THREADS (default 2), N_GEN (default 128),
#        PIN (the neighbour's CPU: default the last one, as "one core taken"; empty = any)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${ORCH_BIN:-build/orchestra}
server=.deps/llama-server/bin/llama-server
[ -x "$server" ] || { echo "no $server: run bench/build-llama-server.sh" >&2; exit 1; }
[ -x "$bin" ] || { echo "no $bin: build first (scripts/demo.sh or scripts/test.sh)" >&2; exit 1; }
model=${1:-build/bench/neighbour-17m.gguf}
[ -f "$model" ] || { mkdir -p "$(dirname "$model")"; "$bin" -q mkmodel --params 17M --seed 3 -o "$model"; }
reps=${REPS:-3}; t=${THREADS:-2}; n=${N_GEN:-128}
prompt="Once upon a time there was a little girl who lived in a village near the forest"

dir=$(mktemp -d)
hog=""
port=18191
"$server" -m "$model" --host 127.0.0.1 --port $port -t "$t" -tb "$t" -np 1 -c 1024 \
  >"$dir/server.log" 2>&1 &
spid=$!
trap '[ -n "$hog" ] && kill $hog 2>/dev/null; kill $spid 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done

ours() { # -> generated tokens/s
  "$bin" generate -m "$model" -t "$t" -n "$n" --temperature 0 -p "$prompt" 2>&1 >/dev/null |
    sed -n 's/.*generated [0-9]* tokens in [0-9.]* ms (\([0-9.]*\) tok\/s).*/\1/p'
}
theirs() {
  curl -sf "http://127.0.0.1:$port/completion" -d "{\"prompt\": \"$prompt\", \"n_predict\": $n, \
\"temperature\": 0, \"ignore_eos\": true, \"cache_prompt\": false}" |
    python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["timings"]["predicted_per_second"])'
}
pin=${PIN:-$(( $(nproc) - 1 ))} # the neighbour's CPU ("" = any)
busy_on() {
  if [ -n "$pin" ]; then taskset -c "$pin" sh -c 'while :; do :; done' & else sh -c 'while :; do :; done' & fi
  hog=$!; sleep 0.3
}
busy_off() { kill $hog; wait $hog 2>/dev/null || true; hog=""; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

theirs >/dev/null # warm up the slot
for _ in $(seq 1 "$reps"); do
  ours >>"$dir/ours-alone"
  theirs >>"$dir/theirs-alone"
  busy_on
  ours >>"$dir/ours-busy"
  theirs >>"$dir/theirs-busy"
  busy_off
done
oa=$(median <"$dir/ours-alone"); ob=$(median <"$dir/ours-busy")
ta=$(median <"$dir/theirs-alone"); tb=$(median <"$dir/theirs-busy")
echo "model $(basename "$model"), $t threads, $n tokens, $reps runs each, $(nproc) CPUs, neighbour on CPU ${pin:-any}"
printf '%-14s %10s %16s %12s\n' "" "alone t/s" "neighbour t/s" "slowdown"
printf '%-14s %10s %16s %11sx\n' orchestra "$oa" "$ob" "$(echo "$oa $ob" | awk '{printf "%.2f", $1/$2}')"
printf '%-14s %10s %16s %11sx\n' llama-server "$ta" "$tb" "$(echo "$ta $tb" | awk '{printf "%.2f", $1/$2}')"
echo "beside a neighbour, orchestra/llama-server: $(echo "$ob $tb" | awk '{printf "%.2f", $1/$2}')x"
