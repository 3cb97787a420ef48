#!/usr/bin/env bash
# serve-vs-nginx.sh: server CPU per request of `ioscale serve` against nginx and the floor
# (benches/floor.c), measured the way docs/benchmarking.md asks: server pinned to CPU 0,
# `wrk -t1 -c50` pinned to CPU 1, keep-alive, a 1-byte file, interleaved rounds, the server's
# CPU from /proc/PID/task/*/schedstat (first field), ratios per round, then the median.
#
#   benches/serve-vs-nginx.sh                 # both parts (about 4 minutes)
#   ROUNDS=3 DURATION=2 benches/serve-vs-nginx.sh base
#   IDLE=15000 benches/serve-vs-nginx.sh idle  # epoll vs poll (and nginx) with idle connections
#   DISPATCH=epoll,uring-completion benches/serve-vs-nginx.sh   # the completion engine beside epoll
#
# Environment: ROUNDS (default 5; the idle part uses max(ROUNDS-2,2)), DURATION seconds per run
# (default 3), IDLE connections for the idle part (default 15000), IOSCALE (the binary; default:
# built with cargo --release), PORT_BASE (default 18500), DISPATCH (the `--dispatch` names to
# measure, comma-separated; the first is the reference of the ratios; default: epoll for the base
# part, epoll,poll for the idle part). For every ioscale line the server's own stats endpoint
# gives wait calls per request (`io_uring_enter` calls for uring-completion, `epoll_wait` calls
# for epoll), read before and after the timed run.
# Needs: gcc, wrk, taskset, python3; nginx (Debian's) for its lines (skipped with a note if absent).
set -euo pipefail
cd "$(dirname "$0")/.."
PART="${1:-all}"
case "$PART" in all|base|idle) ;; *) echo "usage: $0 [all|base|idle]" >&2; exit 2;; esac
for t in gcc wrk taskset python3; do
    command -v "$t" >/dev/null || { echo "serve-vs-nginx: $t is not installed" >&2; exit 2; }
done
WORK="$(mktemp -d /tmp/ioscale-bench.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"  # nginx workers run as nobody and must read the root
if [ -z "${IOSCALE:-}" ]; then
    cargo build --release --quiet --bin ioscale
    IOSCALE="${CARGO_TARGET_DIR:-target}/release/ioscale"
fi
gcc -O2 -o "$WORK/floor" benches/floor.c
export IOSCALE WORK PART
exec python3 - <<'PY'
import os, re, resource, signal, socket, statistics, subprocess, sys, time, datetime, shutil
LAST_WRK_CPU = 0.0

IOSCALE = os.environ["IOSCALE"]; WORK = os.environ["WORK"]; PART = os.environ["PART"]
ROUNDS = int(os.environ.get("ROUNDS", "5")); DUR = float(os.environ.get("DURATION", "3"))
IDLE = int(os.environ.get("IDLE", "15000")); PORT = int(os.environ.get("PORT_BASE", "18500"))
DISPATCH = [d for d in os.environ.get("DISPATCH", "").split(",") if d]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
root = os.path.join(WORK, "www"); os.makedirs(root); open(os.path.join(root, "1b.txt"), "w").write("x")
HOLDER = r'''
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(n):
    s = socket.socket(); s.connect(("127.0.0.1", port)); held.append(s)
print("ready", flush=True)
time.sleep(3600)
'''

def _interrupted(signum, frame):
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop what was started
signal.signal(signal.SIGTERM, _interrupted)

def wait_port(port, t=10):
    end = time.time() + t
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")

def cpu_ns(pids):
    total = 0
    for pid in pids:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                total += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
        except OSError:
            pass
    return total

def nfds(pids):
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return n

class Srv:
    def __init__(self, kind, port):
        self.kind, self.port = kind, port
        if kind.startswith("ioscale-"):
            mech = kind.split("-", 1)[1]
            cmd = ["taskset", "-c", "0", IOSCALE, "serve", "--port", str(port), "--root", root,
                   "--dispatch", mech, "--idle-timeout", "600s", "--header-timeout", "600s"]
        elif kind == "floor":
            cmd = ["taskset", "-c", "0", os.path.join(WORK, "floor"), str(port)]
        else:
            d = os.path.join(WORK, f"nginx-{port}"); os.makedirs(os.path.join(d, "logs"), exist_ok=True)
            open(os.path.join(d, "nginx.conf"), "w").write(f"""worker_processes 1; daemon off; master_process on;
pid {d}/nginx.pid; error_log {d}/logs/error.log; worker_rlimit_nofile 20000;
events {{ use epoll; worker_connections 19000; multi_accept off; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 600s;
client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
            cmd = ["taskset", "-c", "0", NGINX, "-c", os.path.join(d, "nginx.conf"), "-p", d]
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        self.pids = [self.p.pid]
        if kind == "nginx":
            time.sleep(0.2)
            kids = open(f"/proc/{self.p.pid}/task/{self.p.pid}/children").read().split()
            self.pids += [int(k) for k in kids]
    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill(); self.p.wait()

def wrk(port, dur):
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{dur:g}s",
                        f"http://127.0.0.1:{port}/1b.txt"], capture_output=True, text=True)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    global LAST_WRK_CPU
    LAST_WRK_CPU = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    out = p.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not m:
        raise SystemExit(f"wrk failed on port {port}: {out} {p.stderr}")
    n = int(m.group(1)); secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx|Socket errors", out)
    return n, secs, (bad.group(0) if bad else None)

def stats(port):
    import json, urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/.ioscale/stats", timeout=10) as r:
            v = json.load(r)
        return v["requests"], v["dispatch"]["wait_calls"]
    except Exception:
        return None

def measure(kind, idle, port):
    s = Srv(kind, port); holder = None
    try:
        if idle:
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(port), str(idle)],
                                      stdout=subprocess.PIPE, text=True)
            if holder.stdout.readline().strip() != "ready":
                raise SystemExit("the idle-connection holder failed")
            # connect() returns once the kernel queues a connection; wait until the server has
            # accepted them all (one accept per notice costs a whole poll() over every
            # descriptor for the poll server: O(N^2) to take 15,000 in).
            end = time.time() + 300
            while nfds(s.pids) < idle and time.time() < end:
                time.sleep(0.2)
            if nfds(s.pids) < idle:
                raise SystemExit(f"{kind} did not accept {idle} connections in 300 s")
        wrk(port, 1)  # warm-up (and the cache)
        own = kind.startswith("ioscale-")
        s0 = stats(port) if own else None
        c0 = cpu_ns(s.pids); n, secs, bad = wrk(port, DUR); c1 = cpu_ns(s.pids)
        s1 = stats(port) if own else None
    finally:
        if holder:
            holder.kill(); holder.wait()
        s.stop()
    r = dict(kind=kind, idle=idle, rps=n / secs, us=(c1 - c0) / 1e3 / max(n, 1),
             util=(c1 - c0) / 1e9 / secs, err=bad, wrk=LAST_WRK_CPU / secs,
             waits=((s1[1] - s0[1]) / max(s1[0] - s0[0], 1)) if s0 and s1 else None)
    # Neither side near a full core: something else had the CPUs (a shared machine).
    note = "  (contended: neither server nor wrk near 100%)" if r["util"] < 0.8 and r["wrk"] < 0.8 else ""
    print(f"  {kind:<16} idle {idle:>5}  {r['rps']:>9.0f} req/s  {r['us']:6.2f} µs CPU/req  "
          f"server CPU {100*r['util']:5.1f}%  wrk CPU {100*r['wrk']:5.1f}%"
          + (f"  waits/req {r['waits']:.3f}" if r['waits'] is not None else "") + f"{note}"
          + (f"  CLIENT ERRORS: {bad}" if bad else ""), flush=True)
    return r

def med(xs):
    return statistics.median(xs) if xs else float("nan")

port = PORT
print(f"# {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.uname().release}, "
      f"{os.cpu_count()} CPUs; server on CPU 0, wrk -t1 -c50 on CPU 1, {DUR:g} s per run")
if PART in ("all", "base"):
    mine = ["ioscale-" + d for d in (DISPATCH or ["epoll"])]
    ref = mine[0]
    kinds = mine + (["nginx"] if NGINX else []) + ["floor"]
    if not NGINX:
        print("  (nginx is not installed: its lines are skipped)")
    rounds = []
    for i in range(ROUNDS):
        print(f"round {i+1}/{ROUNDS}")
        row = {}
        for k in kinds:
            port += 1; row[k] = measure(k, 0, port)
        rounds.append(row)
    print("\n## base: keep-alive GET of a 1-byte file, no idle connections (median of per-round ratios)")
    def ratio(a, b, f):
        return med([r[a][f] / r[b][f] for r in rounds if a in r and b in r])
    for k in kinds:
        w = [r[k]['waits'] for r in rounds if r[k]['waits'] is not None]
        print(f"  {k:<16} {med([r[k]['rps'] for r in rounds]):>9.0f} req/s  "
              f"{med([r[k]['us'] for r in rounds]):6.2f} µs CPU/req"
              + (f"  {med(w):.3f} waits/req" if w else ""))
    for k in mine[1:]:
        print(f"  {k} / {ref} CPU per request: {ratio(k, ref, 'us'):.2f}x  "
              f"(req/s {ratio(k, ref, 'rps'):.2f}x)")
    for k in mine:
        if NGINX:
            print(f"  {k} / nginx CPU per request: {ratio(k,'nginx','us'):.2f}x  "
                  f"(req/s {ratio(k,'nginx','rps'):.2f}x)")
        print(f"  {k} / floor CPU per request: {ratio(k,'floor','us'):.2f}x  "
              f"(req/s {ratio(k,'floor','rps'):.2f}x)")
    if NGINX:
        print(f"  nginx / floor CPU per request:         {ratio('nginx','floor','us'):.2f}x")
if PART in ("all", "idle"):
    kinds = ["ioscale-" + d for d in (DISPATCH or ["epoll", "poll"])] + (["nginx"] if NGINX else [])
    rounds = []
    n = max(ROUNDS - 2, 2)
    for i in range(n):
        print(f"idle round {i+1}/{n}")
        row = {}
        for k in kinds:
            for idle in (0, IDLE):
                port += 1; row[(k, idle)] = measure(k, idle, port)
        rounds.append(row)
    print(f"\n## idle: the same with {IDLE} idle connections held open (median of per-round ratios)")
    for k in kinds:
        us0 = med([r[(k, 0)]['us'] for r in rounds]); usI = med([r[(k, IDLE)]['us'] for r in rounds])
        rps0 = med([r[(k, 0)]['rps'] for r in rounds]); rpsI = med([r[(k, IDLE)]['rps'] for r in rounds])
        growth = med([r[(k, IDLE)]['us'] / r[(k, 0)]['us'] for r in rounds])
        print(f"  {k:<16} {rps0:>9.0f} -> {rpsI:>9.0f} req/s   {us0:6.2f} -> {usI:7.2f} µs CPU/req   "
              f"CPU/req with idle / without: {growth:.2f}x")
PY
