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
# (default epoll; uring-completion measures the completion engine).
# Needs: valgrind, python3.
set -euo pipefail
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY [BINARY...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "callgrind-hot-path: valgrind is not installed" >&2; exit 2; }
FEW="${FEW:-200}" MANY="${MANY:-5200}" PORT="${PORT:-$((18650 + $$ % 1000))}" EXTRA="${EXTRA:-}"
DISPATCH="${DISPATCH:-epoll}"
WORK="$(mktemp -d /tmp/ioscale-cg.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/www" && printf x > "$WORK/www/1b.txt"

run() { # BINARY N -> instructions
    local bin="$1" n="$2" out="$WORK/cg.out" pid
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve --port "$PORT" \
        --root "$WORK/www" --dispatch "$DISPATCH" --workers 1 $EXTRA 2>"$WORK/err" &
    pid=$!
    python3 - "$PORT" "$n" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 60
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        if time.time() > deadline: sys.exit("server did not start")
        time.sleep(0.1)
req = b"GET /1b.txt HTTP/1.1\r\nHost: t\r\n\r\n"
for _ in range(n):
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf or len(buf) < buf.index(b"\r\n\r\n") + 5:
        chunk = s.recv(4096)
        if not chunk: sys.exit("server closed")
        buf += chunk
s.close()
PY
    kill -TERM "$pid"
    # Valgrind holds its big lock across a blocking io_uring_enter (it does not know the call
    # blocks), so the completion engine's signal thread cannot run until a completion wakes the
    # worker: poke it with connections until it exits (a few accepts and closes, about as many
    # in both runs, within the noise of the subtraction). Epoll needs none.
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1]))).close()" "$PORT" 2>/dev/null || true
        sleep 0.2
    done
    wait "$pid" || true
    awk '/^summary:|^totals:/ {print $2; exit}' "$out"
}

for bin in "$@"; do
    few=$(run "$bin" "$FEW"); many=$(run "$bin" "$MANY")
    python3 -c "import sys; f,m,a,b=map(int,sys.argv[1:5]); print(f'{sys.argv[5]} ({sys.argv[6]}): {(m-f)/(b-a):.1f} instructions per request ({m} - {f} over {b-a} requests)')" \
        "$few" "$many" "$FEW" "$MANY" "$bin" "$DISPATCH"
done
