# A moving average of the weights (ema_decay; validation, best checkpoint and test on the
# averaged weights) for SASRec and BERT4Rec: decay 0.99 / 0.995 (a horizon of ~100 / 200 steps,
# one to three epochs on ML-100K). The host's CPU cores (final seeds) and one GPU (fp32, five
# seeds), paper protocol; adopted only if validation Recall@10 beats the default's.
source benchmarks/device/env.sh
timeout 575 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 12 \
  --out $OUT/explore14_cpu.jsonl --models sasrec,bert4rec \
  --set 'sasrec:{"ema_decay":0.99}' --set 'sasrec:{"ema_decay":0.995}' \
  --set 'bert4rec:{"ema_decay":0.99}' --set 'bert4rec:{"ema_decay":0.995}' \
  > /dev/null 2> $OUT/explore14_cpu.log &
timeout 575 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 3 \
  --out $OUT/explore14.jsonl --models sasrec,bert4rec \
  --set "sasrec:{$G,\"ema_decay\":0.99}" --set "sasrec:{$G,\"ema_decay\":0.995}" \
  --set "bert4rec:{$G,\"ema_decay\":0.99}" --set "bert4rec:{$G,\"ema_decay\":0.995}" \
  > /dev/null 2> $OUT/explore14.log
wait
summarise explore14 explore14_cpu
