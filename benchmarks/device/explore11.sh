# BERT4Rec's last-item-only training windows (Sun et al. 2019, section 3.6; `mask_last_share`):
# one GPU (fp32, five seeds) and the host's CPU cores (the final seeds), paper protocol;
# adopted only if validation Recall@10 beats the default's.
source benchmarks/device/env.sh
timeout 570 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 6 \
  --out $OUT/explore11_cpu.jsonl --models bert4rec --set 'bert4rec:{"mask_last_share":0.17}' \
  --set 'bert4rec:{"mask_last_share":0.5}' > /dev/null 2> $OUT/explore11_cpu.log &
timeout 570 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 8 \
  --out $OUT/explore11.jsonl --models bert4rec \
  --set "bert4rec:{$G,\"mask_last_share\":0.17}" --set "bert4rec:{$G,\"mask_last_share\":0.5}" \
  > /dev/null 2> $OUT/explore11.log
wait
summarise explore11 explore11_cpu
