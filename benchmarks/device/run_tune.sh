#!/usr/bin/env bash
# `xlrec tune` on the lent GPU host, with grid specs beside it on the same Ray cluster (e.g. the
# same models at their borrowed defaults), and everything brought back as one file.
#   bash benchmarks/device/run_tune.sh NAME "xlrec tune flags" [SPEC...]
# (device tool, from the repo root, carrying .whlray and .devdata: DEVELOPERS.md "Running on a GPU").
# The tuning runs in /tmp/tunes/NAME (its mlflow.db, xlrec-defaults/, ray_results); the specs run
# through run_spec.sh with --defaults-dir none (the packaged defaults alone). Brought back in
# $OUT/NAME.tar.gz: the tuning's log and JSON line, its tuned defaults file, its report folder, the
# export of its experiment (every search trial and confirmation run) and the specs' exports and
# reports. XLREC_TUNE_TIMEOUT (seconds, default 560) bounds the tuning.
set -u
NAME=$1 FLAGS=$2
shift 2
source benchmarks/device/env.sh
source benchmarks/device/ray_head.sh
REPO=$PWD W=/tmp/tunes/$NAME R=/tmp/tune-results/$NAME
mkdir -p "$W" "$R"
nvidia-smi --query-gpu=name --format=csv,noheader; lscpu | grep -E "Model name|^CPU\(s\)"
# shellcheck disable=SC2086  # FLAGS is a list of flags
(cd "$W" && /usr/bin/time -f "$NAME: tune wall %e s" timeout "${XLREC_TUNE_TIMEOUT:-560}" \
  python3 -m xlrec tune $FLAGS --source "$REPO/.devdata" --report-dir "$R/report-$NAME" > tune.json 2> tune.log
 echo "$NAME: tune exit $?"; grep -E "tune wall" tune.log) &
if [ $# -gt 0 ]; then
  XLREC_EXPORTS=$R bash benchmarks/device/run_spec.sh "$@" -- --defaults-dir none > "$R/specs.log" 2>&1 &
fi
wait
grep -E "^\[xlrec\] (tune|sweep done)|rror" "$W/tune.log" | tail -20
EXP=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['experiment'])" "$W/tune.json" 2> /dev/null)
[ -n "$EXP" ] && (cd "$W" && python3 -m xlrec report --experiment "$EXP" --tracking-uri "sqlite:///$W/mlflow.db" \
  --export "$R/$EXP.csv" --out "$R/table-$EXP" > "$R/export.log" 2>&1)
cp -r "$W/tune.log" "$W/tune.json" "$W/xlrec-defaults" "$R/" 2> /dev/null
tail -5 "$R/specs.log" 2> /dev/null
tar czf "$OUT/$NAME.tar.gz" -C /tmp/tune-results "$NAME" && ls -la "$OUT"
