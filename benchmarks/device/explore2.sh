python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123 --workers 16 --out $OUT/explore2.jsonl \
  --models xlstm,sasrec,bert4rec \
  --set 'xlstm:{"window_stride":10,"batch_size":64,"dropout":0.3}' --set 'xlstm:{"window_stride":10,"batch_size":128,"dropout":0.3}' \
  --set 'sasrec:{"window_stride":10,"batch_size":64,"dropout":0.3}' --set 'sasrec:{"window_stride":10,"batch_size":128,"dropout":0.3}' \
  --set 'bert4rec:{"batch_size":16,"dropout":0.1}' --set 'bert4rec:{"batch_size":32,"dropout":0.1}' --set 'bert4rec:{"batch_size":64,"dropout":0.1}' --set 'bert4rec:{"batch_size":32,"dropout":0.2}' \
  > $OUT/explore2.md 2> $OUT/explore2.log
cat $OUT/explore2.md
