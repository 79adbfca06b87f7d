#!/bin/bash
# Server CPU per operation of one docdb-bench run against a server on its defaults.
# usage: scripts/cpu_per_op.sh DOCDB_BIN DOCDB_BENCH_BIN [docdb-bench args...]
# e.g.   scripts/cpu_per_op.sh target/release/docdb target/release/docdb-bench \
#            --dbs 3 --workers-per-db 10 --duration 6 --preload 200
# Prints two figures:
# - "whole run": ops/s, the server's user+system CPU (from /proc/PID/stat, preload and
#   opening included) per timed op, and machine-wide context switches per op;
# - "window": the same over WINDOW seconds (default 3) of the timed phase only, per
#   operation the server counted (its docdb_operations_total, read from `--http`), and
#   per thread group (docdb-io, docdb-worker, ...): CPU, voluntary switches (the thread
#   slept) and involuntary ones (it was preempted) per op. Threads that exit inside the
#   window are missing from the groups but not from the total.
# The window starts once the server has counted --dbs x --preload (the bench's default
# 10,000) + 3,000 operations; keep --duration at least WINDOW + 3.
set -euo pipefail
server=$1; bench=$2; shift 2
win=${WINDOW:-3}
dbs=3; preload=10000
args=("$@")
for ((i = 0; i < ${#args[@]} - 1; i++)); do
    case ${args[$i]} in
        --dbs) dbs=${args[$((i + 1))]} ;;
        --preload) preload=${args[$((i + 1))]} ;;
    esac
done
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
port=$((20000 + RANDOM % 20000))
"$server" serve --data-dir "$d/data" --socket "$d/s.sock" --http "127.0.0.1:$port" \
    --log-level warn > "$d/log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -S "$d/s.sock" ] && break; sleep 0.05; done
hz=$(getconf CLK_TCK)
ops() { curl -s "127.0.0.1:$port/metrics" | awk '/^docdb_operations_total/ {s += $NF} END {printf "%d\n", s}'; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ctxt() { awk '/^ctxt/ {print $2}' /proc/stat; }
threads() {
    python3 - "$pid" <<'PY'
import os, sys
pid = sys.argv[1]
for t in os.listdir(f"/proc/{pid}/task"):
    try:
        comm = open(f"/proc/{pid}/task/{t}/comm").read().strip().replace(" ", "_")
        st = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        sw = {}
        for line in open(f"/proc/{pid}/task/{t}/status"):
            k, _, v = line.partition(":")
            sw[k] = v.strip()
        print(t, comm, int(st[11]) + int(st[12]), sw["voluntary_ctxt_switches"],
              sw["nonvoluntary_ctxt_switches"])
    except (OSError, KeyError, IndexError, ValueError):
        pass  # the thread exited meanwhile
PY
}
t0=$(ticks); c0=$(ctxt)
"$bench" --socket "$d/s.sock" --target docdb --dir "$d/run" -q --json "$d/r.json" "$@" > "$d/out" &
bp=$!
while kill -0 "$bp" 2>/dev/null && [ "$(ops)" -lt $((dbs * preload + 3000)) ]; do sleep 0.2; done
o0=$(ops); w0=$(ticks); x0=$(ctxt); threads > "$d/a"
sleep "$win"
o1=$(ops); w1=$(ticks); x1=$(ctxt); threads > "$d/b"
wait "$bp"
t1=$(ticks); c1=$(ctxt)
kill "$pid"; wait "$pid" 2>/dev/null || true
python3 - "$d" $((t1 - t0)) $((c1 - c0)) "$hz" $((o1 - o0)) $((w1 - w0)) $((x1 - x0)) <<'PY'
import json, sys
d = sys.argv[1]
ticks, cs, hz, n, wticks, wcs = (int(a) for a in sys.argv[2:])
run = json.load(open(f"{d}/r.json"))["runs"][0]
ops = run["ops"]
print(f"whole run: ops/s {run['ops_per_sec']:.0f}  server CPU {ticks * 1e6 / hz / ops:.1f} us/op  "
      f"context switches {cs / ops:.1f}/op")
if n <= 0:
    print("window: no operations counted (the run ended before the window)")
    sys.exit()
print(f"window: {n} ops  server CPU {wticks * 1e6 / hz / n:.1f} us/op  "
      f"context switches {wcs / n:.2f}/op (machine-wide)")
def load(p):
    out = {}
    for line in open(p):
        tid, comm, cpu, vol, nv = line.split()
        out[tid] = (comm, int(cpu), int(vol), int(nv))
    return out
a, b = load(f"{d}/a"), load(f"{d}/b")
groups = {}
for tid, (comm, cpu, vol, nv) in b.items():
    c0, v0, n0 = a.get(tid, (comm, 0, 0, 0))[1:]
    g = groups.setdefault(comm, [0, 0, 0, 0])
    g[0] += cpu - c0; g[1] += vol - v0; g[2] += nv - n0; g[3] += 1
for comm, (cpu, vol, nv, k) in sorted(groups.items()):
    if cpu or vol or nv:
        print(f"  {comm:16} x{k:<4} CPU {cpu * 1e6 / hz / n:6.1f} us/op  "
              f"voluntary {vol / n:5.2f}/op  involuntary {nv / n:5.2f}/op")
PY
