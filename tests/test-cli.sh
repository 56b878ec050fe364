#!/usr/bin/env bash
# test-cli.sh — the `orchestra` command end to end: results on stdout,
# errors on stderr, documented exit codes. Usage: test-cli.sh PATH/TO/orchestra
set -u
BIN=${1:?usage: test-cli.sh ORCHESTRA_BINARY}
SRC=${ORCH_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL=${ORCH_TEST_MODEL:-$SRC/../shared/models/stories260K.gguf}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0 skip=0

ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect_rc NAME RC CMD...: runs CMD (stdout -> $TMP/out, stderr -> $TMP/err)
expect_rc() {
  local name=$1 want=$2; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  local got=$?
  if [ "$got" -eq "$want" ]; then ok; else bad "$name: exit $got, expected $want; stderr: $(head -c 400 "$TMP/err")"; fi
}
expect_out() { # NAME EXPECTED: stdout equals
  if [ "$(cat "$TMP/out")" = "$2" ]; then ok; else bad "$1: stdout '$(head -c 300 "$TMP/out")', expected '$2'"; fi
}
expect_grep() { # NAME FILE PATTERN
  if grep -q -- "$3" "$TMP/$2"; then ok; else bad "$1: no '$3' in $2: $(head -c 400 "$TMP/$2")"; fi
}

# --- help and usage ----------------------------------------------------------------
expect_rc "help" 0 "$BIN" --help
expect_grep "help lists exit codes" out "exit codes"
for c in generate chat embed info mkmodel ps preload unload serve run list show stop; do
  expect_rc "$c --help" 0 "$BIN" $c --help
  expect_grep "$c --help" out "usage: orchestra"
  expect_rc "help $c" 0 "$BIN" help $c
  expect_grep "help $c" out "usage: orchestra"
done
expect_rc "help" 0 "$BIN" help
expect_grep "help lists ollama's verbs" out "run MODEL \[PROMPT\]"
expect_rc "help unknown" 2 "$BIN" help frobnicate
expect_rc "generate --help" 0 "$BIN" generate --help
expect_grep "generate --help: -c after the command" out "-c, --config FILE"
expect_rc "run without a model" 2 "$BIN" run
expect_rc "serve without roles" 2 "$BIN" serve
expect_grep "serve without roles: why" err "-m FILE"
# every short letter means one thing in every command
for c in generate chat embed info mkmodel ps preload unload serve show; do
  "$BIN" $c --help | sed -n 's/^  -\([a-zA-Z]\), --\([a-z-]*\).*/\1 \2/p'
done | sort -u > "$TMP/letters"
if [ "$(cut -d' ' -f1 "$TMP/letters" | uniq -d)" = "" ]; then ok; else bad "a short option letter with two meanings: $(cut -d' ' -f1 "$TMP/letters" | uniq -d | while read -r l; do grep "^$l " "$TMP/letters" | tr '\n' ' '; done)"; fi
# the man page lists what the commands print: ps's columns, the verbs
for w in 'ROLE, MODEL' 'STATE, SIZE, LEASES, UNLOAD IN' '.B run' '.B show' 'cors' '\fB\-m\fI FILE\fR...)'; do
  if grep -qF -- "$w" "$SRC/docs/orchestra.1"; then ok; else bad "man page lacks '$w'"; fi
done
expect_rc "no command" 2 "$BIN"
expect_rc "unknown command" 2 "$BIN" frobnicate
expect_rc "unknown option" 2 "$BIN" generate --frob
expect_rc "version" 0 "$BIN" --version
expect_grep "version names the library" out "^liborchestra [0-9]"
expect_grep "version names llama.cpp" out "^llama.cpp [0-9]"
expect_grep "version names the devices" out "^devices .*(cpu, "
# unload talks to a daemon: none here
expect_rc "unload, no daemon" 1 "$BIN" unload coder --url http://127.0.0.1:9
expect_grep "unload, no daemon: why" err "cannot reach the daemon at http://127.0.0.1:9"
expect_rc "unload, bad url" 2 "$BIN" unload coder --url ftp://x
expect_rc "unload, no role" 2 "$BIN" unload

# --- mkmodel and info: need no real model ------------------------------------------
expect_rc "mkmodel" 0 "$BIN" mkmodel --params 1M --seed 3 -o "$TMP/syn.gguf"
expect_rc "info synthetic" 0 "$BIN" info "$TMP/syn.gguf"
expect_grep "info arch" out "architecture:    llama"
expect_rc "info --json" 0 "$BIN" info --json "$TMP/syn.gguf"
expect_grep "info json" out '"architecture": "llama"'
expect_rc "mkmodel bad size" 2 "$BIN" mkmodel --params lots -o "$TMP/x.gguf"
expect_rc "mkmodel no output" 2 "$BIN" mkmodel --params 1M
expect_rc "generate synthetic" 0 "$BIN" generate -m "$TMP/syn.gguf" -p "hello" -n 4 --temp 0 --threads 1
head -c 4096 /dev/urandom > "$TMP/garbage.gguf"
expect_rc "info garbage" 3 "$BIN" info "$TMP/garbage.gguf"
expect_grep "info garbage message" err "not a GGUF file"
expect_rc "info missing" 3 "$BIN" info "$TMP/none.gguf"
expect_grep "info missing names file" err "none.gguf"
head -c 100 "$TMP/syn.gguf" > "$TMP/cut.gguf"
expect_rc "info truncated" 3 "$BIN" info "$TMP/cut.gguf"
expect_grep "info truncated message" err "cut short"
# help and version to a full stdout are write errors, not success
"$BIN" --help >/dev/full 2>/dev/null; rc=$?
if [ $rc -eq 4 ]; then ok; else bad "--help to a full stdout: exit $rc, expected 4"; fi
"$BIN" generate --help >/dev/full 2>/dev/null; rc=$?
if [ $rc -eq 4 ]; then ok; else bad "generate --help to a full stdout: exit $rc, expected 4"; fi
# help shows the library's real defaults
expect_rc "generate help" 0 "$BIN" generate --help
expect_grep "help default max-tokens" out "tokens to generate (default 256)"
expect_grep "help default threads" out "(default $(nproc)"
expect_grep "help llama spellings" out "ctx-size"
# a symlink loop is bad input (3), like a missing file
ln -s "$TMP/loop" "$TMP/loop"
expect_rc "symlink loop" 3 "$BIN" info "$TMP/loop"
# mkmodel never replaces what is not a regular file, and checks before writing
expect_rc "mkmodel to /dev/null" 3 "$BIN" mkmodel --params 1M -o /dev/null
if [ -c /dev/null ]; then ok; else bad "mkmodel replaced /dev/null"; fi
expect_grep "mkmodel device message" err "not a regular file"
mkdir "$TMP/adir"
expect_rc "mkmodel to a directory" 3 "$BIN" mkmodel --params 1M -o "$TMP/adir"
if [ ! -e "$TMP/adir.tmp" ]; then ok; else bad "mkmodel wrote $TMP/adir.tmp before failing"; fi
ln -s "$TMP/syn.gguf" "$TMP/link.gguf"
expect_rc "mkmodel to a symlink" 3 "$BIN" mkmodel --params 1M -o "$TMP/link.gguf"
if [ -L "$TMP/link.gguf" ]; then ok; else bad "mkmodel replaced a symlink"; fi
# an interrupted mkmodel leaves no half-written file
"$BIN" mkmodel --params 2B -o "$TMP/big.gguf" 2>/dev/null &
mk=$!
for _ in $(seq 100); do [ -e "$TMP/big.gguf.tmp" ] && break; sleep 0.05; done
kill -INT $mk; wait $mk 2>/dev/null
if [ ! -e "$TMP/big.gguf.tmp" ] && [ ! -e "$TMP/big.gguf" ]; then ok; else bad "interrupted mkmodel left $(ls "$TMP"/big.gguf* 2>/dev/null)"; fi
# a name in a file that is not UTF-8: info prints it safely, JSON stays valid
{ printf 'GGUF\x03\x00\x00\x00'; printf '\x00\x00\x00\x00\x00\x00\x00\x00'
  printf '\x02\x00\x00\x00\x00\x00\x00\x00'
  printf '\x14\x00\x00\x00\x00\x00\x00\x00general.architecture\x08\x00\x00\x00'
  printf '\x05\x00\x00\x00\x00\x00\x00\x00llama'
  printf '\x0c\x00\x00\x00\x00\x00\x00\x00general.name\x08\x00\x00\x00'
  printf '\x06\x00\x00\x00\x00\x00\x00\x00ab\xff\x1b[c'; } > "$TMP/badname.gguf"
expect_rc "info bad name" 0 "$BIN" info "$TMP/badname.gguf"
if grep -q $'\x1b' "$TMP/out"; then bad "info printed an escape byte from the file"; else ok; fi
expect_rc "info --json bad name" 0 "$BIN" info --json "$TMP/badname.gguf"
expect_grep "info json replacement" out '"name": "ab'

if [ ! -r "$MODEL" ]; then
  echo "SKIP: real model not found at $MODEL; skipping the tests that need it" >&2
  skip=1
  [ -n "${ORCH_TEST_SKIP_LOG:-}" ] && echo "test-cli: real model not found at $MODEL" >> "$ORCH_TEST_SKIP_LOG"
else
  M=(-m "$MODEL" --threads 1)
  # --- generate --------------------------------------------------------------------
  expect_rc "generate" 0 "$BIN" generate "${M[@]}" -p "Once upon a time" -n 11 --temp 0
  expect_out "generate greedy text" ", there was a little girl named Lily."
  expect_grep "timings on stderr" err "tok/s"
  printf 'Once upon a time\n' > "$TMP/prompt"
  expect_rc "generate stdin" 0 "$BIN" generate "${M[@]}" -n 11 --temp 0 < "$TMP/prompt"
  expect_out "generate stdin text" ", there was a little girl named Lily."
  expect_rc "generate stop" 0 "$BIN" -q generate "${M[@]}" -p "Once upon a time" -n 50 --temp 0 --stop "girl"
  expect_out "stop string cuts" ", there was a little "
  expect_rc "quiet" 0 "$BIN" -q generate "${M[@]}" -p "Once upon a time" -n 3 --temp 0
  if [ ! -s "$TMP/err" ]; then ok; else bad "quiet: stderr not empty"; fi
  expect_rc "seeded 1" 0 "$BIN" -q generate "${M[@]}" -p "Once upon a time" -n 30 --temp 1 --seed 7
  cp "$TMP/out" "$TMP/seed1"
  expect_rc "seeded 2" 0 "$BIN" -q generate "${M[@]}" -p "Once upon a time" -n 30 --temp 1 --seed 7
  if cmp -s "$TMP/out" "$TMP/seed1"; then ok; else bad "seeded runs differ"; fi
  expect_rc "verbose logs" 0 "$BIN" -v generate "${M[@]}" -p "Once" -n 2
  expect_grep "load logged" err "event=load_end"
  expect_rc "json logs" 0 "$BIN" -v --log-json generate "${M[@]}" -p "Once" -n 2
  expect_grep "json log line" err '"event":"load_end"'
  # bad input
  expect_rc "max-tokens 0" 2 "$BIN" generate "${M[@]}" -p x -n 0
  expect_rc "max-tokens negative" 2 "$BIN" generate "${M[@]}" -p x -n -5
  expect_rc "temp negative" 2 "$BIN" generate "${M[@]}" -p x --temp -1
  expect_rc "top-p out of range" 2 "$BIN" generate "${M[@]}" -p x --top-p 1.5
  expect_rc "top-p zero" 2 "$BIN" generate "${M[@]}" -p x --top-p 0
  expect_rc "ctx zero" 2 "$BIN" generate "${M[@]}" -p x --ctx 0
  expect_rc "empty prompt" 3 "$BIN" generate "${M[@]}" -p ""
  expect_grep "empty prompt message" err "empty"
  printf 'bad \xff utf8' > "$TMP/badutf"
  expect_rc "invalid utf-8" 3 "$BIN" generate "${M[@]}" < "$TMP/badutf"
  expect_grep "utf-8 message" err "UTF-8"
  printf 'nul\0byte' > "$TMP/nul"
  expect_rc "nul byte" 3 "$BIN" generate "${M[@]}" < "$TMP/nul"
  expect_grep "nul message" err "NUL"
  expect_rc "prompt over context" 3 "$BIN" generate "${M[@]}" --ctx 8 -p "Once upon a time there was a little girl named Lily"
  expect_grep "context message" err "context holds 8"
  expect_rc "missing model" 3 "$BIN" generate -m "$TMP/nope.gguf" -p x
  expect_grep "missing model names file" err "nope.gguf"
  expect_rc "garbage model" 3 "$BIN" generate -m "$TMP/garbage.gguf" -p x
  expect_rc "directory model" 3 "$BIN" generate -m "$TMP" -p x
  # a closed or full stdout is reported, not a crash
  "$BIN" generate "${M[@]}" -p "Once upon a time" -n 5 >&- 2>"$TMP/err"
  rc=$?; if [ $rc -eq 4 ]; then ok; else bad "closed stdout: exit $rc, expected 4"; fi
  "$BIN" generate "${M[@]}" -p "Once upon a time" -n 5 >/dev/full 2>"$TMP/err"
  rc=$?; if [ $rc -eq 4 ]; then ok; else bad "full stdout: exit $rc, expected 4"; fi
  # a progress bar on a terminal, nothing of it in a pipe
  if command -v script >/dev/null 2>&1; then
    script -qec "'$BIN' generate -m '$MODEL' --threads 1 -p Once -n 2" /dev/null > "$TMP/tty" 2>&1
    if grep -q "loading model \[" "$TMP/tty" && grep -q "100%" "$TMP/tty"; then ok; else bad "no progress bar on a terminal"; fi
  fi
  expect_rc "no bar in a pipe" 0 "$BIN" generate "${M[@]}" -p Once -n 2
  if ! grep -q "loading model" "$TMP/err"; then ok; else bad "progress bar written to a pipe"; fi
  # llama.cpp's spellings, and a prompt from a file
  printf 'Once upon a time' > "$TMP/pfile"
  expect_rc "llama.cpp spellings" 0 "$BIN" -q generate -m "$MODEL" -t 1 -ngl 0 --ctx-size 256 --n-predict 11 -s 1 --temp 0 -f "$TMP/pfile"
  expect_out "spellings text" ", there was a little girl named Lily."
  expect_rc "n-gpu-layers spelling" 0 "$BIN" -q generate -m "$MODEL" -t 1 --n-gpu-layers 0 -p Once -n 2
  # more threads than CPUs: capped, with a warning
  expect_rc "threads capped" 0 "$BIN" -q generate -m "$MODEL" --threads 64 -p Once -n 2 --temp 0
  expect_grep "threads warning" err "this process may use"
  # offloading: the same text with every layer on a GPU; where llama.cpp has
  # no GPU backend (no "(gpu," device in --version), a warning, said once
  expect_rc "ngl 99" 0 "$BIN" -q generate -m "$MODEL" -t 1 --ngl 99 -p 'Once upon a time' -n 11 --temp 0
  expect_out "ngl 99 text" ", there was a little girl named Lily."
  nwarn=$(grep -c 'no GPU backend' "$TMP/err" || true)
  if "$BIN" --version | grep -qE '^devices .*\((gpu|igpu), '; then
    if [ "$nwarn" -eq 0 ]; then ok; else bad "ngl 99 with a GPU: warned anyway: $(head -c 300 "$TMP/err")"; fi
  else
    if [ "$nwarn" -eq 1 ]; then ok; else bad "ngl 99 without a GPU: expected one 'no GPU backend' warning: $(head -c 300 "$TMP/err")"; fi
  fi
  # --ctx -1 is the model's trained size (2048), not "not given"
  long=$(for _ in $(seq 250); do printf 'the cat sat. '; done)
  expect_rc "ctx 1024 too small" 3 "$BIN" -q generate -m "$MODEL" -t 1 --ctx 1024 -p "$long" -n 1
  expect_rc "ctx -1 trained" 0 "$BIN" -q generate -m "$MODEL" -t 1 --ctx -1 -p "$long" -n 1
  # generate with no prompt on a terminal says where the prompt comes from
  if command -v script >/dev/null 2>&1; then
    timeout 20 script -qec "'$BIN' generate -m '$MODEL' --threads 1 -n 2" /dev/null < /dev/null > "$TMP/tty" 2>&1
    if grep -q "reading the prompt from standard input" "$TMP/tty"; then ok; else bad "no stdin hint on a terminal"; fi
  fi
  # --- chat -------------------------------------------------------------------------
  # a long conversation: the oldest turns go, the chat goes on
  for i in 1 2 3 4 5 6; do echo "Once upon a time there was a girl who liked to play number $i"; done > "$TMP/longchat"
  expect_rc "chat trims history" 0 "$BIN" -q chat -m "$MODEL" -t 1 --ctx 96 -n 12 --temp 0 < "$TMP/longchat"
  if [ "$(wc -l < "$TMP/out")" -eq 6 ]; then ok; else bad "chat trim: expected 6 replies, got $(wc -l < "$TMP/out")"; fi
  expect_grep "chat trim message" err "dropped its"
  printf 'Hello\nTell me a story\n' > "$TMP/chat"
  expect_rc "chat pipe" 0 "$BIN" -q chat "${M[@]}" -n 5 --temp 0 < "$TMP/chat"
  if [ "$(wc -l < "$TMP/out")" -eq 2 ]; then ok; else bad "chat: expected 2 reply lines, got $(wc -l < "$TMP/out")"; fi
  # --- embed ------------------------------------------------------------------------
  expect_rc "embed -p" 0 "$BIN" embed "${M[@]}" -p hello --text "the cat"
  if [ "$(wc -l < "$TMP/out")" -eq 2 ] && [ "$(head -1 "$TMP/out" | tr -cd ',' | wc -c)" -eq 63 ] \
     && head -1 "$TMP/out" | grep -q '^\[.*\]$'; then ok; else bad "embed: two 64-number arrays expected"; fi
  cp "$TMP/out" "$TMP/emb1"
  printf 'hello\nthe cat\n' > "$TMP/lines"
  expect_rc "embed stdin" 0 "$BIN" embed "${M[@]}" < "$TMP/lines"
  if cmp -s "$TMP/out" "$TMP/emb1"; then ok; else bad "embed stdin differs from -p"; fi
  # the old embed -t TEXT: still a text when it is not a number, with a warning
  expect_rc "embed -t TEXT (old)" 0 "$BIN" embed "${M[@]}" -t hello -t "the cat"
  if cmp -s "$TMP/out" "$TMP/emb1"; then ok; else bad "embed -t TEXT (old) differs from -p"; fi
  expect_grep "embed -t TEXT warns" err "a text is -p TEXT (taken as a text"
  expect_rc "embed -t N is threads" 0 "$BIN" embed -m "$MODEL" -t 1 -p hello
  expect_grep "embed -t N warns" err "taken as threads"
  if [ "$(wc -l < "$TMP/out")" -eq 1 ]; then ok; else bad "embed -t 1 -p hello: one vector expected"; fi
  expect_rc "generate --temperature" 0 "$BIN" -q generate -m "$MODEL" -t 1 -p "Once upon a time" -n 11 --temperature 0
  expect_out "--temperature is --temp" ", there was a little girl named Lily."
  expect_rc "run FILE PROMPT" 0 "$BIN" -q run "$MODEL" Once upon a time -n 6 --temp 0 -t 1
  cp "$TMP/out" "$TMP/run1"
  expect_rc "chat -p" 0 "$BIN" -q chat -m "$MODEL" -p "Once upon a time" -n 6 --temp 0 -t 1
  if cmp -s "$TMP/out" "$TMP/run1" && [ -s "$TMP/run1" ]; then ok; else bad "run FILE PROMPT differs from chat -p: '$(cat "$TMP/run1")' vs '$(cat "$TMP/out")'"; fi
  printf 'Hello\n' > "$TMP/hello"
  expect_rc "run FILE (stdin)" 0 "$BIN" -q run "$MODEL" -n 4 --temp 0 -t 1 < "$TMP/hello"
  if [ "$(wc -l < "$TMP/out")" -eq 1 ]; then ok; else bad "run FILE with a line on stdin: one reply expected"; fi
  printf 'a\n\nb\n' > "$TMP/gap"
  expect_rc "embed empty line" 3 "$BIN" embed "${M[@]}" < "$TMP/gap"
  expect_rc "embed nothing" 3 "$BIN" embed "${M[@]}" < /dev/null
  expect_grep "embed nothing message" err "nothing to embed"
  # --- config: roles, ps, preload ---------------------------------------------------
  cat > "$TMP/o.ini" <<INI
[defaults]
memory_budget = 64M
n_threads = 1
[reasoning]
path = $MODEL
temperature = 0
max_tokens = 11
[coder]
fallback = reasoning
temperature = 0
stop = girl
[embedding]
fallback = reasoning
embedding = true
INI
  expect_rc "ps" 0 "$BIN" -c "$TMP/o.ini" ps
  expect_grep "ps header" out "ROLE"
  expect_grep "ps fallback" out "via reasoning"
  expect_grep "ps state" out "unloaded"
  expect_rc "ps --json" 0 "$BIN" -c "$TMP/o.ini" ps --json
  if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r={x["role"]: x for x in d["roles"]}; assert r["coder"]["model_role"]=="reasoning" and r["reasoning"]["state"]=="unloaded" and r["reasoning"]["n_parallel"]==4 and "budget" in d["memory"], d' "$TMP/out" 2>"$TMP/err"; then ok; else bad "ps --json: $(head -c 400 "$TMP/err")"; fi
  expect_rc "preload" 0 "$BIN" -c "$TMP/o.ini" preload reasoning
  expect_grep "preload ready" out "ready"
  expect_grep "preload memory" out "budget"
  expect_rc "generate --role" 0 "$BIN" -q -c "$TMP/o.ini" generate --role reasoning -p "Once upon a time"
  expect_out "role defaults" ", there was a little girl named Lily."
  expect_rc "generate --role coder" 0 "$BIN" -q -c "$TMP/o.ini" generate --role coder -p "Once upon a time"
  expect_out "role stop" ", there was a little "
  expect_rc "role override" 0 "$BIN" -q -c "$TMP/o.ini" generate --role coder -p "Once upon a time" -n 3
  expect_out "role override text" ", there was"
  expect_rc "embed --role" 0 "$BIN" -c "$TMP/o.ini" embed --role embedding -t hi
  cp "$TMP/out" "$TMP/emb-role"
  expect_rc "embed default role" 0 "$BIN" -c "$TMP/o.ini" embed -t hi
  if cmp -s "$TMP/out" "$TMP/emb-role"; then ok; else bad "embed without --role should use the embedding role"; fi
  expect_rc "unknown role" 3 "$BIN" -c "$TMP/o.ini" generate --role wizard -p x
  expect_grep "unknown role message" err "no role 'wizard'"
  expect_rc "preload unknown" 3 "$BIN" -c "$TMP/o.ini" preload wizard
  printf '[reasoning]\npath = %s\ntemprature = 1\n' "$MODEL" > "$TMP/bad.ini"
  expect_rc "bad config" 3 "$BIN" -c "$TMP/bad.ini" ps
  expect_grep "bad config line" err "bad.ini:3"
  expect_grep "bad config suggestion" err "did you mean 'temperature'"
  printf '[defaults]\nmemory_budget = 1K\n[r]\npath = %s\n' "$MODEL" > "$TMP/tiny.ini"
  expect_rc "over budget" 1 "$BIN" -c "$TMP/tiny.ini" generate -p x
  expect_grep "over budget message" err "more than the whole memory budget"
  expect_rc "ps without config" 2 "$BIN" ps
  # -c after the command; ollama's verbs on roles
  expect_rc "ps -c after" 0 "$BIN" ps -c "$TMP/o.ini"
  expect_grep "ps -c after lists" out "via reasoning"
  expect_rc "list" 0 "$BIN" list --config "$TMP/o.ini"
  expect_grep "list is ps" out "ROLE"
  expect_rc "show ROLE:latest" 0 "$BIN" show coder:latest -c "$TMP/o.ini"
  expect_grep "show: the role's file" out "$(basename "$MODEL")"
  expect_rc "show --json" 0 "$BIN" -c "$TMP/o.ini" show --json reasoning
  expect_grep "show --json" out '"architecture": "llama"'
  expect_rc "show unknown" 3 "$BIN" -c "$TMP/o.ini" show wizard
  expect_rc "run ROLE PROMPT" 0 "$BIN" -q run reasoning:latest Once upon a time -c "$TMP/o.ini" -n 4
  if [ -s "$TMP/out" ]; then ok; else bad "run ROLE PROMPT: no reply"; fi
  # serve -m: a role per file, no config; two files of one name are refused
  "$BIN" serve -m "$MODEL" -m "$TMP/syn.gguf" --port 0 --port-file "$TMP/port" 2>"$TMP/serve.err" &
  spid=$!
  for _ in $(seq 1 200); do [ -s "$TMP/port" ] && break; sleep 0.05; done
  if [ -s "$TMP/port" ] && curl -s "http://127.0.0.1:$(cat "$TMP/port")/v1/models" > "$TMP/models" &&
     grep -q '"id":"stories260K"' "$TMP/models" && grep -q '"id":"syn"' "$TMP/models"; then ok
  else bad "serve -m: roles named after the files: $(cat "$TMP/models" "$TMP/serve.err" 2>/dev/null | head -c 400)"; fi
  kill -TERM "$spid" 2>/dev/null; wait "$spid"
  if [ $? -eq 0 ]; then ok; else bad "serve -m: exit after SIGTERM"; fi
  # ps, preload and unload talk to the daemon that runs the config, and say so
  mkdir -p "$TMP/xr"
  export XDG_RUNTIME_DIR="$TMP/xr"
  rm -f "$TMP/port"
  "$BIN" -c "$TMP/o.ini" serve --port 0 --port-file "$TMP/port" 2>"$TMP/serve.err" &
  spid=$!
  for _ in $(seq 1 200); do [ -s "$TMP/port" ] && break; sleep 0.05; done
  expect_rc "preload in the daemon" 0 "$BIN" -c "$TMP/o.ini" preload reasoning
  expect_grep "preload says whose roles" err "the roles of the daemon at http://127.0.0.1:$(cat "$TMP/port") (pid $spid)"
  expect_rc "ps of the daemon" 0 "$BIN" ps -c "$TMP/o.ini"
  if grep -q "^reasoning .* ready " "$TMP/out"; then ok; else bad "ps of the daemon: reasoning not ready: $(cat "$TMP/out")"; fi
  expect_grep "ps says whose roles" err "the roles of the daemon"
  expect_rc "ps --json of the daemon" 0 "$BIN" ps -c "$TMP/o.ini" --json
  expect_grep "ps --json of the daemon" out '"state": "ready"'
  expect_rc "unload in the daemon of -c" 0 env -u ORCH_URL "$BIN" -c "$TMP/o.ini" unload reasoning
  expect_rc "ps after unload" 0 "$BIN" ps -c "$TMP/o.ini"
  if grep -q "^reasoning .* unloaded " "$TMP/out"; then ok; else bad "ps after unload: $(cat "$TMP/out")"; fi
  kill -TERM "$spid" 2>/dev/null; wait "$spid"
  if [ -z "$(ls "$TMP/xr")" ]; then ok; else bad "the daemon's state file stays after it stopped: $(ls "$TMP/xr")"; fi
  expect_rc "ps with no daemon" 0 "$BIN" ps -c "$TMP/o.ini"
  if grep -q "daemon" "$TMP/err"; then bad "ps with no daemon speaks of one: $(cat "$TMP/err")"; else ok; fi
  unset XDG_RUNTIME_DIR
  expect_rc "serve -m twice" 3 "$BIN" serve -m "$MODEL" -m "$MODEL" --port 0
  expect_grep "serve -m twice: why" err "exists already"
  # the shipped example works as shipped (its path is the test model's usual
  # place; where the model is elsewhere, the role's path is overridden from
  # the environment, as the example's comments say)
  exenv=()
  [ -f "$SRC/../shared/models/stories260K.gguf" ] || exenv=(env "ORCH_REASONING_PATH=$MODEL")
  expect_rc "example config ps" 0 "${exenv[@]}" "$BIN" -c "$SRC/examples/orchestra.ini" ps
  expect_rc "example config generate" 0 "${exenv[@]}" "$BIN" -q -c "$SRC/examples/orchestra.ini" generate --role coder -p Once -n 2 --threads 1
  # a role whose file is missing: ps shows it and exits 3
  printf '[a]\npath = %s\n[b]\npath = %s/missing.gguf\n' "$MODEL" "$TMP" > "$TMP/miss.ini"
  expect_rc "ps missing file" 3 "$BIN" -c "$TMP/miss.ini" ps
  expect_grep "ps missing message" out "missing.gguf"
fi

echo "$pass passed, $fail failed$([ $skip -eq 1 ] && echo ", 1 skipped")"
[ "$fail" -eq 0 ]
