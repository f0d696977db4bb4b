#!/usr/bin/env python3
"""The benchmark harness behind scripts/bench (run that, not this).

Starts every server it measures on 127.0.0.1 (mock IdP, tokencache, the
reference server, nginx), drives them with wrk and crates/bench's tools,
and writes one Markdown report. Every load is bounded in time and count;
every process it starts is stopped on exit, and its PID is listed in
$BENCH_PIDFILE while it runs so the calling script's EXIT trap can stop
what is left if this process dies.

Scenarios (see BENCHMARKS.md and issue 6):
  1 hit path   wrk against reference / tokencache / nginx, alternating
  2 coalesce   200 identical cold misses per key, tokencache vs nginx
  3 refresh    steady load across token refreshes (10 s tokens)
  4 memory     VmRSS with 0, 10k, 100k cached keys
  5 micro      criterion benches of the hit path's parts
  6 traces     the hit path with OpenTelemetry traces off and on (every
               request, and 1 %), exported to an OTLP sink on loopback

Standard library only.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
LUA = os.path.join(ROOT, "bench", "hit.lua")
NGINX_TEMPLATE = os.path.join(ROOT, "bench", "nginx.conf.template")
CLIENT = "demo-client:demo-secret"
AUTHORIZATION = "Basic " + base64.b64encode(CLIENT.encode()).decode()
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOTES_MARKER = "<!-- Notes below this line are kept by scripts/bench. -->"

FULL = dict(
    hit_seconds=10, hit_rounds=3, hit_keys=[1, 1000], hit_shapes=[(1, 64), (2, 128)],
    coalesce_keys=5, coalesce_concurrency=200, coalesce_latency_ms=50,
    refresh_seconds=60, refresh_lifetime=10, refresh_latency_ms=200,
    memory_keys=[0, 10_000, 100_000],
    criterion_args=[], quiet_wait=20, hit_attempts=3, hit_retry_budget=24, other_limit=20,
    budget_slots={"redis": 5000, "dynamodb": 1000},
)
QUICK = dict(
    hit_seconds=1, hit_rounds=1, hit_keys=[1, 100], hit_shapes=[(1, 64), (2, 128)],
    coalesce_keys=2, coalesce_concurrency=200, coalesce_latency_ms=50,
    refresh_seconds=12, refresh_lifetime=10, refresh_latency_ms=200,
    memory_keys=[0, 200, 1_000], quiet_wait=0, hit_attempts=1, hit_retry_budget=0, other_limit=100,
    criterion_args=["--warm-up-time", "0.05", "--measurement-time", "0.1", "--sample-size", "10"],
    budget_slots={"redis": 200, "dynamodb": 50},
)


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes


class Processes:
    """Every process the harness starts, stopped in reverse order on exit."""

    def __init__(self, logdir, pidfile):
        self.logdir = logdir
        self.pidfile = pidfile
        self.running = []  # (name, Popen, stop signal)
        self.commands = []  # every command run, in order, for the report

    def _write_pidfile(self):
        if self.pidfile:
            with open(self.pidfile, "w") as f:
                for _, proc, _ in self.running:
                    f.write(f"{proc.pid}\n")

    def note(self, argv, env=None):
        words = [f"{k}={quote(v)}" for k, v in (env or {}).items()] + [quote(a) for a in argv]
        text = " ".join(words).replace(ROOT + "/", "")
        if text not in self.commands:
            self.commands.append(text)

    def start(self, name, argv, stop_signal=signal.SIGTERM, env=None):
        """Starts `argv` with the harness's environment less any OTEL_*
        variable (a developer's shell must not switch traces on in a run
        meant without them), plus `env`."""
        self.note(argv, env)
        out = open(os.path.join(self.logdir, f"{name}.log"), "ab")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        full_env.update(env or {})
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=ROOT, env=full_env)
        out.close()
        self.running.append((name, proc, stop_signal))
        self._write_pidfile()
        return proc

    def stop(self, proc):
        for i, (name, p, sig) in enumerate(self.running):
            if p is proc:
                del self.running[i]
                self._write_pidfile()
                terminate(p, sig)
                return

    def stop_all(self):
        while self.running:
            _, proc, sig = self.running.pop()
            terminate(proc, sig)
        self._write_pidfile()

    def run(self, argv, timeout, check=True):
        """Runs a bounded command to completion; returns its stdout."""
        self.note(argv)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.stdout


def terminate(proc, sig):
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def quote(arg):
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def http(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


# --------------------------------------------------------------------------
# /proc


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name may hold spaces; the fields after it do not.
    fields = text[text.rindex(")") + 2:].split()
    return fields  # fields[0] is state (field 3); ppid is fields[1]


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(proc_stat(entry)[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def cpu_seconds(pids):
    """utime + stime of the processes (all their threads), in seconds."""
    user, system = cpu_split(pids)
    return user + system


def cpu_split(pids):
    """(utime, stime) of the processes (all their threads), in seconds."""
    user = system = 0
    for pid in pids:
        try:
            fields = proc_stat(pid)
            user += int(fields[11])  # field 14, utime
            system += int(fields[12])  # field 15, stime
        except OSError:
            pass
    return user / CLK_TCK, system / CLK_TCK


def machine_busy():
    """Busy CPU seconds of the whole machine, all cores, since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(procs, max_wait, limit=0.15):
    """Waits (at most max_wait s) for a second in which processes other than
    ours keep less than `limit` of a core busy; returns that share."""
    if max_wait <= 0:
        return None
    deadline = time.time() + max_wait
    while True:
        ours = lambda: cpu_seconds([p for _, proc, _ in procs.running for p in [proc.pid, *children(proc.pid)]])
        b0, o0, h0 = machine_busy(), ours(), sum(os.times()[:2])
        time.sleep(1.0)
        other = (machine_busy() - b0) - (ours() - o0) - (sum(os.times()[:2]) - h0)
        if other < limit or time.time() >= deadline:
            return max(other, 0.0)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------
# Servers


class Stack:
    """The mock IdP, and on demand tokencache, nginx and the reference server."""

    def __init__(self, procs, workdir):
        self.procs = procs
        self.workdir = workdir
        self.idp_port = free_port()
        self.idp = procs.start("mock-idp", [
            f"{BIN}/tokencache", "mock-idp", "--listen", f"127.0.0.1:{self.idp_port}", "--log", "warn"])
        wait_port(self.idp_port, self.idp, "mock IdP")

    @property
    def idp_url(self):
        return f"http://127.0.0.1:{self.idp_port}"

    def control(self, **settings):
        self.procs.note(["curl", "-s", "-X", "POST", f"{self.idp_url}/control", "-d", json.dumps(settings)])
        return json.loads(http("POST", f"{self.idp_url}/control", settings))

    def idp_requests(self):
        return json.loads(http("GET", f"{self.idp_url}/stats"))["token_requests"]

    def tokencache(self, name="tokencache", extra=(), env=None):
        port, admin = free_port(), free_port()
        argv = [f"{BIN}/tokencache", "serve", "--listen", f"127.0.0.1:{port}",
                "--admin-listen", f"127.0.0.1:{admin}",
                "--upstream", f"{self.idp_url}/oauth2/token",
                "--budget-rate", "0", "--cache-max-bytes", "4GiB",
                "--shutdown-grace", "1s", "--log", "warn", *extra]
        proc = self.procs.start(name, argv, env=env)
        wait_port(port, proc, "tokencache")
        wait_port(admin, proc, "tokencache admin")
        return Server(name, proc, f"http://127.0.0.1:{port}/oauth2/token", admin_port=admin)

    def nginx(self):
        prefix = tempfile.mkdtemp(prefix="nginx-", dir=self.workdir)
        os.chmod(prefix, 0o755)
        for sub in ("cache", "client_body", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
            os.makedirs(os.path.join(prefix, sub), exist_ok=True)
        port = free_port()
        user_line = "user root;" if os.geteuid() == 0 else ""
        with open(NGINX_TEMPLATE) as f:
            conf = (f.read().replace("@PREFIX@", prefix).replace("@PORT@", str(port))
                    .replace("@UPSTREAM@", f"127.0.0.1:{self.idp_port}").replace("@USER_LINE@", user_line))
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        proc = self.procs.start("nginx", [nginx, "-p", prefix, "-c", path], stop_signal=signal.SIGTERM)
        wait_port(port, proc, "nginx")
        return Server("nginx", proc, f"http://127.0.0.1:{port}/oauth2/token", tree=True)

    def reference(self, capture_from):
        port = free_port()
        proc = self.procs.start("reference", [
            f"{BIN}/reference", "--listen", f"127.0.0.1:{port}", "--capture", capture_from.url,
            "--body", "grant_type=client_credentials&resource=k0", "--basic", CLIENT])
        wait_port(port, proc, "reference server")
        return Server("reference", proc, f"http://127.0.0.1:{port}/oauth2/token")


class Server:
    def __init__(self, name, proc, url, admin_port=None, tree=False):
        self.name, self.proc, self.url, self.admin_port, self.tree = name, proc, url, admin_port, tree

    def pids(self):
        return [self.proc.pid] + (children(self.proc.pid) if self.tree else [])

    def cpu(self):
        return cpu_seconds(self.pids())

    def cpu_split(self):
        return cpu_split(self.pids())

    def metrics(self):
        text = http("GET", f"http://127.0.0.1:{self.admin_port}/metrics").decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    pass
        return values

    def outcomes(self):
        m = self.metrics()
        # Series carry a route label besides the outcome: sum every hit series.
        hits = sum(v for k, v in m.items()
                   if k.startswith("tokencache_requests_total{") and 'outcome="hit"' in k)
        total = sum(v for k, v in m.items() if k.startswith("tokencache_requests_total{"))
        return hits, total


def load(procs, server, keys, prefix="k", start=0, concurrency=16):
    out = procs.run([f"{BIN}/loader", "--url", server.url, "--prefix", prefix, "--from", str(start),
                     "--keys", str(keys), "--concurrency", str(concurrency), "--basic", CLIENT],
                    timeout=900)
    return json.loads(out)


# --------------------------------------------------------------------------
# Scenario 1: hit path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(text):
    def num(pattern):
        m = re.search(pattern, text)
        return m and m.groups()

    def ms(value, unit):
        return float(value) * UNITS[unit]

    result = {"rps": float(num(r"Requests/sec:\s+([\d.]+)")[0]),
              "requests": int(num(r"(\d+) requests in")[0])}
    for q in ("50", "99"):
        value, unit = num(rf"\n\s+{q}%\s+([\d.]+)(us|ms|s|m|h)")
        result[f"p{q}_ms"] = ms(value, unit)
    non2xx = num(r"Non-2xx or 3xx responses: (\d+)")
    result["non2xx"] = int(non2xx[0]) if non2xx else 0
    sock = num(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    result["socket_errors"] = sum(int(x) for x in sock) if sock else 0
    return result


def scenario_hit(procs, stack, cfg):
    stack.control(latency_ms=0, token_lifetime_secs=3600)
    tc = stack.tokencache()
    ngx = stack.nginx()
    most = max(cfg["hit_keys"])
    log(f"hit path: warming {most} keys in tokencache and nginx")
    for server in (tc, ngx):
        load(procs, server, most)
    ref = stack.reference(tc)
    servers = [ref, tc, ngx]
    runs = []
    retries_left = cfg["hit_retry_budget"]
    for keys in cfg["hit_keys"]:
        for rnd in range(cfg["hit_rounds"]):
            for threads, conns in cfg["hit_shapes"]:
                for server in servers:
                    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{cfg['hit_seconds']}s", "--latency",
                            "-s", LUA, server.url, "--", str(keys), AUTHORIZATION]
                    r = None
                    for attempt in range(1, cfg["hit_attempts"] + 1):
                        if attempt > 1:
                            if retries_left <= 0:
                                break
                            retries_left -= 1
                            log(f"  other processes used {r['other_pct']:.0f}% of a core: measuring again")
                        candidate = hit_run(procs, stack, tc, server, argv, cfg)
                        candidate["attempts"] = attempt
                        if r is None or candidate["other_pct"] < r["other_pct"]:
                            r = candidate
                        if r["other_pct"] <= cfg["other_limit"]:
                            break
                    r.update(keys=keys, round=rnd + 1, shape=f"-t{threads} -c{conns}", server=server.name)
                    runs.append(r)
                    log(f"hit keys={keys} round={rnd + 1} {r['shape']} {server.name}: {r['rps']:.0f} req/s "
                        f"p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms cpu {r['cpu_us']:.1f} us/req "
                        f"(server {r['server_cpu_pct']:.0f}%, wrk {r['wrk_cpu_pct']:.0f}%, other {r['other_pct']:.0f}% of a core)")
    for server in (ref, ngx, tc):
        procs.stop(server.proc)
    return runs


def hit_run(procs, stack, tc, server, argv, cfg):
    """One wrk run against `server`, with the CPU each party used."""
    wait_quiet(procs, cfg["quiet_wait"])
    idp0, (user0, sys0) = stack.idp_requests(), server.cpu_split()
    out0 = tc.outcomes() if server is tc else None
    busy0, wrk0, t0 = machine_busy(), children_cpu(), time.time()
    text = procs.run(argv, timeout=cfg["hit_seconds"] + 60)
    busy1, wrk1, t1 = machine_busy(), children_cpu(), time.time()
    (user1, sys1), idp1 = server.cpu_split(), stack.idp_requests()
    cpu0, cpu1 = user0 + sys0, user1 + sys1
    r = parse_wrk(text)
    other = (busy1 - busy0) - (cpu1 - cpu0) - (wrk1 - wrk0)
    requests = max(r["requests"], 1)
    r.update(cpu_us=(cpu1 - cpu0) * 1e6 / requests, upstream=idp1 - idp0,
             user_us=(user1 - user0) * 1e6 / requests, sys_us=(sys1 - sys0) * 1e6 / requests,
             other_pct=max(other, 0.0) * 100 / (t1 - t0),
             wrk_cpu_pct=(wrk1 - wrk0) * 100 / (t1 - t0),
             server_cpu_pct=(cpu1 - cpu0) * 100 / (t1 - t0))
    if out0:
        hits1, total1 = tc.outcomes()
        r["not_hits"] = int((total1 - out0[1]) - (hits1 - out0[0]))
    return r


def hit_tables(runs, cfg):
    med = {}
    for keys in cfg["hit_keys"]:
        for threads, conns in cfg["hit_shapes"]:
            shape = f"-t{threads} -c{conns}"
            for server in ("reference", "tokencache", "nginx"):
                rs = [r for r in runs if r["keys"] == keys and r["shape"] == shape and r["server"] == server]
                med[(keys, shape, server)] = {
                    "rps": statistics.median(r["rps"] for r in rs),
                    "rps_min": min(r["rps"] for r in rs), "rps_max": max(r["rps"] for r in rs),
                    "p50": statistics.median(r["p50_ms"] for r in rs),
                    "p99": statistics.median(r["p99_ms"] for r in rs),
                    "cpu": statistics.median(r["cpu_us"] for r in rs),
                    "user": statistics.median(r["user_us"] for r in rs),
                    "sys": statistics.median(r["sys_us"] for r in rs),
                    "errors": sum(r["non2xx"] + r["socket_errors"] for r in rs),
                    "upstream": sum(r["upstream"] for r in rs),
                    "not_hits": sum(r.get("not_hits", 0) for r in rs),
                    "other": statistics.median(r["other_pct"] for r in rs),
                    "server_pct": statistics.median(r["server_cpu_pct"] for r in rs),
                    "wrk_pct": statistics.median(r["wrk_cpu_pct"] for r in rs),
                }
    lines = [f"Median of {cfg['hit_rounds']} round(s) of {cfg['hit_seconds']} s each; the three servers "
             "alternate within each round. wrk and the server share the machine's cores (nothing is pinned), "
             "so every figure includes the load generator's competition for CPU. Before each run the harness waits "
             f"(up to {cfg['quiet_wait']} s) for a second in which other processes use under 15 % of a core; "
             "*CPU use* is the server · wrk · everything else on the machine during the run, in % of one core "
             "(200 % = both cores). A run during which other processes used more than "
             f"{cfg['other_limit']} % of a core is measured again (up to {cfg['hit_attempts']} times, "
             f"{cfg['hit_retry_budget']} repeats in all) and the least disturbed attempt kept.", "",
             "| keys | wrk | server | req/s | req/s range | p50 | p99 | server CPU µs/req | of which user · system | CPU use: server · wrk · other | errors | upstream reqs |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |"]
    for (keys, shape, server), m in med.items():
        lines.append(f"| {keys:,} | `{shape}` | {server} | {m['rps']:,.0f} | {m['rps_min']:,.0f}–{m['rps_max']:,.0f} "
                     f"| {fmt_ms(m['p50'])} | {fmt_ms(m['p99'])} | {m['cpu']:.1f} | {m['user']:.1f} · {m['sys']:.1f} "
                     f"| {m['server_pct']:.0f} · {m['wrk_pct']:.0f} · {m['other']:.0f} | {m['errors']} | {m['upstream']} |")
    lines += ["", "| keys | wrk | tokencache / reference (req/s) | tokencache / nginx (req/s) "
              "| CPU µs/req: tokencache · reference · nginx | non-hit answers from tokencache |",
              "| ---: | --- | ---: | ---: | --- | ---: |"]
    ratios = []
    for keys in cfg["hit_keys"]:
        for threads, conns in cfg["hit_shapes"]:
            shape = f"-t{threads} -c{conns}"
            t, r, n = (med[(keys, shape, s)] for s in ("tokencache", "reference", "nginx"))
            ratio_ref, ratio_ngx = t["rps"] / r["rps"], t["rps"] / n["rps"]
            ratios.append((keys, shape, ratio_ref, ratio_ngx, t["cpu"], n["cpu"]))
            lines.append(f"| {keys:,} | `{shape}` | {ratio_ref:.2f}× | {ratio_ngx:.2f}× | "
                         f"{t['cpu']:.1f} · {r['cpu']:.1f} · {n['cpu']:.1f} | {t['not_hits']} |")
    return "\n".join(lines), ratios


def fmt_ms(value):
    return f"{value * 1000:.0f} µs" if value < 1 else f"{value:.2f} ms"


# --------------------------------------------------------------------------
# Scenario 2: cold-miss coalescing


def scenario_coalesce(procs, stack, cfg):
    stack.control(latency_ms=cfg["coalesce_latency_ms"], token_lifetime_secs=3600)
    tc = stack.tokencache()
    ngx = stack.nginx()
    run_id = str(int(time.time()))
    results = {}
    for server in (tc, ngx):
        wait_quiet(procs, cfg["quiet_wait"])
        log(f"coalescing: {server.name}")
        out = procs.run([f"{BIN}/coalesce", "--url", server.url, "--stats", f"127.0.0.1:{stack.idp_port}",
                         "--keys", str(cfg["coalesce_keys"]), "--concurrency", str(cfg["coalesce_concurrency"]),
                         "--prefix", f"c{run_id}-{server.name}-", "--basic", CLIENT,
                         "--direct", f"{stack.idp_url}/oauth2/token"], timeout=300)
        parsed = json.loads(out)
        results[server.name] = parsed["bursts"]
        results.setdefault("_direct", []).append(parsed["direct"])
    for server in (ngx, tc):
        procs.stop(server.proc)
    stack.control(latency_ms=0)
    return results


def coalesce_table(results, cfg):
    lines = [f"Mock IdP latency {cfg['coalesce_latency_ms']} ms; {cfg['coalesce_concurrency']} requests for one "
             f"new key released together on {cfg['coalesce_concurrency']} already-open connections; "
             f"{cfg['coalesce_keys']} new keys, one after another. Latency is each waiter's own, send to whole "
             "answer; *last answer* is from the burst's release to the last waiter's answer.", "",
             "| server | key | upstream requests | distinct tokens | answers | waiter p50 | waiter p99 | waiter max | last answer |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for server, bursts in results.items():
        if server.startswith("_"):
            continue
        for b in bursts:
            answers = ", ".join(f"{n}× {s}" for s, n in b["statuses"].items())
            lat = b["latency"]
            lines.append(f"| {server} | {b['key'] + 1} | {b['upstream_requests']} | {b['distinct_tokens']} | {answers} | "
                         f"{fmt_ms(lat['p50_ms'])} | {fmt_ms(lat['p99_ms'])} | {fmt_ms(lat['max_ms'])} | "
                         f"{fmt_ms(b['last_answer_ms'])} |")
    direct = [d for d in results.get("_direct", []) if d]
    if direct:
        p50 = statistics.median(d["p50_ms"] for d in direct)
        top = max(d["max_ms"] for d in direct)
        lines += ["", f"Baseline: one request at a time straight to the mock IdP (its {cfg['coalesce_latency_ms']} ms "
                  f"delay plus RS256 signing and the loopback round trip) takes {fmt_ms(p50)} (median of "
                  f"{5 * len(direct)}, max {fmt_ms(top)})."]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Scenario 3: refresh boundary


def scenario_refresh(procs, stack, cfg):
    stack.control(latency_ms=cfg["refresh_latency_ms"], token_lifetime_secs=cfg["refresh_lifetime"])
    tc = stack.tokencache()
    wait_quiet(procs, cfg["quiet_wait"])
    log(f"refresh boundary: {cfg['refresh_seconds']} s of steady load")
    out = procs.run([f"{BIN}/steady", "--url", tc.url, "--stats", f"127.0.0.1:{stack.idp_port}",
                     "--seconds", str(cfg["refresh_seconds"]), "--connections", "8", "--interval-ms", "5",
                     "--keys", "4", "--prefix", f"r{int(time.time())}-", "--basic", CLIENT],
                    timeout=cfg["refresh_seconds"] + 120)
    result = json.loads(out)
    procs.stop(tc.proc)
    stack.control(latency_ms=0, token_lifetime_secs=3600)
    return result


def refresh_table(r, cfg):
    lat, around, elsewhere = r["latency"], r["around_refresh"], r["elsewhere"]
    classes = ", ".join(f"{k} {v:,}" for k, v in r["cache_status"].items())
    lines = [f"Token lifetime {cfg['refresh_lifetime']} s (refresh ahead at 75 %), mock IdP latency "
             f"{cfg['refresh_latency_ms']} ms; 8 connections × one request per 5 ms (~1,600 req/s), 4 keys, "
             f"{r['seconds']:.0f} s, after one warming request per key. A *refresh point* is the first answer for "
             "a key marked `detail=refreshing`; *around a refresh* is the second after one.", "",
             "| requests | errors | upstream requests | refresh points | callers that waited on the upstream | answers by Cache-Status |",
             "| ---: | ---: | ---: | ---: | ---: | --- |",
             f"| {r['requests']:,} | {r['errors']} | {r['upstream_requests']} | {r['refresh_points']} | "
             f"{r['waited_on_upstream']} | {classes} |", "",
             f"| requests | count | p50 | p99 | p99.9 | max | over {r['slow_ms']:.0f} ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s, slow in (("all", lat, r["slow_around_refresh"] + r["slow_elsewhere"]),
                          ("around a refresh", around, r["slow_around_refresh"]),
                          ("elsewhere", elsewhere, r["slow_elsewhere"])):
        if s["count"]:
            lines.append(f"| {name} | {s['count']:,} | {fmt_ms(s['p50_ms'])} | {fmt_ms(s['p99_ms'])} | "
                         f"{fmt_ms(s['p999_ms'])} | {fmt_ms(s['max_ms'])} | {slow} |")
    worst = "; ".join(f"{w['latency_ms']:.1f} ms at {w['at_s']:.1f} s ({w['class']}"
                      f"{', near a refresh' if w['near_refresh'] else ''})" for w in r["worst"])
    lines += ["", f"Slowest answers: {worst}."]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Scenario 4: memory


def scenario_memory(procs, stack, cfg):
    stack.control(latency_ms=0, token_lifetime_secs=3600)
    tc = stack.tokencache(name="tokencache-memory")
    time.sleep(0.5)
    rows = []
    filled = 0
    for keys in cfg["memory_keys"]:
        if keys > filled:
            log(f"memory: filling to {keys:,} keys")
            load(procs, tc, keys - filled, prefix="m", start=filled, concurrency=16)
            filled = keys
        time.sleep(1.0)  # let background work settle
        m = tc.metrics()
        rows.append({"keys": keys, "entries": int(m.get("tokencache_cache_entries", 0)),
                     "cache_bytes": int(m.get("tokencache_cache_bytes", 0)), "rss": rss_bytes(tc.proc.pid)})
    procs.stop(tc.proc)
    return rows


def memory_table(rows):
    base = rows[0]["rss"]
    lines = ["One tokencache process, cache filled through the proxy by `loader` (16 connections) with "
             "distinct keys (`resource=m<N>`), mock IdP JWTs (841-byte answers); VmRSS from /proc/PID/status "
             "after each step. *Marginal* is the growth since the previous row divided by the keys added.", "",
             "| cached keys | cache entries (metric) | store's own count of bytes | VmRSS | ΔRSS from 0 keys | bytes per key (ΔRSS/keys) | marginal bytes per key |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    prev = None
    for row in rows:
        delta = row["rss"] - base
        per_key = f"{delta / row['keys']:,.0f}" if row["keys"] else "—"
        marginal = "—"
        if prev and row["keys"] > prev["keys"]:
            marginal = f"{(row['rss'] - prev['rss']) / (row['keys'] - prev['keys']):,.0f}"
        lines.append(f"| {row['keys']:,} | {row['entries']:,} | {row['cache_bytes'] / 2**20:,.1f} MiB | "
                     f"{row['rss'] / 2**20:,.1f} MiB | {delta / 2**20:,.1f} MiB | {per_key} | {marginal} |")
        prev = row
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Scenario 5: micro-benchmarks


def scenario_micro(procs, cfg):
    crit = os.path.join(ROOT, "target", "criterion")
    results = []
    for package, bench in (("tokencache-core", "hit_path"), ("tokencache-bench", "lookup"),
                           ("tokencache-bench", "span_off")):
        log(f"micro: cargo bench -p {package} --bench {bench}")
        argv = ["cargo", "bench", "--locked", "-p", package, "--bench", bench, "--", *cfg["criterion_args"]]
        out = procs.run(argv, timeout=1800)
        for m in re.finditer(r"^(\S+)\s*\n?\s+time:\s+\[(.+?)\]", out, re.M):
            results.append((m.group(1), m.group(2)))
    # Prefer criterion's own estimates (median and mean) when present.
    estimates = {}
    for dirpath, _, files in os.walk(crit):
        if os.path.basename(dirpath) == "new" and "benchmark.json" in files:
            try:
                with open(os.path.join(dirpath, "benchmark.json")) as f:
                    full_id = json.load(f)["full_id"]
                with open(os.path.join(dirpath, "estimates.json")) as f:
                    e = json.load(f)
                estimates[full_id] = (e["median"]["point_estimate"], e["mean"]["point_estimate"])
            except (OSError, KeyError, ValueError):
                pass
    rows = []
    for name, text in results:
        median, mean = estimates.get(name, (None, None))
        rows.append((name, median, mean, text))
    return rows


def micro_table(rows, cfg):
    lines = ["criterion, " + ("warm-up 0.5 s, measurement 2 s per benchmark" if not cfg["criterion_args"]
                              else "quick settings (" + " ".join(cfg["criterion_args"]) + ")") + ".", "",
             "| benchmark | median | mean |", "| --- | ---: | ---: |"]
    for row in rows:
        if row[1] is None:
            lines.append(f"| `{row[0]}` | {row[3]} | |")
        else:
            lines.append(f"| `{row[0]}` | {fmt_ns(row[1])} | {fmt_ns(row[2])} |")
    return "\n".join(lines)


def fmt_ns(ns):
    return f"{ns:,.0f} ns" if ns < 10_000 else f"{ns / 1000:,.1f} µs"


# --------------------------------------------------------------------------
# Scenario 6: hit path with traces on

# The same warm hit path, exporting each request's span (always_on: the
# worst case, every request is a trace) or one in a hundred, over
# OTLP/HTTP to a sink on loopback that answers at once: the figures are
# tokencache's own cost of tracing, not a collector's.
TRACE_VARIANTS = (
    ("traces off", {}),
    ("traces on, 1 % sampled", {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                "OTEL_TRACES_SAMPLER_ARG": "0.01"}),
    ("traces on, every request", {"OTEL_TRACES_SAMPLER": "always_on"}),
)


def scenario_traces(procs, stack, cfg):
    stack.control(latency_ms=0, token_lifetime_secs=3600)
    sink_port = free_port()
    sink = procs.start("otlp-sink", [f"{BIN}/otlp-sink", "--listen", f"127.0.0.1:{sink_port}"])
    wait_port(sink_port, sink, "OTLP sink")
    sink_url = f"http://127.0.0.1:{sink_port}"

    def exported():
        stats = json.loads(http("GET", f"{sink_url}/stats"))
        return stats["exports"], stats["bytes"]

    keys = max(cfg["hit_keys"])
    threads, conns = cfg["hit_shapes"][0]
    servers = []
    for i, (variant, variables) in enumerate(TRACE_VARIANTS):
        env = dict(variables)
        if variables:
            env.update(OTEL_EXPORTER_OTLP_ENDPOINT=sink_url, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
        server = stack.tokencache(name=f"tokencache-traces-{i}", env=env)
        log(f"traces: warming {keys} keys in tokencache ({variant})")
        load(procs, server, keys)
        servers.append((variant, server))
    runs = []
    for rnd in range(cfg["hit_rounds"]):
        for variant, server in servers:
            argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{cfg['hit_seconds']}s", "--latency",
                    "-s", LUA, server.url, "--", str(keys), AUTHORIZATION]
            (exports0, bytes0) = exported()
            r = hit_run(procs, stack, server, server, argv, cfg)
            (exports1, bytes1) = exported()
            r.update(variant=variant, round=rnd + 1, keys=keys, shape=f"-t{threads} -c{conns}",
                     exports=exports1 - exports0, export_bytes=bytes1 - bytes0)
            runs.append(r)
            log(f"traces round={rnd + 1} {variant}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.3f} ms "
                f"p99 {r['p99_ms']:.3f} ms cpu {r['cpu_us']:.1f} us/req; {r['exports']} exports, "
                f"{r['export_bytes'] / 2**20:.1f} MiB")
    for _, server in servers:
        procs.stop(server.proc)
    procs.stop(sink)
    return runs


def traces_table(runs, cfg):
    med = {}
    for variant, _ in TRACE_VARIANTS:
        rs = [r for r in runs if r["variant"] == variant]
        med[variant] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "rps_min": min(r["rps"] for r in rs), "rps_max": max(r["rps"] for r in rs),
            "p50": statistics.median(r["p50_ms"] for r in rs),
            "p99": statistics.median(r["p99_ms"] for r in rs),
            "cpu": statistics.median(r["cpu_us"] for r in rs),
            "exports": sum(r["exports"] for r in rs),
            "mib": sum(r["export_bytes"] for r in rs) / 2**20,
            "errors": sum(r["non2xx"] + r["socket_errors"] for r in rs),
            "other": statistics.median(r["other_pct"] for r in rs),
        }
    base = med[TRACE_VARIANTS[0][0]]
    keys, shape = runs[0]["keys"], runs[0]["shape"]
    lines = [f"tokencache's warm hit path, {keys:,} keys, wrk `{shape}`, median of {cfg['hit_rounds']} round(s) "
             f"of {cfg['hit_seconds']} s, the variants alternating within each round; the same quiet-machine "
             "rule as section 1. *Traces on* exports each sampled request's span over OTLP/HTTP "
             "(`OTEL_EXPORTER_OTLP_ENDPOINT`, the SDK's default batch processor) to `otlp-sink` on loopback, "
             "which answers at once; the export thread's CPU is in the server's. Without a caller's "
             "`traceparent` every request is a root, so *every request* is the worst case.", "",
             "| variant | req/s | req/s range | p50 | p99 | server CPU µs/req | req/s vs off | CPU vs off "
             "| OTLP exports · MiB | other CPU % | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant, m in med.items():
        lines.append(f"| {variant} | {m['rps']:,.0f} | {m['rps_min']:,.0f}–{m['rps_max']:,.0f} "
                     f"| {fmt_ms(m['p50'])} | {fmt_ms(m['p99'])} | {m['cpu']:.1f} "
                     f"| {m['rps'] / base['rps']:.2f}× | {m['cpu'] / base['cpu']:.2f}× "
                     f"| {m['exports']:,} · {m['mib']:.1f} | {m['other']:.0f} | {m['errors']} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Scenario 7: the latency a miss pays for a shared budget slot


def scenario_budget_slot(procs, cfg):
    """One group kept in Redis, then in DynamoDB (moto on loopback, the
    emulator `scripts/test` installs: far slower than DynamoDB itself), and
    the same group kept in the process, side by side."""
    results = {}
    port = free_port()
    redis = procs.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"])
    wait_port(port, redis, "redis-server")
    out = procs.run([f"{BIN}/budget_slot", "--store", f"redis://127.0.0.1:{port}",
                     "--slots", str(cfg["budget_slots"]["redis"])], timeout=600)
    results["redis"] = json.loads(out.strip().splitlines()[-1])
    procs.stop(redis)
    moto_server = os.environ.get("TOKENCACHE_MOTO_SERVER") or os.path.join(
        ROOT, "target", "test-venv", "bin", "moto_server")
    if not os.path.exists(moto_server):
        log("budget slot: no moto_server (run scripts/test once); DynamoDB skipped")
        return results
    port = free_port()
    moto = procs.start("moto", [moto_server, "-H", "127.0.0.1", "-p", str(port)])
    wait_port(port, moto, "moto_server", timeout=60)
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    env.pop("AWS_PROFILE", None)
    table = "dynamodb://tokencache-bench"
    subprocess.run([f"{BIN}/tokencache", "store", "init", table], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    procs.note([f"{BIN}/tokencache", "store", "init", table])
    argv = [f"{BIN}/budget_slot", "--store", table, "--slots", str(cfg["budget_slots"]["dynamodb"])]
    procs.note(argv)
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=900).stdout
    results["dynamodb"] = json.loads(out.strip().splitlines()[-1])
    procs.stop(moto)
    return results


def budget_slot_table(results):
    lines = ["The latency of one budget decision a miss waits for, with no slot to wait for (the group's rate",
             "far above the run), in microseconds: one caller at a time, then 16 at once (a cold start, where",
             "a replica's callers take their turn for the store). The same group kept in the process beside it.",
             "DynamoDB is moto, the Python emulator the tests use, on loopback: far slower than DynamoDB's",
             "single-digit milliseconds, so read its row for the shape, not the figure.", "",
             "| store | slots | shared p50 | shared p99 | 16 at once p50 | 16 at once p99 | in-process p50 | in-process p99 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        s, l = r["shared"], r["local"]
        lines.append(f"| {name} | {r['slots']} | {s['alone']['p50_us']:,.0f} µs | {s['alone']['p99_us']:,.0f} µs | "
                     f"{s['concurrent']['p50_us']:,.0f} µs | {s['concurrent']['p99_us']:,.0f} µs | "
                     f"{l['alone']['p50_us']:,.2f} µs | {l['alone']['p99_us']:,.2f} µs |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Report


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])

    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip() \
                or subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT).stderr.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    commit = out(["git", "rev-parse", "--short=12", "HEAD"])
    dirty = out(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "cores": os.cpu_count(), "model": model, "memory": f"{mem_kib / 2**20:.0f} GiB",
        "kernel": platform.release(), "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "rustc": out(["rustc", "--version"]), "wrk": out(["wrk", "-v"]).splitlines()[0] if out(["wrk", "-v"]) else "?",
        "nginx": out(["nginx", "-v"]),
    }


def targets(sections, quick):
    rows = []
    if "hit" in sections:
        ratios = sections["hit"][1]
        worst_ref = min(r[2] for r in ratios)
        worst_ngx = min(r[3] for r in ratios)
        worst_cpu = max(r[4] for r in ratios)
        ngx_cpu = max(r[5] for r in ratios)
        rows += [("hit path: ≥ 0.85× the reference server's req/s", f"worst {worst_ref:.2f}×", worst_ref >= 0.85),
                 ("hit path: ≥ 1.5× nginx's req/s", f"worst {worst_ngx:.2f}×", worst_ngx >= 1.5),
                 ("hit path: ≤ 12 µs server CPU per hit", f"worst {worst_cpu:.1f} µs (nginx: up to {ngx_cpu:.1f} µs)",
                  worst_cpu <= 12)]
    if "coalesce" in sections:
        bursts = sections["coalesce"]["tokencache"]
        direct = [d for d in sections["coalesce"].get("_direct", []) if d]
        base = statistics.median(d["p50_ms"] for d in direct) if direct else None
        limit = cfg_global["coalesce_latency_ms"] + 10
        upstream = [b["upstream_requests"] for b in bursts]
        worst = max(b["latency"]["max_ms"] for b in bursts)
        ngx = sections["coalesce"].get("nginx", [])
        ngx_worst = max((b["latency"]["max_ms"] for b in ngx), default=0)
        rows += [("coalescing: one upstream request per key", f"{upstream} upstream requests per key",
                  all(u == 1 for u in upstream)),
                 (f"coalescing: every waiter answered within {limit} ms (latency + 10 ms)",
                  f"slowest waiter {fmt_ms(worst)} (nginx: {fmt_ms(ngx_worst)}"
                  + (f"; a lone request straight to the mock IdP: {fmt_ms(base)}" if base else "") + ")",
                  worst <= limit)]
    if "refresh" in sections:
        r = sections["refresh"]
        around_max = r["around_refresh"]["max_ms"] or 0
        ok = r["waited_on_upstream"] == 0 and around_max <= 10
        rows.append(("refresh boundary: no caller latency above 10 ms caused by a refresh",
                     f"{r['waited_on_upstream']} callers waited on the upstream; slowest answer within 1 s of a "
                     f"refresh {fmt_ms(around_max)} (elsewhere: {fmt_ms(r['elsewhere']['max_ms'] or 0)})", ok))
    if "memory" in sections:
        last = sections["memory"][-1]
        per_key = (last["rss"] - sections["memory"][0]["rss"]) / max(last["keys"], 1)
        rows.append(("memory: ≤ 2 KiB of RSS per cached key", f"{per_key:,.0f} bytes per key at {last['keys']:,} keys",
                     per_key <= 2048))
    lines = ["| target | measured | |", "| --- | --- | --- |"]
    for name, measured, ok in rows:
        verdict = "met" if ok else "**not met**"
        if quick:
            verdict += " (quick run: not meaningful)"
        lines.append(f"| {name} | {measured} | {verdict} |")
    return "\n".join(lines)


cfg_global = {}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny durations, figures not meaningful")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--out", help="report file (default BENCHMARKS.md, or target/bench/BENCHMARKS.quick.md)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    cfg_global.update(cfg)
    only = {int(x) for x in args.only.split(",") if x}
    out_path = args.out or (os.path.join(ROOT, "target", "bench", "BENCHMARKS.quick.md") if args.quick
                            else os.path.join(ROOT, "BENCHMARKS.md"))

    os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="run-", dir=os.path.join(ROOT, "target", "bench"))
    procs = Processes(workdir, os.environ.get("BENCH_PIDFILE"))

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    cfg_global["loadavg_start"] = loadavg()
    sections = {}
    try:
        stack = Stack(procs, workdir)
        if 1 in only:
            runs = scenario_hit(procs, stack, cfg)
            sections["hit"] = hit_tables(runs, cfg)
            sections["hit_runs"] = runs
        if 2 in only:
            sections["coalesce"] = scenario_coalesce(procs, stack, cfg)
        if 3 in only:
            sections["refresh"] = scenario_refresh(procs, stack, cfg)
        if 4 in only:
            sections["memory"] = scenario_memory(procs, stack, cfg)
        if 6 in only:
            sections["traces"] = scenario_traces(procs, stack, cfg)
        procs.stop_all()
        if 5 in only:
            sections["micro"] = scenario_micro(procs, cfg)
        if 7 in only:
            sections["budget_slot"] = scenario_budget_slot(procs, cfg)
    except BaseException:
        log(f"failed; logs of the servers are in {workdir}")
        raise
    finally:
        procs.stop_all()

    cfg_global["loadavg_end"] = loadavg()
    report = render(sections, cfg, args, procs, started, time.time() - t0)
    print(report)
    keep = ""
    if os.path.exists(out_path):
        with open(out_path) as f:
            old = f.read()
        if NOTES_MARKER in old:
            keep = old[old.index(NOTES_MARKER) + len(NOTES_MARKER):]
    with open(out_path, "w") as f:
        f.write(report + "\n" + NOTES_MARKER + (keep if keep else "\n"))
    with open(os.path.join(workdir, "raw.json"), "w") as f:
        json.dump({k: v for k, v in sections.items() if k != "hit"}, f, indent=1, default=str)
    log(f"wrote {os.path.relpath(out_path, ROOT)} in {time.time() - t0:.0f} s; raw figures and logs in "
        f"{os.path.relpath(workdir, ROOT)}")


def render(sections, cfg, args, procs, started, elapsed):
    m = machine()
    quick = cfg is QUICK
    title = "# Benchmarks" + (" (quick smoke run — figures not meaningful)" if quick else "")
    parts = [title, "",
             "Generated by `scripts/bench" + (" --quick" if quick else "") + "`; do not edit above the notes marker "
             "at the end (the next run rewrites it). Every figure comes from one run on one machine, the "
             "alternatives side by side, so compare rows with each other rather than with other machines.", "",
             "| | |", "| --- | --- |",
             f"| date | {started.strftime('%Y-%m-%d %H:%M UTC')} (run took {elapsed / 60:.1f} min) |",
             f"| machine | {m['cores']} cores, {m['model']}, {m['memory']} RAM, Linux {m['kernel']} |",
             f"| commit | `{m['commit']}` |",
             f"| tools | {m['rustc']}; {m['wrk']}; {m['nginx']} |",
             "| placement | everything on 127.0.0.1; load generator and servers share the cores, nothing pinned |",
             f"| load average (1, 5, 15 min) | {cfg_global.get('loadavg_start')} at the start, "
             f"{cfg_global.get('loadavg_end')} at the end (other work on the machine skews figures) |",
             "", "## Targets (issue 6)", "", targets(sections, quick)]
    if "hit" in sections:
        parts += ["", "## 1. Hit path", "", sections["hit"][0]]
    if "coalesce" in sections:
        parts += ["", "## 2. Cold-miss coalescing", "", coalesce_table(sections["coalesce"], cfg)]
    if "refresh" in sections:
        parts += ["", "## 3. Refresh boundary", "", refresh_table(sections["refresh"], cfg)]
    if "memory" in sections:
        parts += ["", "## 4. Memory", "", memory_table(sections["memory"])]
    if "micro" in sections:
        parts += ["", "## 5. Micro-benchmarks", "", micro_table(sections["micro"], cfg)]
    if "traces" in sections:
        parts += ["", "## 6. Hit path with traces on", "", traces_table(sections["traces"], cfg)]
    if "budget_slot" in sections:
        parts += ["", "## 7. Shared budget slot", "", budget_slot_table(sections["budget_slot"])]
    parts += ["", "## Commands", "",
              "What the harness ran, in order (ports are chosen free at each run; repeated commands once):", "",
              "```sh"] + procs.commands + ["```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
