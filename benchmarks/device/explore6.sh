# CPU validation grid for SASRec on the GPU host's 16 cores (paper protocol, final seeds):
# schedules, weight decay, dropout around the default, patience. Adopted only if validation
# Recall@10 beats the default's 0.1467 (explore5.md, same host and seeds).
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
lscpu | grep -E "Model name|^CPU\(s\)"
timeout 540 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 16 --out $OUT/explore6.jsonl \
  --models sasrec \
  --set 'sasrec:{"scheduler":"cosine","epochs":30}' --set 'sasrec:{"scheduler":"cosine","epochs":30,"lr":0.002}' \
  --set 'sasrec:{"weight_decay":0.0001}' --set 'sasrec:{"dropout":0.25}' --set 'sasrec:{"dropout":0.15}' \
  --set 'sasrec:{"patience":5}' --set 'sasrec:{"scheduler":"step","step_size":5,"gamma":0.5}' \
  > /dev/null 2> $OUT/explore6.log
python3 -c "import json; from accuracy import table; print(table([json.loads(l) for l in open('$OUT/explore6.jsonl')]))" | tee $OUT/explore6.md
