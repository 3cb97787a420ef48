#!/usr/bin/env bash
# ioscale load on one and on two threads vs wrk -t1 / -t2, closed loop with 50 keep-alive
# connections against the floor server (benches/floor.c, 1-byte reply) pinned to CPU 0; one-thread
# generators pinned to CPU 1, two-thread generators on CPUs 0-1 (sharing the server's core);
# then a two-thread open loop (--request-rate) checked against its target. Interleaved rounds;
# prints each round and the median ratios. Usage: benches/load-threads.sh [ROUNDS] [SECONDS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}; SECS=${2:-4}; RATE=${3:-20000}; CONNS=50
. benches/floor-server.sh
io() { # CPUS THREADS -> "req/s cpu_us_per_reply"
  taskset -c "$1" "$BIN" load "$URL" --peak -c $CONNS -t "$2" -d "${SECS}s" --json > "$TMP/io.json" || true
  python3 -c '
import json,sys; r=json.load(open(sys.argv[1])); a=r["active"]
n=a["replies"]; print(n/r["window_s"], r["self_check"]["cpu_s"]*1e6/max(n,1))' "$TMP/io.json"
}
wrk_() { # CPUS THREADS -> "req/s cpu_us_per_reply"
  /usr/bin/time -f "%U %S" -o "$TMP/time" taskset -c "$1" wrk -t"$2" -c$CONNS -d"${SECS}s" "$URL" > "$TMP/wrk.txt"
  python3 -c '
import re,sys; t=open(sys.argv[1]).read()
rps=float(re.search(r"Requests/sec:\s*([\d.]+)",t).group(1)); total=int(re.search(r"(\d+) requests in",t).group(1))
u,s=map(float,open(sys.argv[2]).read().split()[:2]); print(rps,(u+s)*1e6/max(total,1))' "$TMP/wrk.txt" "$TMP/time"
}
for r in $(seq "$ROUNDS"); do
  a=$(io 1 1); b=$(wrk_ 1 1); c=$(io 0,1 2); d=$(wrk_ 0,1 2)
  taskset -c 0,1 "$BIN" load "$URL" --request-rate "$RATE" -c $CONNS -t 2 -d "${SECS}s" --json > "$TMP/open.json" || true
  e=$(python3 -c '
import json,sys; r=json.load(open(sys.argv[1])); a=r["active"]; t=r["threads"]
merged = all(a[k] == sum(x["active"][k] for x in t) for k in ("requests","replies","bytes"))
print(r["self_check"]["achieved_rate"]/r["target_rate"], a["reply_rate"]["avg"]/r["target_rate"], int(merged), int(r["valid"]))' "$TMP/open.json")
  echo "round $r: io-t1 $a | wrk-t1 $b | io-t2 $c | wrk-t2 $d | open-t2 achieved/target, replied/target, merged=sum, valid: $e"
  echo "$a $b $c $d $e" >> "$TMP/rounds"
done
python3 - "$TMP/rounds" <<'PY'
import sys,statistics as st
rows=[list(map(float,l.split())) for l in open(sys.argv[1])]
m=lambda f: st.median([f(x) for x in rows])
print(f"median over {len(rows)} rounds:")
print(f"  one thread vs wrk -t1: req/s {m(lambda x: x[0]/x[2]):.2f}x, CPU per reply {m(lambda x: x[1]/x[3]):.2f}x")
print(f"  two threads vs wrk -t2: req/s {m(lambda x: x[4]/x[6]):.2f}x, CPU per reply {m(lambda x: x[5]/x[7]):.2f}x")
print(f"  two threads vs one: req/s {m(lambda x: x[4]/x[0]):.2f}x")
print(f"  open loop on two threads: achieved/target {m(lambda x: x[8]):.4f}, replied/target {m(lambda x: x[9]):.4f}, merged counts = sum of threads in {sum(x[10] for x in rows):.0f}/{len(rows)} rounds, VALID in {sum(x[11] for x in rows):.0f}/{len(rows)}")
PY
