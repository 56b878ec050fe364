#!/usr/bin/env bash
# `orchestra ps` at 10, 100 and 1,000 roles over three model files: the
# median wall time of 21 runs each, and each count's time against 10 roles.
# With a second binary (a baseline build), both run alternating in the same
# run and the ratio new/baseline is printed too.
# usage: bench/ps.sh [ORCHESTRA [BASELINE_ORCHESTRA]]   (default: build/orchestra)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$top/build/orchestra}
base=${2:-}
[ -x "$bin" ] || { echo "no $bin: build first (scripts/demo.sh or scripts/test.sh)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" mkmodel --params 1M --seed 1 -o "$dir/a.gguf" > /dev/null 2>&1
"$bin" mkmodel --params 1M --seed 2 -o "$dir/b.gguf" > /dev/null 2>&1
"$bin" mkmodel --params 1M --seed 3 --ctx 512 -o "$dir/c.gguf" > /dev/null 2>&1
for n in 10 100 1000; do
  {
    printf '[defaults]\nidle_ttl = -1\n'
    for ((i = 0; i < n; i++)); do
      printf '[r%d]\npath = %s\n' "$i" "$dir/$(printf 'abc' | cut -c$((i % 3 + 1))).gguf"
    done
  } > "$dir/ps$n.ini"
done
python3 - "$dir" "$bin" "$base" <<'PY'
import subprocess, sys, time
d, new, old = sys.argv[1], sys.argv[2], sys.argv[3]
def once(b, n):
    t = time.perf_counter()
    subprocess.run([b, '-c', f'{d}/ps{n}.ini', 'ps'], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t
res = {}
for n in (10, 100, 1000):
    a, b = [], []
    for _ in range(21):
        a.append(once(new, n))
        if old:
            b.append(once(old, n))
    a.sort(); b.sort()
    res[n] = (a[10] * 1e3, b[10] * 1e3 if old else None)
for n, (a, b) in res.items():
    line = f'{n:5} roles: {a:6.1f} ms ({a / res[10][0]:.2f}x 10 roles)'
    if b is not None:
        line += f'   baseline {b:6.1f} ms ({b / res[10][1]:.2f}x)   new/baseline {a / b:.2f}'
    print(line)
PY
