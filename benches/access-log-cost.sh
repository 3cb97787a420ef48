#!/usr/bin/env bash
# access-log-cost.sh: the server's CPU per request with `--access-log FILE` against without it,
# in one run, measured as benches/serve-vs-nginx.sh does: the server pinned to CPU 0, `wrk -t1
# -c50` pinned to CPU 1, keep-alive GETs of a 1-byte file, the server's CPU from
# /proc/PID/task/*/schedstat, off and on interleaved in each round, the ratio per round, then the
# median.
#
#   benches/access-log-cost.sh                # 5 rounds of 3 s each way
#   ROUNDS=3 DURATION=2 benches/access-log-cost.sh
#
# Environment: ROUNDS (5), DURATION seconds (3), IOSCALE (the binary; default: built with cargo
# --release), PORT (18700), LOG (the log file; default in a temporary directory on /tmp).
# Needs: wrk, taskset, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in wrk taskset python3; do
    command -v "$t" >/dev/null || { echo "access-log-cost: $t is not installed" >&2; exit 2; }
done
WORK="$(mktemp -d /tmp/ioscale-alog.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
if [ -z "${IOSCALE:-}" ]; then
    cargo build --release --quiet --bin ioscale
    IOSCALE="${CARGO_TARGET_DIR:-target}/release/ioscale"
fi
export IOSCALE WORK
exec python3 - <<'PY'
import os, re, statistics, subprocess, time, socket
IOSCALE = os.environ["IOSCALE"]; WORK = os.environ["WORK"]
ROUNDS = int(os.environ.get("ROUNDS", "5")); DUR = int(os.environ.get("DURATION", "3"))
PORT = int(os.environ.get("PORT", "18700")); LOG = os.environ.get("LOG", f"{WORK}/access.log")
os.makedirs(f"{WORK}/www"); open(f"{WORK}/www/1b.txt", "w").write("x")

def cpu_ns(pid):
    t = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try: t += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except OSError: pass
    return t

def one(logged):
    args = ["taskset", "-c", "0", IOSCALE, "serve", "--port", str(PORT), "--root", f"{WORK}/www",
            "--dispatch", "epoll", "--workers", "1"] + (["--access-log", LOG] if logged else [])
    srv = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try: socket.create_connection(("127.0.0.1", PORT)).close(); break
        except OSError: time.sleep(0.05)
    url = f"http://127.0.0.1:{PORT}/1b.txt"
    subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", "-d1", url], capture_output=True)
    c0 = cpu_ns(srv.pid)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{DUR}", url],
                         capture_output=True, text=True).stdout
    c1 = cpu_ns(srv.pid)
    srv.terminate(); srv.wait()
    n = int(re.search(r"(\d+) requests in", out).group(1))
    return (c1 - c0) / n, n / DUR

ratios = []
for r in range(ROUNDS):
    (off, roff), (on, ron) = one(False), one(True)
    ratios.append(on / off)
    print(f"round {r+1}: off {off:.0f} ns/request ({roff:.0f} req/s), on {on:.0f} ns/request "
          f"({ron:.0f} req/s), on/off {on/off:.3f}", flush=True)
lines = sum(1 for _ in open(LOG)) if os.path.exists(LOG) else 0
print(f"median CPU per request, log on / off: {statistics.median(ratios):.3f} "
      f"({ROUNDS} rounds of {DUR} s; {lines} lines logged)")
PY
