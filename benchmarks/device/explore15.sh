# The moving average of the weights, continued: SASRec at decay 0.998 (explore14: 0.995 beat its
# default on validation, 0.99 less), BERT4Rec at 0.98 (0.99 beat its default, 0.995 did not),
# and the recurrent models at 0.99. Host CPU cores (final seeds) and one GPU (fp32, five seeds),
# paper protocol; adopted only where validation Recall@10 beats the default's.
source benchmarks/device/env.sh
timeout 580 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 15 \
  --out $OUT/explore15_cpu.jsonl --models sasrec,bert4rec,xlstm,gru4rec,lstm \
  --set 'sasrec:{"ema_decay":0.998}' --set 'bert4rec:{"ema_decay":0.98}' --set 'xlstm:{"ema_decay":0.99}' \
  --set 'gru4rec:{"ema_decay":0.99}' --set 'lstm:{"ema_decay":0.99}' \
  > /dev/null 2> $OUT/explore15_cpu.log &
timeout 580 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 1 \
  --out $OUT/explore15.jsonl --models sasrec,bert4rec \
  --set "sasrec:{$G,\"ema_decay\":0.998}" --set "bert4rec:{$G,\"ema_decay\":0.98}" \
  > /dev/null 2> $OUT/explore15.log
wait
summarise explore15 explore15_cpu
