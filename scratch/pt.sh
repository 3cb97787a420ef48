#!/bin/bash
# usage: pt.sh MECH RATE IDLE QUOTA_US PERIOD_US [extra serve args...] ; env MODE=sessions|requests CONNS=
B=/work/main/target/release/ioscale
MECH=$1 RATE=$2 IDLE=$3 Q=$4 P=$5; shift 5
PORT=$((20000 + RANDOM % 10000))
CG=/sys/fs/cgroup/cpu/leadtest$$; mkdir -p $CG; echo $P > $CG/cpu.cfs_period_us; echo $Q > $CG/cpu.cfs_quota_us
nice -n -20 taskset -c 0 $B serve --port $PORT --root /tmp/root --idle-timeout 600s --dispatch $MECH "$@" >/dev/null 2>&1 & SP=$!
echo $SP > $CG/cgroup.procs
for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:$PORT/f1.html && break; sleep 0.1; done
c0=$(awk '{print $1}' /proc/$SP/schedstat); t0=$(cat $CG/cpu.stat | awk '/throttled_time/{print $2}')
if [ "${MODE:-sessions}" = requests ]; then LA="--request-rate $RATE --connections ${CONNS:-200}"; else LA="--rate $RATE"; fi
chrt -f 10 taskset -c 1 $B load http://127.0.0.1:$PORT/${FILE:-f1.html} $LA --idle $IDLE --idle-period ${IPER:-30}s --duration ${DUR:-4}s --warmup ${WARM:-1.5}s --json > /tmp/pt.$$.json 2>/tmp/pt.$$.err
c1=$(awk '{print $1}' /proc/$SP/schedstat)
st=$(curl -s -m 5 127.0.0.1:$PORT/.ioscale/stats)
kill $SP; wait $SP 2>/dev/null; rmdir $CG
python3 - "$MECH" "$RATE" "$IDLE" "$c0" "$c1" "$Q" "$P" /tmp/pt.$$.json "$st" <<'PY'
import json,sys
m,rate,idle,c0,c1,q,p,f,st=sys.argv[1:]
j=json.load(open(f)); a=j['active'] if j['mode']['kind']!='none' else j['idle']
dur=j.get('duration_s', 4)
try: d=json.loads(st)['dispatch']
except Exception: d={}
cpu=(int(c1)-int(c0))/1e9
print(f"{m:14s} rate {rate:>6} idle {idle:>5} replies/s {a['reply_rate']['avg']:8.0f} min {a['reply_rate']['min']:6.0f} p50 {a['latency_ms']['p50']:8.2f}ms err {a['errors']['total']:5d} srvCPU {100*cpu/(float(j['wall_s'])):.0f}%core budget {int(q)/int(p):.2f} valid {j['valid']} lag99 {j['self_check']['schedule_lag_ms']['p99']} gen {j['self_check']['cpu_util']*100:.0f}% {j['self_check']['cpu_us_per_reply']:.0f}us/r ovf {d.get('overflows','-')} deq {d.get('dequeue_calls','-')} sig {d.get('signals','-')}")
PY
rm -f /tmp/pt.$$.json
