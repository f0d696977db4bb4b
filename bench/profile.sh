#!/usr/bin/env bash
# Profiles the hit path: mock IdP + tokencache on loopback, KEYS keys
# warmed, then for tokencache and for the reference server in turn, the
# same wrk load (-t2 -c128 by default) with `perf record` (software
# cpu-clock event: VMs often lack hardware counters) on the server while
# wrk runs. Prints, for each, the server CPU per request and where it goes
# by component (kernel, hyper, tokio, allocator, HMAC, parsing, ...), in
# % of samples and in µs per request, then tokencache's hottest symbols.
#
#   bench/profile.sh [KEYS] [SECONDS] [WRK_SHAPE]   # defaults: 1000 10 "-t2 -c128"
#
# Needs a release build (scripts/bench makes one) and perf (Debian:
# linux-perf). PERF_CALLGRAPH="--call-graph dwarf,16384" PERF_FREQ=499 gives
# inclusive (children) figures: perf report -i target/bench/profile/tokencache.perf --children
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000}
seconds=${2:-10}
shape=${3:--t2 -c128}
bin=target/release
out=target/bench/profile
mkdir -p "$out"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}
cpu_ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }

idp=$(port) proxy=$(port) admin=$(port) reference=$(port)
"$bin/tokencache" mock-idp --listen "127.0.0.1:$idp" --log warn >"$out/mock-idp.log" 2>&1 &
pids+=($!)
wait_port "$idp"
"$bin/tokencache" serve --listen "127.0.0.1:$proxy" --admin-listen "127.0.0.1:$admin" \
    --upstream "http://127.0.0.1:$idp/oauth2/token" --budget-rate 0 --log warn >"$out/tokencache.log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
wait_port "$proxy"
"$bin/loader" --url "http://127.0.0.1:$proxy/oauth2/token" --keys "$keys" >/dev/null
"$bin/reference" --listen "127.0.0.1:$reference" --capture "http://127.0.0.1:$proxy/oauth2/token" \
    >"$out/reference.log" 2>&1 &
reference_pid=$!
pids+=("$reference_pid")
wait_port "$reference"

auth="Basic $(printf demo-client:demo-secret | base64)"
hz=$(getconf CLK_TCK)

# profile NAME PID PORT: wrk against PORT, perf on PID; prints the summary.
profile() {
    local name=$1 pid=$2 port=$3
    # shellcheck disable=SC2086 # the shape is two flags
    wrk $shape -d"$((seconds + 2))s" --latency -s bench/hit.lua "http://127.0.0.1:$port/oauth2/token" \
        -- "$keys" "$auth" >"$out/$name.wrk" &
    local wrk_pid=$!
    pids+=("$wrk_pid")
    sleep 1
    local before
    before=$(cpu_ticks "$pid")
    # shellcheck disable=SC2086 # PERF_CALLGRAPH holds flags
    perf record -q -e cpu-clock -F "${PERF_FREQ:-1999}" ${PERF_CALLGRAPH:--g} -p "$pid" \
        -o "$out/$name.perf" -- sleep "$seconds" 2>/dev/null
    local after
    after=$(cpu_ticks "$pid")
    wait "$wrk_pid" || true
    local rps
    rps=$(awk '/Requests\/sec/ { print $2 }' "$out/$name.wrk")
    local us
    us=$(python3 -c "print(f'{($after - $before) / $hz * 1e6 / ($rps * $seconds):.2f}')")
    echo
    echo "== $name: wrk $shape, $keys keys: $rps req/s, server CPU $us µs/request (under perf)"
    perf report -i "$out/$name.perf" --no-children --sort dso,symbol -g none --stdio 2>/dev/null |
        python3 bench/perf_groups.py --us-per-request "$us" | tee "$out/$name.groups"
}

profile tokencache "$proxy_pid" "$proxy"
profile reference "$reference_pid" "$reference"

echo
echo "== tokencache: hottest symbols (self time)"
perf report -i "$out/tokencache.perf" --no-children --sort dso,symbol -g none --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+$//' | head -30 | tee "$out/tokencache.flat"
echo
echo "data: perf report -i $out/tokencache.perf (and $out/reference.perf)"
