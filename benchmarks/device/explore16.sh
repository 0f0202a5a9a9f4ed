# The moving average of the weights, last grid: SASRec at 0.999 (explore15: 0.998 beat 0.995 on
# the GPU's validation and tied on the CPU's), GRU4Rec at 0.998 (0.99 beat its default on the
# CPU; GPU rows for its default and 0.99 too), LSTM and xLSTM at 0.998. Host CPU cores (final
# seeds) and one GPU (fp32, five seeds), paper protocol; adopted only where validation Recall@10
# beats the default's.
source benchmarks/device/env.sh
timeout 585 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 12 \
  --out $OUT/explore16_cpu.jsonl --models sasrec,gru4rec,lstm,xlstm \
  --set 'sasrec:{"ema_decay":0.999}' --set 'gru4rec:{"ema_decay":0.998}' --set 'lstm:{"ema_decay":0.998}' \
  --set 'xlstm:{"ema_decay":0.998}' > /dev/null 2> $OUT/explore16_cpu.log &
timeout 585 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 3 \
  --out $OUT/explore16.jsonl --models sasrec,gru4rec \
  --set "sasrec:{$G,\"ema_decay\":0.999}" --set "gru4rec:{$G}" --set "gru4rec:{$G,\"ema_decay\":0.99}" \
  --set "gru4rec:{$G,\"ema_decay\":0.998}" > /dev/null 2> $OUT/explore16.log
wait
summarise explore16 explore16_cpu
