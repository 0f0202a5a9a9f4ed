# BERT4Rec on overlapping windows (window_stride 10 / 25: a window every 10 / 25 items, masks
# drawn among its last 10 / 25 positions, earlier ones context; the original trains on sliding
# windows too). One GPU (fp32, five seeds) and the host's CPU cores (stride 25, final seeds),
# paper protocol; adopted only if validation Recall@10 beats the default's.
source benchmarks/device/env.sh
timeout 575 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 3 \
  --out $OUT/explore13_cpu.jsonl --models bert4rec --set 'bert4rec:{"window_stride":25}' \
  > /dev/null 2> $OUT/explore13_cpu.log &
timeout 575 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 10 \
  --out $OUT/explore13.jsonl --models bert4rec --set "bert4rec:{$G,\"window_stride\":10}" --set "bert4rec:{$G,\"window_stride\":25}" \
  > /dev/null 2> $OUT/explore13.log
wait
summarise explore13 explore13_cpu
