#!/usr/bin/env bash
# The Python package against C, same run, same model (stories260K, 1 thread):
#   - per call: a greedy generation of 8 tokens and an embedding of 16
#     texts, median microseconds in C (build/bench/bench_call) and through
#     Python (from the main thread, which runs each call on a helper thread
#     so that Ctrl-C can cancel it, and from another thread, which calls
#     directly); the difference is what Python adds;
#   - 8 Python threads generating 32 tokens each at once against one thread
#     doing the same 8 calls in turn (aggregate tokens/s).
# Prints figures; asserts nothing. Needs build/ (scripts/test.sh).
# usage: bench/python.sh [REPS]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
reps=${1:-300}
model=${ORCH_TEST_MODEL:-$top/../shared/models/stories260K.gguf}
echo "machine: $(nproc) CPUs; model: $(basename "$model"), 1 thread; $reps calls each"
c=$(build/bench/bench_call "$model" "$reps")
ORCH_LIB=$top/build/liborchestra.so.0 PYTHONPATH=$top/python python3 - "$model" "$reps" "$c" <<'PY'
import statistics, sys, threading, time
from orchestra import Model
model, reps, c = sys.argv[1], int(sys.argv[2]), dict(l.split() for l in sys.argv[3].splitlines())
m = Model(model, n_threads=1)
texts = [f"text number {i}" for i in range(16)]

def per_call():
    g, e = [], []
    for r in range(-10, reps):
        t0 = time.perf_counter()
        m.generate("Once upon a time", max_tokens=8, temperature=0)
        t1 = time.perf_counter()
        m.embed(texts)
        t2 = time.perf_counter()
        if r >= 0:
            g.append((t1 - t0) * 1e6)
            e.append((t2 - t1) * 1e6)
    return statistics.median(g), statistics.median(e)

main = per_call()
box = {}
t = threading.Thread(target=lambda: box.setdefault("r", per_call()))
t.start(); t.join()
other = box["r"]
cg, ce = float(c["generate"]), float(c["embed"])
print(f"{'call':28s} {'C us':>9s} {'Python us':>10s} {'added us':>9s} {'ratio':>6s}")
for name, cv, (pm, po) in (("generate 8 tokens", cg, (main[0], other[0])),
                           ("embed 16 texts", ce, (main[1], other[1]))):
    print(f"{name + ' (main thread)':28s} {cv:9.1f} {pm:10.1f} {pm - cv:9.1f} {pm / cv:6.2f}")
    print(f"{name + ' (other thread)':28s} {cv:9.1f} {po:10.1f} {po - cv:9.1f} {po / cv:6.2f}")

prompts = ["Once upon a time", "The cat", "One day, Tom", "Lily and her mom", "The sun",
           "A little dog", "Ben had a ball", "The bird"]
def one(p):
    return m.generate(p, max_tokens=32, temperature=0).n_generated
def run_seq():
    t0 = time.perf_counter(); n = sum(one(p) for p in prompts); return n / (time.perf_counter() - t0)
def run_par():
    out = [0] * 8
    def w(i): out[i] = one(prompts[i])
    ts = [threading.Thread(target=w, args=(i,)) for i in range(8)]
    t0 = time.perf_counter()
    for x in ts: x.start()
    for x in ts: x.join()
    return sum(out) / (time.perf_counter() - t0)
seq = statistics.median(run_seq() for _ in range(5))
par = statistics.median(run_par() for _ in range(5))
print(f"8 threads at once: {par:.0f} tokens/s; one thread, the same 8 calls in turn: "
      f"{seq:.0f} tokens/s ({par / seq:.2f}x)")
m.close()
PY
