#!/usr/bin/env bash
# ioscale load --peak vs wrk -t1, same connection count, against the floor server (benches/floor.c),
# server pinned to CPU 0 and generator to CPU 1, interleaved rounds; prints per-round req/s and
# generator CPU per request, then the median ratios. Usage: benches/load-vs-wrk.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}; SECS=${2:-5}; CONNS=50
. benches/floor-server.sh
for r in $(seq "$ROUNDS"); do
  # ioscale: req/s and CPU from its own record (getrusage of the whole process).
  taskset -c 1 "$BIN" load "$URL" --peak --connections $CONNS --duration "${SECS}s" --json > "$TMP/io.json" || true
  python3 - "$TMP/io.json" <<'PY' > "$TMP/io.txt"
import json,sys; r=json.load(open(sys.argv[1])); a=r["active"]
n=a["replies"]; w=r["window_s"]; print(n/w, r["self_check"]["cpu_s"]*1e6/max(n,1))
PY
  # wrk: req/s from its summary, CPU from /usr/bin/time (user+sys of the process).
  /usr/bin/time -f "%U %S" -o "$TMP/time" taskset -c 1 wrk -t1 -c$CONNS -d"${SECS}s" "$URL" > "$TMP/wrk.txt"
  python3 - "$TMP/wrk.txt" "$TMP/time" <<'PY' > "$TMP/wrk.out"
import re,sys; t=open(sys.argv[1]).read()
rps=float(re.search(r"Requests/sec:\s*([\d.]+)",t).group(1)); total=int(re.search(r"(\d+) requests in",t).group(1))
u,s=map(float,open(sys.argv[2]).read().split()[:2]); print(rps,(u+s)*1e6/max(total,1))
PY
  echo "round $r: ioscale $(cat "$TMP/io.txt")  wrk $(cat "$TMP/wrk.out")  (req/s, generator CPU µs/req)"
  paste -d' ' "$TMP/io.txt" "$TMP/wrk.out" >> "$TMP/rounds"
done
python3 - "$TMP/rounds" <<'PY'
import sys,statistics as st
rows=[list(map(float,l.split())) for l in open(sys.argv[1])]
rps=[a/c for a,b,c,d in rows]; cpu=[b/d for a,b,c,d in rows]
print(f"median ratio ioscale/wrk: req/s {st.median(rps):.2f}x, generator CPU per request {st.median(cpu):.2f}x over {len(rows)} rounds")
PY
