#!/usr/bin/env python3
"""Groups `perf report --sort dso,symbol -g none --stdio` lines (on stdin)
into the components of tokencache's hit path, by self time. Used by
bench/profile.sh."""
import argparse
import re
import sys

# First match wins; symbols are Rust paths (demangled) or C/kernel names.
GROUPS = [
    ("kernel: TCP/IP, loopback, syscalls, scheduler", lambda dso, sym: dso.startswith("[kernel")),
    ("allocator (malloc/free/realloc)", lambda dso, sym: re.search(r"\b(_?int_(malloc|free|realloc)|malloc|free|cfree|realloc|calloc|malloc_consolidate|tcache|unlink_chunk|__rust_(alloc|dealloc|realloc))", sym)),
    ("memcpy/memmove/memset", lambda dso, sym: re.search(r"mem(cpy|move|set|cmp)|__memmove|__memset|__memcmp", sym)),
    ("other libc (syscall wrappers, clock_gettime, locks)", lambda dso, sym: "libc" in dso or "ld-linux" in dso or "vdso" in dso),
    ("HMAC-SHA256 (key derivation)", lambda dso, sym: re.search(r"sha2|hmac|digest::|block_buffer", sym)),
    ("request parsing (tokencache_core form/request, base64)", lambda dso, sym: re.search(r"tokencache_core::(form|request)|base64::", sym)),
    ("memory store lookup", lambda dso, sym: "tokencache_memory_store" in sym),
    ("answer rendering / other tokencache_core", lambda dso, sym: "tokencache_core" in sym),
    ("metrics recording", lambda dso, sym: re.search(r"metrics|prometheus|quanta|crossbeam_epoch|sketches", sym)),
    ("tracing", lambda dso, sym: re.search(r"tracing", sym)),
    ("tokencache_proxy (handler, answer, routing glue)", lambda dso, sym: "tokencache_proxy" in sym),
    ("axum / tower / tower-http (routing, layers)", lambda dso, sym: re.search(r"axum|tower|matchit", sym)),
    ("hyper / hyper-util / httparse (HTTP/1 codec, connection)", lambda dso, sym: re.search(r"hyper|httparse|h2::", sym)),
    ("http / bytes (header maps, buffers)", lambda dso, sym: re.search(r"\bhttp::|bytes::|HeaderMap|HeaderValue|httpdate", sym)),
    ("tokio (runtime, I/O driver, timers, tasks)", lambda dso, sym: re.search(r"tokio|mio::", sym)),
    ("std / core / alloc", lambda dso, sym: re.search(r"\b(std|core|alloc)::", sym)),
]

parser = argparse.ArgumentParser()
parser.add_argument("--us-per-request", type=float, help="server CPU per request, to turn shares into µs")
args = parser.parse_args()

totals = {}
unknown = {}
for line in sys.stdin:
    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*?)\s*$", line)
    if not m:
        continue
    share, dso, sym = float(m.group(1)), m.group(2), m.group(3)
    for name, test in GROUPS:
        if test(dso, sym):
            totals[name] = totals.get(name, 0.0) + share
            break
    else:
        totals["other"] = totals.get("other", 0.0) + share
        unknown[sym] = unknown.get(sym, 0.0) + share

whole = sum(totals.values()) or 1.0
for name, share in sorted(totals.items(), key=lambda kv: -kv[1]):
    us = f"  {args.us_per_request * share / whole:5.2f} µs" if args.us_per_request else ""
    print(f"{share:6.2f}%{us}  {name}")
if unknown:
    top = sorted(unknown.items(), key=lambda kv: -kv[1])[:5]
    print("        other, largest: " + "; ".join(f"{s[:60]} {v:.2f}%" for s, v in top))
