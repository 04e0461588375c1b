#!/usr/bin/env python3
"""Checks the layering of the C tree: no #include cycle among the project's headers, protocol/
includes nothing from proxy/ or stats/ and no I/O headers, stats/ never sees msg.h (it takes
views) nor proxy/. Prints each problem on one line; exits 1 when there is one."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ("protocol", "stats", "proxy")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

files = {}  # basename -> path
for layer in LAYERS:
    for dirpath, _, names in os.walk(os.path.join(ROOT, layer)):
        for n in names:
            if n.endswith((".c", ".h")):
                files.setdefault(n, os.path.join(dirpath, n))


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [i for i in INCLUDE.findall(f.read()) if i in files]


def layer_of(path):
    return os.path.relpath(path, ROOT).split(os.sep)[0]


problems = []
graph = {n: includes(p) for n, p in files.items() if n.endswith(".h")}
for name, path in files.items():
    mine = layer_of(path)
    direct = includes(path)
    for inc in direct:
        theirs = layer_of(files[inc])
        if mine == "protocol" and theirs != "protocol":
            problems.append("%s includes %s: protocol/ depends on nothing" % (name, inc))
        if mine == "stats" and theirs == "proxy":
            problems.append("%s includes %s: stats/ never reaches into proxy/" % (name, inc))
    if mine == "protocol":
        with open(path, encoding="utf-8", errors="replace") as f:
            if re.search(r"#\s*include\s+<(uv|h2o|stdio)\.h>", f.read()):
                problems.append("%s: protocol/ does no I/O" % name)

# stats/ must not see msg.h, directly or through a header
def closure(name, seen):
    for inc in graph.get(name, includes(files[name])):
        if inc not in seen:
            seen.add(inc)
            closure(inc, seen)
    return seen


for name, path in files.items():
    if layer_of(path) == "stats" and "msg.h" in closure(name, set()):
        problems.append("%s sees msg.h: stats/ takes views (view.h), not messages" % name)

# cycles among headers
state = {}


def visit(n, stack):
    state[n] = 1
    stack.append(n)
    for m in graph.get(n, []):
        if state.get(m) == 1:
            problems.append("include cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
        elif m not in state:
            visit(m, stack)
    stack.pop()
    state[n] = 2


for h in sorted(graph):
    if h not in state:
        visit(h, [])

for p in problems:
    print("check_tree: " + p)
sys.exit(1 if problems else 0)
