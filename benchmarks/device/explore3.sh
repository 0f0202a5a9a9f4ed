python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site:$PWD
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 16 --out $OUT/explore3.jsonl \
  --models xlstm,sasrec \
  --set 'xlstm:{"window_stride":10,"batch_size":64,"dropout":0.3,"scheduler":"step","step_size":5,"gamma":0.5}' \
  --set 'xlstm:{"window_stride":10,"batch_size":64,"dropout":0.3,"scheduler":"cosine","epochs":30,"lr":0.002}' \
  --set 'xlstm:{"window_stride":5,"batch_size":64,"dropout":0.3}' \
  --set 'sasrec:{"window_stride":10,"batch_size":64,"dropout":0.3,"scheduler":"step","step_size":5,"gamma":0.5}' \
  --set 'sasrec:{"window_stride":10,"batch_size":64,"dropout":0.3,"scheduler":"cosine","epochs":30,"lr":0.002}' \
  > $OUT/explore3.md 2> $OUT/explore3.log
cat $OUT/explore3.md
