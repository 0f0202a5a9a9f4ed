#!/usr/bin/env bash
# Run one sweep spec on the lent GPU host and bring its runs back as a CSV export.
#   bash benchmarks/device/run_spec.sh benchmarks/grids/NAME.yaml [xlrec sweep flags...]
# (device tool, from the repo root, carrying .devdata with ml-100k/ and the wheels env.sh names).
# The sweep's MLflow store lives in /tmp/sweeps/NAME/mlflow.db on the host, so a later call on
# the same warm machine can export it again if this one ran out of time.
set -u
source benchmarks/device/env.sh
SPEC=$1; shift
NAME=$(basename "$SPEC" .yaml)
REPO=$PWD W=/tmp/sweeps/$NAME
mkdir -p "$W"
nvidia-smi --query-gpu=name --format=csv,noheader; lscpu | grep -E "Model name|^CPU\(s\)"
python3 -c "import torch, ray, mlflow, optuna; print('torch', torch.__version__, 'ray', ray.__version__, 'mlflow', mlflow.__version__)"
(cd "$W" && /usr/bin/time -f "sweep wall %e s" timeout "${XLREC_SWEEP_TIMEOUT:-540}" \
  python3 -m xlrec sweep --spec "$REPO/$SPEC" --source "$REPO/.devdata" "$@" > "$OUT/$NAME.json" 2> "$OUT/$NAME.log")
grep -E "^\[xlrec\]|sweep wall|rror" "$OUT/$NAME.log" | tail -30
EXP=$(python3 -c "import sys; from xlrec.sweeps.spec_file import load_spec; print(load_spec(sys.argv[1]).experiment)" "$SPEC")
(cd "$W" && python3 -m xlrec report --experiment "$EXP" --tracking-uri "sqlite:///$W/mlflow.db" --export "$OUT/$EXP.csv" --out '')
