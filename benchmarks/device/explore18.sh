# Ran on a trainer whose weight average was bias-corrected (each step weighted by
# (1 - d) / (1 - d**n), Adam's correction; not adopted, so not on main: BENCHMARKS.md).
# The weight average made bias-corrected (the random initialisation no longer part of it: at
# decay 0.998 it was still 20% of the average at SASRec's epoch 10). SASRec at 0.998 (its
# default) and 0.999, BERT4Rec / GRU4Rec / LSTM at their defaults, on the host CPU (final seeds),
# and SASRec on one GPU (fp32, the ten seeds of explore17); xLSTM seed 42 (no average) checks that
# this host repeats final_paper.jsonl. Paper protocol.
source benchmarks/device/env.sh
timeout 585 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 15 \
  --out $OUT/explore18_cpu.jsonl --models sasrec,bert4rec,gru4rec,lstm \
  --set 'sasrec:{}' --set 'sasrec:{"ema_decay":0.999}' > /dev/null 2> $OUT/explore18_cpu.log &
timeout 585 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42 --workers 1 \
  --out $OUT/explore18_check.jsonl --models xlstm > /dev/null 2> $OUT/explore18_check.log &
timeout 585 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99,1,2,3,4,5 \
  --workers 1 --out $OUT/explore18.jsonl --models sasrec --set "sasrec:{$G}" --set "sasrec:{$G,\"ema_decay\":0.999}" \
  > /dev/null 2> $OUT/explore18.log
wait
summarise explore18 explore18_cpu explore18_check
