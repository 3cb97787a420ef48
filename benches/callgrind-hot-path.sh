#!/usr/bin/env bash
# callgrind-hot-path.sh: user-space instructions per cached keep-alive GET of `ioscale serve`,
# counted by valgrind's callgrind (repeatable where wall time is not).
#
#   benches/callgrind-hot-path.sh BINARY [BINARY...]     # e.g. two builds, before and after
#
# For each binary: `BINARY serve --dispatch $DISPATCH --workers 1` runs under callgrind twice, once
# with FEW and once with MANY keep-alive GETs of a 1-byte file on one connection (each request
# sent after the previous response is read whole); the instructions of the run with FEW are
# subtracted from those with MANY (start-up, the first request that fills the cache, shutdown
# cancel out), divided by MANY - FEW. EXTRA="--access-log /dev/null" adds server options.
# Environment: FEW (default 200), MANY (default 5200), PORT (default 18650 + PID mod 1000), EXTRA, DISPATCH
# (default epoll; uring-completion measures the completion engine), SUBCOMMAND (default serve;
# empty for the stand-alone ioscale-serve). After its GETs the client sends SIGTERM and goes on
# with GETs until the server closes; those are counted too (see the note in the client).
# Needs: valgrind, python3.
set -euo pipefail
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY [BINARY...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "callgrind-hot-path: valgrind is not installed" >&2; exit 2; }
FEW="${FEW:-200}" MANY="${MANY:-5200}" PORT="${PORT:-$((18650 + $$ % 1000))}" EXTRA="${EXTRA:-}"
DISPATCH="${DISPATCH:-epoll}" SUBCOMMAND="${SUBCOMMAND-serve}"
WORK="$(mktemp -d /tmp/ioscale-cg.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/www" && printf x > "$WORK/www/1b.txt"

run() { # BINARY N -> "instructions requests"
    local bin="$1" n="$2" out="$WORK/cg.out" pid answered
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" $SUBCOMMAND --port "$PORT" \
        --root "$WORK/www" --dispatch "$DISPATCH" --workers 1 $EXTRA 2>"$WORK/err" &
    pid=$!
    answered=$(python3 - "$PORT" "$n" "$pid" <<'PY'
import os, signal, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + 60
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        if time.time() > deadline: sys.exit("server did not start")
        time.sleep(0.1)
req = b"GET /1b.txt HTTP/1.1\r\nHost: t\r\n\r\n"
def get():
    try:
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf) < buf.index(b"\r\n\r\n") + 5:
            chunk = s.recv(4096)
            if not chunk: return None
            buf += chunk
        return buf
    except OSError:
        return None
for _ in range(n):
    if get() is None: sys.exit("server closed")
# SIGTERM, then GETs until the server closes: valgrind runs one thread at a time, and a worker
# waiting in io_uring_enter keeps the signal thread from running until its time slice ends, so
# the completion engine sees the stop only after some more requests. They are counted.
os.kill(pid, signal.SIGTERM)
extra = 0
while extra < 100000:
    r = get()
    if r is None: break
    extra += 1
    if b"Connection: close" in r: break
s.close()
print(n + extra)
PY
)
    wait "$pid" || true
    echo "$(awk '/^summary:|^totals:/ {print $2; exit}' "$out") $answered"
}

for bin in "$@"; do
    few=$(run "$bin" "$FEW"); many=$(run "$bin" "$MANY")
    # shellcheck disable=SC2086
    python3 -c "import sys; f,a,m,b=map(int,sys.argv[1:5]); print(f'{sys.argv[5]} ({sys.argv[6]}): {(m-f)/(b-a):.1f} instructions per request ({m} - {f} over {b-a} requests)')" \
        $few $many "$bin" "$DISPATCH"
done
