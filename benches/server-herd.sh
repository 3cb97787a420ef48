#!/usr/bin/env bash
# The thundering herd inside `ioscale serve` (issue 8, part 2): N workers sharing one listener
# (plain epoll, EPOLLEXCLUSIVE, EPOLLEXCLUSIVE re-registered after each accepting wakeup) or one
# SO_REUSEPORT socket each, under an open-loop connection-per-request load from `ioscale load`.
# Prints, per setup: connections accepted, workers' voluntary switches (sleeps) per connection,
# listener notices and EAGAIN accepts per connection, the busiest worker's share, and the server's
# CPU per request (all threads, /proc/PID/task/*/schedstat).
# Usage: benches/server-herd.sh [WORKERS] [RATE] [SECONDS]    (needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-4}; RATE=${2:-2000}; SECS=${3:-5}
BIN=target/release/ioscale
ROOT=$(mktemp -d); printf x > "$ROOT/f1"
trap 'rm -rf "$ROOT"' EXIT
cpu_ns() { local t=0; for f in /proc/$1/task/*/schedstat; do read -r a _ < "$f"; t=$((t + a)); done; echo $t; }
printf '%-18s %8s %10s %10s %10s %8s %10s\n' setup accepted woken/conn notices/c eagain/c busiest cpu_us/req
for setup in shared exclusive exclusive-rotate reuseport; do
    case $setup in
        shared) extra=(--listener shared) ;;
        exclusive) extra=(--listener shared --exclusive) ;;
        exclusive-rotate) extra=(--listener shared --exclusive-rotate) ;;
        reuseport) extra=(--listener reuseport) ;;
    esac
    taskset -c 0 "$BIN" serve --port 0 --root "$ROOT" --workers "$W" "${extra[@]}" 2> "$ROOT/err" &
    pid=$!
    for _ in $(seq 50); do grep -q http "$ROOT/err" 2>/dev/null && break; sleep 0.1; done
    port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$ROOT/err" | head -1)
    url=http://127.0.0.1:$port
    sleep 0.3
    a=$(curl -s "$url/.ioscale/stats"); c0=$(cpu_ns $pid)
    taskset -c 1 "$BIN" load --rate "$RATE" --calls 1 --duration "${SECS}s" "$url/f1" > /dev/null
    c1=$(cpu_ns $pid); b=$(curl -s "$url/.ioscale/stats")
    kill -TERM $pid; wait $pid || true
    python3 - "$setup" "$a" "$b" "$c0" "$c1" <<'PY'
import json, sys
setup, a, b, c0, c1 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def d(k): return [y[k] - x[k] for x, y in zip(a["per_worker"], b["per_worker"])]
acc = d("accepted"); n = sum(acc) or 1
req = b["requests"] - a["requests"] or 1
print(f'{setup:<18} {sum(acc):>8} {sum(d("voluntary_switches"))/n:>10.2f} {sum(d("listener_notices"))/n:>10.2f} '
      f'{sum(d("accept_eagain"))/n:>10.2f} {max(acc)/n:>8.2f} {(c1-c0)/1e3/req:>10.1f}')
PY
done
