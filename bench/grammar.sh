#!/usr/bin/env bash
# The grammar's cost per token through HTTP: `orchestra serve` against
# llama.cpp's llama-server on the same synthetic ~100M model and threads,
# each measured free and under the same GBNF grammar (`grammar` on
# /v1/completions, which both take), with 1 and 4 clients, 64 tokens per
# request sampled at temperature 0.8. Prints tokens per second and each
# server's constrained/free ratio; asserts nothing.
# Needs: build/ (scripts/test.sh) and bench/build-llama-server.sh.
# usage: bench/grammar.sh [THREADS] [REQUESTS]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
threads=${1:-2}
n=${2:-32}
O=build/orchestra
LS=.deps/llama-server/bin/llama-server
B=build/bench/bench_http
[ -x "$LS" ] || { echo "no $LS: run bench/build-llama-server.sh" >&2; exit 1; }
work=build/bench-http
mkdir -p "$work"
[ -f "$work/m100.gguf" ] || $O mkmodel --params 100M --seed 1 -o "$work/m100.gguf" 2>/dev/null
printf '[defaults]\nn_threads = %s\nidle_ttl = -1\n[m]\npath = %s\nn_ctx = 512\nn_parallel = 4\n' \
  "$threads" "$top/$work/m100.gguf" > "$work/g.ini"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
wait_up() { for _ in $(seq 300); do curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
FREE='"temperature":0.8,"seed":7'
# letters and spaces (the sampler's pick mostly fits: checked alone) and
# digits (it mostly does not: the grammar over the whole vocabulary)
GRAMS=('"temperature":0.8,"seed":7,"grammar":"root ::= [a-z ]+"'
       '"temperature":0.8,"seed":7,"grammar":"root ::= [0-9]+"')
rate() { sed -n 's/.* \([0-9.]*\) tok\/s.*/\1/p'; }

echo "machine: $(nproc) CPUs; model: synthetic 100M (F16); $threads threads; $n requests of 64 tokens"
for who in orchestra llama-server; do
  port=$(free_port)
  if [ "$who" = orchestra ]; then
    $O -c "$work/g.ini" serve --port "$port" >/dev/null 2>"$work/$who-g.log" &
  else
    "$LS" -m "$work/m100.gguf" -t "$threads" -tb "$threads" -c 2048 -np 4 --port "$port" \
      --host 127.0.0.1 >"$work/$who-g.log" 2>&1 &
  fi
  pid=$!
  wait_up "$port" || { echo "$who did not start" >&2; kill $pid; exit 1; }
  $B "$port" 1 4 m 16 >/dev/null 2>&1 || true # warm: load the model
  for c in 1 4; do
    for k in 0 1; do
      G=${GRAMS[$k]}
      f1=$($B "$port" "$c" "$n" m 64 "$FREE" | rate)
      g1=$($B "$port" "$c" "$n" m 64 "$G" | rate)
      f2=$($B "$port" "$c" "$n" m 64 "$FREE" | rate)
      g2=$($B "$port" "$c" "$n" m 64 "$G" | rate)
      awk -v w="$who" -v c="$c" -v k="$k" -v f1="$f1" -v f2="$f2" -v g1="$g1" -v g2="$g2" 'BEGIN {
        f = (f1 + f2) / 2; g = (g1 + g2) / 2
        printf "%s %d clients, %s: free %.1f tok/s, grammar %.1f tok/s: %.3f of free\n", w, c,
               k ? "[0-9]+" : "[a-z ]+", f, g, g / f }'
    done
  done
  kill -TERM $pid
  wait $pid 2>/dev/null || true
done
