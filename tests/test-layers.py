#!/usr/bin/env python3
"""test-layers.py BUILD_DIR SOURCE_DIR — the layers have no cycle.

Two graphs, each over the files of a library (a file's .c and .h are one
node): calls, from the symbols each object file defines and uses (`nm` on
the static libraries), and includes, from the sources' #include "..."
lines. Either graph having a cycle fails the test, naming the files on it;
so does a call from src/ into src/llama/ other than through the backend
interface, or any call from src/llama/ up into the model layer (model.c,
generate.c, orchestra.c, config.c); and every C line is under 100 columns.
Prints what it checked, so a run that found no objects cannot pass."""
import os, re, subprocess, sys

build, top = sys.argv[1], sys.argv[2]
failed = 0

def fail(msg):
    global failed
    failed += 1
    print("FAIL:", msg)

def unit(path):
    return os.path.splitext(path)[0]

def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index: visit(v)
    return out

# ---- calls -------------------------------------------------------------------------
def call_graph(objdir):
    """objdir: CMake's object folder of a library (CMakeFiles/X.dir/FOLDER)."""
    objs = []
    for d, _, files in os.walk(objdir):
        objs += [os.path.join(d, f) for f in files if f.endswith((".c.o", ".cpp.o"))]
    defs, uses = {}, {}
    for obj in objs:
        node = unit(os.path.relpath(obj, objdir)[:-2])
        text = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
        uses[node] = set()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "U":
                uses[node].add(parts[1])
            elif len(parts) == 3 and parts[1] in "TDBR":
                defs[parts[2]] = node
    return {v: {defs[s] for s in syms if s in defs and defs[s] != v} for v, syms in uses.items()}

libs = {"orchestra": "src", "orchestra-server": "server"}
for lib, folder in libs.items():
    objdir = os.path.join(build, "CMakeFiles", lib + ".dir", folder)
    g = call_graph(objdir) if os.path.isdir(objdir) else {}
    edges = sum(len(v) for v in g.values())
    print(f"calls: {folder}/: {len(g)} files, {edges} calls between them")
    if len(g) < 5 or edges < 5:
        fail(f"{objdir}: too few files or calls found: the check would be vacuous")
    for c in cycles(g):
        fail(f"{folder}/: a cycle of calls among {', '.join(c)}")
    if folder == "src":
        upper = {"model", "generate", "orchestra", "config"}
        for v, ws in g.items():
            for w in ws:
                if v.startswith("llama/") and w in upper:
                    fail(f"src/{v}.c calls up into src/{w}.c")
                if w.startswith("llama/") and not v.startswith("llama/") and v != "backend":
                    fail(f"src/{v}.c calls into src/{w}.c: only backend.c picks the backend")

# ---- includes ----------------------------------------------------------------------
for folder in ("src", "server"):
    graph = {}
    root = os.path.join(top, folder)
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith((".c", ".h", ".cpp")): continue
            rel = os.path.relpath(os.path.join(d, f), root)
            node = unit(rel)
            graph.setdefault(node, set())
            for line in open(os.path.join(d, f), encoding="utf-8"):
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if not m: continue
                inc = os.path.normpath(os.path.join(os.path.dirname(rel), m.group(1)))
                if os.path.exists(os.path.join(root, inc)) and unit(inc) != node:
                    graph[node].add(unit(inc))
    edges = sum(len(v) for v in graph.values())
    print(f"includes: {folder}/: {len(graph)} files, {edges} edges")
    if edges < 5:
        fail(f"{folder}/: too few includes found: the check would be vacuous")
    for c in cycles(graph):
        fail(f"{folder}/: a cycle of includes among {', '.join(c)}")

# ---- lines under 100 columns (.clang-format's ColumnLimit) ---------------------------
n_files = 0
for folder in ("include", "src", "server", "tools", "tests", "bench"):
    for d, _, files in os.walk(os.path.join(top, folder)):
        for f in files:
            if not f.endswith((".c", ".h", ".cpp")): continue
            n_files += 1
            for i, line in enumerate(open(os.path.join(d, f), encoding="utf-8"), 1):
                if len(line.rstrip("\n")) > 99:
                    fail(f"{os.path.relpath(os.path.join(d, f), top)}:{i}: "
                         f"{len(line.rstrip())} columns (at most 99)")
print(f"columns: {n_files} C files")

print(f"{0 if failed else 1} passed, {failed} failed")
sys.exit(1 if failed else 0)
