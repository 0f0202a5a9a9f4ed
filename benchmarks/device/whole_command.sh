#!/usr/bin/env bash
# Time `xlrec train` as a user runs it, the whole command (interpreter start, imports, data from the
# cache, CUDA init, compilation, training, test): one JSON line per run in $OUT/whole_command.jsonl,
# the run's own summary (epochs, test metrics, energy) beside its wall time.
#   bash benchmarks/device/whole_command.sh LABEL -- xlrec train flags...
# (device tool, after `source benchmarks/device/env.sh`). TORCHINDUCTOR_CACHE_DIR decides whether a
# compiled run finds its kernels cached: give a fresh directory for a first run on a fresh host.
set -u
LABEL=$1; shift; [ "${1:-}" = "--" ] && shift
OUTFILE=${OUT:-/tmp}/whole_command.jsonl
START=$(date +%s.%N)
python3 -m xlrec train "$@" > /tmp/wc.out 2> /tmp/wc.err
RC=$?
END=$(date +%s.%N)
WALL=$(python3 -c "print(round($END - $START, 2))")
SUMMARY=$(tail -n 1 /tmp/wc.out)
[ $RC -eq 0 ] || { SUMMARY='{}'; tail -n 5 /tmp/wc.err; }
python3 - "$LABEL" "$WALL" "$RC" "$SUMMARY" "$*" >> "$OUTFILE" <<'PY'
import json, sys
label, wall, rc, summary, args = sys.argv[1:]
s = json.loads(summary)
row = {"label": label, "wall_s": float(wall), "rc": int(rc), "args": args}
row.update({k: s.get(k) for k in ("epochs_run", "best_epoch", "avg_epoch_time_s", "energy_j")})
row["test_recall_at_10"] = (s.get("test") or {}).get("recall@10")
print(json.dumps(row))
PY
tail -n 1 "$OUTFILE"
