# CPU validation grid for SASRec/BERT4Rec on the GPU host's 16 cores (paper protocol, final seeds).
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
lscpu | grep -E "Model name|^CPU\(s\)"
timeout 560 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 16 --out $OUT/explore5.jsonl \
  --models sasrec,bert4rec \
  --set 'sasrec:{"lr":0.002}' --set 'sasrec:{"lr":0.0005}' --set 'sasrec:{"dropout":0.2}' \
  --set 'sasrec:{"num_heads":1}' --set 'sasrec:{"window_stride":5}' --set 'sasrec:{"num_blocks":1}' \
  --set 'sasrec:{"batch_size":256,"lr":0.002}' --set 'sasrec:{"grad_clip":5.0}' \
  --set 'bert4rec:{"lr":0.002}' --set 'bert4rec:{"batch_size":128}' \
  > /dev/null 2> $OUT/explore5.log
python3 -c "import json; from accuracy import table; print(table([json.loads(l) for l in open('$OUT/explore5.jsonl')]))" | tee $OUT/explore5.md
