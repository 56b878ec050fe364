#!/usr/bin/env bash
# The main job, end to end: set up, build, then run several models side by
# side in roles from a config, under a memory budget; then the daemon.
#
#   scripts/demo.sh                 # synthesizes two small models (no model needed)
#   scripts/demo.sh MODEL.gguf      # your GGUF as the reasoning model
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pc=$(bash scripts/setup.sh)
export PKG_CONFIG_PATH="${pc}${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
O=build/orchestra
work=build/demo
mkdir -p "$work"

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

reasoning=${1:-}
if [ -z "$reasoning" ]; then
  story="$top/../shared/models/stories260K.gguf"
  if [ -r "$story" ]; then
    reasoning=$story
  else
    say "no model given: synthesizing one (random weights, so its text is noise)"
    $O mkmodel --params 5M --seed 1 -o "$work/reasoning.gguf"
    reasoning=$work/reasoning.gguf
  fi
fi
[ -r "$reasoning" ] || { echo "demo: cannot read $reasoning" >&2; exit 3; }
reasoning=$(realpath "$reasoning") # the config's paths are relative to the config
say "a second, synthetic model for the coder role"
[ -f "$work/coder.gguf" ] || $O mkmodel --params 20M --seed 2 -o "$work/coder.gguf"

say "what the files are (read from their headers, nothing loaded)"
$O info "$reasoning"

budget=$(( $(stat -c %s "$reasoning") * 3 + 512 * 1024 * 1024 ))
cat > "$work/demo.ini" <<INI
[defaults]
memory_budget = $budget
n_threads = 1
n_ctx = 512
[reasoning]
path = $reasoning
temperature = 0
max_tokens = 40
[dream]
fallback = reasoning
temperature = 0.9
max_tokens = 40
[coder]
path = $top/$work/coder.gguf
temperature = 0.3
max_tokens = 12
[embedding]
fallback = reasoning
embedding = true
INI
say "the roles (config: $work/demo.ini)"
$O -c "$work/demo.ini" ps

say "generate --role reasoning (greedy), text streams to stdout"
$O -c "$work/demo.ini" generate --role reasoning -p "Once upon a time"
say "generate --role dream (the same weights, sampled at temperature 0.9)"
$O -c "$work/demo.ini" generate --role dream -p "Once upon a time" --seed 7
say "chat over the model's template (two user lines from a pipe)"
printf 'Hello!\nTell me about the cat.\n' | $O -c "$work/demo.ini" chat --role reasoning -n 20
say "embed --role embedding: one JSON vector per line (first 80 characters shown)"
$O -c "$work/demo.ini" embed --role embedding -p "a cat" -p "a dog" | cut -c1-80
say "preload two roles in parallel under the budget, with load logs"
$O -v -c "$work/demo.ini" preload reasoning coder
if [ -r "$top/../shared/models/stories260K.gguf" ]; then
  say "the shipped example config, as shipped (examples/orchestra.ini)"
  $O -c examples/orchestra.ini ps
fi
say "from Python (python/orchestra: ctypes, standard library only): four threads at once, batched"
ORCH_LIB="$top/build/liborchestra.so.0" PYTHONPATH="$top/python" python3 - "$work/demo.ini" <<'PY'
import sys, threading
from orchestra import Orchestra
with Orchestra(sys.argv[1]) as o:
    out = {}
    def ask(p):
        out[p] = o.generate("reasoning", p, max_tokens=12)
    ts = [threading.Thread(target=ask, args=(p,)) for p in ("Once upon a time", "The cat", "Lily", "Tom")]
    for t in ts: t.start()
    for t in ts: t.join()
    for p, r in out.items():
        print(f"{p!r:20} -> {r.text!r} ({r.n_generated} tokens, {r.finish})")
    print("embedding dims:", len(o.embed(["a cat"])[0]))
PY
say "the daemon: orchestra serve (loopback, a free port), then one request per API"
rm -f "$work/port" # a port file from an earlier run would point at a daemon long gone
$O -c "$work/demo.ini" serve --port 0 --port-file "$work/port" 2>"$work/serve.log" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$work/port")"
echo "+ curl $url/v1/chat/completions (OpenAI)" >&2
curl -s "$url/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "reasoning", "messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 20}'
echo
echo "+ curl $url/api/generate (Ollama)" >&2
curl -s "$url/api/generate" -d '{"model": "dream", "prompt": "Once upon a time", "stream": false, "options": {"num_predict": 20, "seed": 7}}'
echo
echo "+ curl $url/api/embed (Ollama)" >&2
curl -s "$url/api/embed" -d '{"model": "embedding", "input": "a cat"}' | cut -c1-100
echo
kill -TERM "$serve_pid"
wait "$serve_pid" && echo "daemon stopped cleanly (exit 0)" >&2
say "done: see README.md for the library API, the config file and the daemon"
