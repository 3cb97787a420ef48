#!/usr/bin/env bash
# hot-path-callgrind.sh: user-space instructions per cached keep-alive GET of `ioscale serve`,
# counted by valgrind's callgrind (repeatable where wall time is not), for one or more builds.
#
#   benches/hot-path-callgrind.sh BIN [BIN...]      # e.g. two ioscale-serve builds to compare
#   N1=1000 N2=11000 FILE=6k benches/hot-path-callgrind.sh BIN
#
# For each binary the server (--dispatch epoll, one worker) runs under callgrind twice, serving N1
# and then N2 sequential keep-alive GETs of the same cached file on one connection from a small
# Python client; instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up and
# shutdown cancel out. FILE is 1b (a 1-byte file, default) or 6k.
# Needs: valgrind, python3.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 IOSCALE_SERVE_BINARY [MORE...]" >&2; exit 2; }
for t in valgrind python3; do
    command -v "$t" >/dev/null || { echo "hot-path-callgrind: $t is not installed" >&2; exit 2; }
done
N1="${N1:-1000}" N2="${N2:-11000}" FILE="${FILE:-1b}"
WORK="$(mktemp -d /tmp/ioscale-callgrind.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/www"
printf x > "$WORK/www/1b"
head -c 6144 /dev/zero | tr '\0' 'a' > "$WORK/www/6k"
cat > "$WORK/client.py" <<'PY'
import socket, sys
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
req = ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode()
buf = b""
for _ in range(n):
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    cl = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(rest) < cl:
        rest += s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    buf = rest[cl:]
PY
# total BIN N: the server's total instruction count for N requests.
total() {
    local out="$WORK/cg.out" err="$WORK/err" port="" vpid
    rm -f "$out" "$err"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --root "$WORK/www" --port 0 \
        --dispatch epoll 2>"$err" &
    vpid=$!
    for _ in $(seq 300); do
        port="$(grep -o 'http://127.0.0.1:[0-9]*' "$err" | cut -d: -f3 || true)"
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { kill "$vpid"; cat "$err" >&2; exit 1; }
    python3 "$WORK/client.py" "$port" "$2" "/$FILE"
    kill -TERM "$vpid"
    wait "$vpid" || true
    awk '/^totals:/ {print $2}' "$out"
}
printf '%-50s %12s %12s %10s\n' binary "Ir(N1=$N1)" "Ir(N2=$N2)" "Ir/request"
for bin in "$@"; do
    a="$(total "$bin" "$N1")"
    b="$(total "$bin" "$N2")"
    printf '%-50s %12s %12s %10.1f\n' "$bin" "$a" "$b" "$(echo "($b - $a) / ($N2 - $N1)" | bc -l)"
done
