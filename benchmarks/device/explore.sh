python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
nproc; python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42 --workers 16 --out $OUT/explore.jsonl \
  --models xlstm,sasrec,bert4rec,gru4rec,lstm \
  --set 'xlstm:{"window_stride":10,"batch_size":64,"dropout":0.3}' --set 'xlstm:{"window_stride":10,"batch_size":64,"dropout":0.5}' --set 'xlstm:{"window_stride":5,"batch_size":128,"dropout":0.3}' --set 'xlstm:{"window_stride":10,"batch_size":32,"dropout":0.3,"lr":0.0005}' \
  --set 'sasrec:{"window_stride":10,"batch_size":64,"dropout":0.3}' --set 'sasrec:{"window_stride":10,"batch_size":64,"dropout":0.5}' --set 'sasrec:{"window_stride":5,"batch_size":128,"dropout":0.3}' --set 'sasrec:{"window_stride":25,"batch_size":32,"dropout":0.3}' \
  --set 'bert4rec:{"batch_size":32}' --set 'bert4rec:{"window_stride":10,"batch_size":64}' --set 'bert4rec:{"batch_size":32,"lr":0.002}' --set 'bert4rec:{"batch_size":16,"dropout":0.1}' \
  --set 'gru4rec:{"window_stride":10,"batch_size":64,"dropout":0.3}' --set 'gru4rec:{"window_stride":10,"batch_size":64,"dropout":0.5}' \
  --set 'lstm:{"window_stride":10,"batch_size":64,"dropout":0.3}' --set 'lstm:{"window_stride":10,"batch_size":64,"dropout":0.5}' > $OUT/explore.md 2> $OUT/explore.log &
GRID=$!
python3 benchmarks/gpu_smoke.py > $OUT/gpu_smoke.log 2>&1
wait $GRID
cat $OUT/explore.md; tail -5 $OUT/gpu_smoke.log
