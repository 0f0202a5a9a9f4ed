# Sourced by the accuracy grids on a GPU host: the xlstm wheels carried in .whl, bytecode on
# (see DEVELOPERS.md), the machine's name, and ML-100K prepared once before parallel runs.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
nvidia-smi --query-gpu=name --format=csv,noheader; lscpu | grep -E "Model name|^CPU\(s\)"
python3 -c "import xlrec.data_prep as d, xlrec.config as c; d.prepare('ml-100k', c.PrepConfig(), 'shared_data')" >/dev/null
# one GPU run in fp32 (amp off), so its numbers track the CPU's
G='"device":"cuda","amp":false'
# summarise() FILE...: the mean +- std table of each grid's JSON lines
summarise() { for f in "$@"; do
  python3 -c "import json; from accuracy import table; print(table([json.loads(l) for l in open('$OUT/$f.jsonl')]))" | tee $OUT/$f.md
done; }
