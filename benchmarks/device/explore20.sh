# min_epochs: early stopping (patience 3) may end a run only from this epoch on. Single runs that
# stop early are the low ones (xLSTM seed 42 after 7 epochs on a 2-core CPU: test 0.0912; SASRec
# seed 42 after 12 on an H100: 0.0923). xLSTM 0 / 10 / 15 (its cosine schedule spans 30 epochs),
# SASRec 0 / 15 / 20, on the host CPU with the final seeds (0 again, as a check of the host).
# Rule, fixed before the run: per model, the value with the highest mean validation Recall@10 over
# the three seeds; a tie keeps the smaller value. Paper protocol.
source benchmarks/device/env.sh
timeout 590 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 18 \
  --out $OUT/explore20_cpu.jsonl --models xlstm,sasrec --set 'xlstm:{}' --set 'xlstm:{"min_epochs":10}' \
  --set 'xlstm:{"min_epochs":15}' --set 'sasrec:{}' --set 'sasrec:{"min_epochs":15}' --set 'sasrec:{"min_epochs":20}' \
  > /dev/null 2> $OUT/explore20_cpu.log
summarise explore20_cpu
