#!/usr/bin/env bash
# Tune defaults on the GPU host: run search specs at once, turn their winners into confirmation
# grids over base grid specs (benchmarks/adopt.py), run those at once, and write each grid's full
# report. Everything lands in /tmp/tune on the host (exports/, specs/, reports/, logs);
# `tar` it into $OUT in the same or a later call on the warm machine.
#   bash benchmarks/device/tune.sh "SEARCH_SPEC..." "BASE_GRID=EXPERIMENT..." [xlrec sweep flags for the grids]
# e.g. "configs/sweeps/ml1m-search-xlstm.yaml configs/sweeps/ml1m-search-sasrec.yaml" "configs/sweeps/ml1m-defaults.yaml=ml1m-tuned"
# (docs/results/defaults-search.md: the runs that chose the shipped defaults).
# XLREC_SEARCH_FLAGS: xlrec sweep flags for the searches (e.g. "--trials 2 --epochs 2" for a dry run).
# XLREC_SEARCH_TIMEOUT / XLREC_GRID_TIMEOUT (seconds) bound each phase's sweeps.
set -u
SEARCHES=$1 GRIDS=$2
shift 2
T=/tmp/tune
mkdir -p $T/exports $T/specs $T/reports
export XLREC_EXPORTS=$T/exports
XLREC_SWEEP_TIMEOUT=${XLREC_SEARCH_TIMEOUT:-600} bash benchmarks/device/run_spec.sh $SEARCHES -- ${XLREC_SEARCH_FLAGS:-} > $T/searches.log 2>&1
source benchmarks/device/env.sh
PAIRS=()
for S in $SEARCHES; do
  PAIRS+=(--search "$S=$T/exports/$(python3 -c "import sys; from xlrec.sweeps.spec_file import load_spec; print(load_spec(sys.argv[1]).experiment)" "$S").csv")
done
SPECS=()
for G in $GRIDS; do
  BASE=${G%%=*} EXP=${G#*=}
  python3 benchmarks/adopt.py --base "$BASE" --experiment "$EXP" "${PAIRS[@]}" --out "$T/specs/$EXP.yaml" >> $T/adopt.log 2>&1
  SPECS+=("$T/specs/$EXP.yaml")
done
XLREC_SWEEP_TIMEOUT=${XLREC_GRID_TIMEOUT:-600} bash benchmarks/device/run_spec.sh "${SPECS[@]}" -- "$@" > $T/grids.log 2>&1
for G in $GRIDS; do
  EXP=${G#*=}
  python3 -m xlrec report --experiment "$EXP" --tracking-uri "sqlite:////tmp/sweeps/$EXP/mlflow.db" \
    --out "$T/reports/$EXP" --no-log >> $T/reports.log 2>&1
done
touch $T/done
