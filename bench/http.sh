#!/usr/bin/env bash
# `orchestra serve` against llama.cpp's llama-server on the same synthetic
# ~100M model with the same threads: requests per second, p50/p99 latency
# and tokens per second with 1, 4 and 16 concurrent clients of greedy
# completions (TOKENS each, default 64). Both batch 16 sequences of 512
# tokens (orchestra: n_parallel = 16, n_ctx = 512; llama-server: -np 16
# -c 8192). Prints figures; asserts nothing.
# Needs: build/ (scripts/test.sh or demo.sh) and bench/build-llama-server.sh.
# usage: bench/http.sh [THREADS] [REQUESTS] [TOKENS]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
threads=${1:-2}
n=${2:-64}
tokens=${3:-64}
O=build/orchestra
LS=.deps/llama-server/bin/llama-server
B=build/bench/bench_http
[ -x "$LS" ] || { echo "no $LS: run bench/build-llama-server.sh" >&2; exit 1; }
work=build/bench-http
mkdir -p "$work"
[ -f "$work/m100.gguf" ] || $O mkmodel --params 100M --seed 1 -o "$work/m100.gguf" 2>/dev/null
printf '[defaults]\nn_threads = %s\nidle_ttl = -1\n[m]\npath = %s\nn_ctx = 512\nn_parallel = 16\n' \
  "$threads" "$top/$work/m100.gguf" > "$work/m.ini"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
wait_up() { for _ in $(seq 300); do curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

echo "machine: $(nproc) CPUs; model: synthetic 100M (F16); $threads threads; $n requests of $tokens tokens per level"
for who in orchestra llama-server; do
  port=$(free_port)
  if [ "$who" = orchestra ]; then
    $O -c "$work/m.ini" serve --port "$port" 2>"$work/$who.log" &
  else
    "$LS" -m "$work/m100.gguf" -t "$threads" -tb "$threads" -c 8192 -np 16 --port "$port" \
      --host 127.0.0.1 >"$work/$who.log" 2>&1 &
  fi
  pid=$!
  wait_up "$port" || { echo "$who did not start" >&2; kill $pid; exit 1; }
  $B "$port" 1 4 m 16 >/dev/null 2>&1 || true # warm: load the model
  echo "== $who"
  for c in 1 4 16; do
    $B "$port" "$c" "$n" m "$tokens" || true
  done
  kill -TERM $pid
  wait $pid 2>/dev/null || true
done
