#!/bin/bash
# cm-overhead point: MECH CONNS RATE QUOTA PERIOD  (periodic mode: the connections carry the rate)
B=/work/main/target/release/ioscale
MECH=$1 N=$2 RATE=$3 Q=$4 P=$5; shift 5
PORT=$((20000 + RANDOM % 10000))
CG=/sys/fs/cgroup/cpu/leadtest$$; mkdir -p $CG; echo $P > $CG/cpu.cfs_period_us; echo $Q > $CG/cpu.cfs_quota_us
nice -n -20 taskset -c 0 $B serve --port $PORT --root /tmp/root --dispatch $MECH --idle-timeout 600s "$@" >/dev/null 2>&1 & SP=$!
echo $SP > $CG/cgroup.procs
for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:$PORT/f1.html && break; sleep 0.1; done
PER=$(python3 -c "print($N/$RATE)")
chrt -f 10 taskset -c 1 $B load http://127.0.0.1:$PORT/f92.html --idle $N --idle-period ${PER}s --duration ${DUR:-4}s --warmup ${WARM:-3}s --json > /tmp/ovh.$$.json 2>/tmp/ovh.$$.err &
LP=$!
sleep ${WARM:-3}; c0=$(awk '{print $1}' /proc/$SP/schedstat); t0=$(date +%s.%N)
sleep ${DUR:-4}; c1=$(awk '{print $1}' /proc/$SP/schedstat); t1=$(date +%s.%N)
wait $LP
kill $SP; wait $SP 2>/dev/null; rmdir $CG
python3 - "$MECH" "$N" "$RATE" "$c0" "$c1" "$t0" "$t1" "$Q" "$P" /tmp/ovh.$$.json <<'PY'
import json,sys
m,n,rate,c0,c1,t0,t1,q,p,f=sys.argv[1:]
j=json.load(open(f)); a=j['idle']
cpu=(int(c1)-int(c0))/1e9/(float(t1)-float(t0)); b=int(q)/int(p) if int(q)>0 else 1
print(f"{m:12s} conns {n:>5} rate {rate:>5} replies/s {a['reply_rate']['avg']:7.0f} min {a['reply_rate']['min']:5.0f} mean {a['latency_ms']['mean']:8.2f}ms p50 {a['latency_ms']['p50']:7.2f} err {a['errors']['total']:4d} est {a['connections_established']} srvCPU {100*cpu:.1f}%core = {100*cpu/b:.0f}% of budget; cpu/req {cpu*1e6/max(1,a['reply_rate']['avg']):.0f}us valid {j['valid']} gen {j['self_check']['cpu_util']*100:.0f}%")
PY
rm -f /tmp/ovh.$$.*
