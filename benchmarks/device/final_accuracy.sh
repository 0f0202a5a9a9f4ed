# The accuracy table in BENCHMARKS.md (paper protocol), on the 16-core CPU of the GPU host.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site:$PWD
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
lscpu | grep "Model name"
python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 16 \
  --models xlstm,sasrec,bert4rec,gru4rec,lstm,pop --out $OUT/final_paper.jsonl > $OUT/final_paper.md 2> $OUT/final_paper.log
cat $OUT/final_paper.md
