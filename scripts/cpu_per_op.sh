#!/bin/bash
# Server CPU per operation of one docdb-bench run against a server on its defaults.
# usage: scripts/cpu_per_op.sh DOCDB_BIN DOCDB_BENCH_BIN [docdb-bench args...]
# e.g.   scripts/cpu_per_op.sh target/release/docdb target/release/docdb-bench \
#            --dbs 3 --workers-per-db 10 --duration 6 --preload 200
# Prints ops/s, the server's user+system CPU (from /proc/PID/stat, preload included)
# per timed op, and machine-wide context switches per op.
set -euo pipefail
server=$1; bench=$2; shift 2
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$server" serve --data-dir "$d/data" --socket "$d/s.sock" --log-level warn > "$d/log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -S "$d/s.sock" ] && break; sleep 0.05; done
hz=$(getconf CLK_TCK)
t0=$(awk '{print $14+$15}' "/proc/$pid/stat"); c0=$(awk '/^ctxt/{print $2}' /proc/stat)
"$bench" --socket "$d/s.sock" --target docdb --dir "$d/run" -q --json "$d/r.json" "$@" > "$d/out"
t1=$(awk '{print $14+$15}' "/proc/$pid/stat"); c1=$(awk '/^ctxt/{print $2}' /proc/stat)
kill "$pid"; wait "$pid" 2>/dev/null || true
python3 - "$d/r.json" $((t1 - t0)) $((c1 - c0)) "$hz" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
ticks, cs, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ops = run["ops"]
print(f"ops/s {run['ops_per_sec']:.0f}  server CPU {ticks * 1e6 / hz / ops:.1f} us/op  "
      f"context switches {cs / ops:.1f}/op")
PY
