# Sourced by the generator benchmarks (load-vs-wrk.sh, load-threads.sh): builds the ioscale
# binary, starts the C floor server (benches/floor.c, 1-byte reply) pinned to CPU 0 on a free
# port, and sets BIN, TMP, FLOOR (its PID, stopped on exit) and URL.
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --release -q -p ioscale
BIN="${CARGO_TARGET_DIR:-target}/release/ioscale"
TMP=$(mktemp -d); trap 'kill $FLOOR 2>/dev/null || true; rm -rf "$TMP"' EXIT
gcc -O2 -o "$TMP/floor" benches/floor.c
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 "$TMP/floor" "$PORT" & FLOOR=$!
sleep 0.3
URL="http://127.0.0.1:$PORT/"
