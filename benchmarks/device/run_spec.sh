#!/usr/bin/env bash
# Run sweep specs on the lent GPU host, all at once on one Ray cluster of the host's GPUs and
# CPUs, and bring each one's runs back as a CSV export.
#   bash benchmarks/device/run_spec.sh configs/sweeps/NAME.yaml [SPEC...] [-- xlrec sweep flags for every spec...]
# (device tool, from the repo root, carrying .devdata and the packages env.sh names). Each spec's
# resources (gpus_per_trial, max_concurrent) say how it shares the host with the others.
# Each sweep keeps its MLflow store in /tmp/sweeps/NAME/mlflow.db on the host, so a later call on
# the same warm machine can export or report it again. Exports go to $XLREC_EXPORTS (default $OUT);
# a result worth keeping is committed as docs/results/exports/NAME.csv, beside the page that reads it;
# the report book (Table 4, the paired tests, the figures) goes to report-EXPERIMENT/ beside it.
# XLREC_SWEEP_TIMEOUT (seconds, default 540) bounds each sweep: a sweep stopped there keeps the
# runs of the trials it finished. nvidia-smi samples the GPUs' utilisation every second while the
# sweeps run (gpu-util.csv beside the exports); the mean per GPU is printed at the end.
set -u
source benchmarks/device/env.sh
SPECS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do SPECS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
REPO=$PWD EXPORTS=${XLREC_EXPORTS:-$OUT}
mkdir -p "$EXPORTS"
nvidia-smi --query-gpu=name --format=csv,noheader; lscpu | grep -E "Model name|^CPU\(s\)"
python3 -c "import torch, ray, mlflow, optuna; print('torch', torch.__version__, 'ray', ray.__version__, 'mlflow', mlflow.__version__)"
source benchmarks/device/ray_head.sh
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
  > "$EXPORTS/gpu-util.csv" 2> /dev/null &
SAMPLER=$!
for SPEC in "${SPECS[@]}"; do
  NAME=$(basename "$SPEC" .yaml) W=/tmp/sweeps/$(basename "$SPEC" .yaml) FILE=$(realpath "$SPEC")
  mkdir -p "$W"
  (cd "$W" && /usr/bin/time -f "$NAME: sweep wall %e s" timeout "${XLREC_SWEEP_TIMEOUT:-540}" \
    python3 -m xlrec sweep --spec "$FILE" --source "$REPO/.devdata" "$@" > sweep.json 2> sweep.log
   echo "$NAME: exit $?"; grep -E "sweep wall" sweep.log) &
done
wait $(jobs -p | grep -vx "$SAMPLER")
kill "$SAMPLER" 2> /dev/null
awk -F', ' '{n[$1]++; u[$1]+=$2; if ($3>m[$1]) m[$1]=$3} END {for (g in n) printf "GPU %s: mean utilisation %.1f%% over %d s, peak memory %d MiB\n", g, u[g]/n[g], n[g], m[g]}' \
  "$EXPORTS/gpu-util.csv"
for SPEC in "${SPECS[@]}"; do
  W=/tmp/sweeps/$(basename "$SPEC" .yaml)
  grep -E "^\[xlrec\]|rror" "$W/sweep.log" | tail -5
  EXP=$(python3 -c "import sys; from xlrec.sweeps.spec_file import load_spec; print(load_spec(sys.argv[1]).experiment)" "$SPEC")
  # the export (with --export the command writes one table), then the full report book
  (cd "$W" && python3 -m xlrec report --experiment "$EXP" --tracking-uri "sqlite:///$W/mlflow.db" \
    --export "$EXPORTS/$EXP.csv" --out "" > "$EXPORTS/report-$EXP.log" 2>&1 \
    && python3 -m xlrec report --experiment "$EXP" --tracking-uri "sqlite:///$W/mlflow.db" --no-log \
    --out "$EXPORTS/report-$EXP" >> "$EXPORTS/report-$EXP.log" 2>&1) \
    && echo "exported $EXPORTS/$EXP.csv and $EXPORTS/report-$EXP/" || tail -3 "$EXPORTS/report-$EXP.log"
done
