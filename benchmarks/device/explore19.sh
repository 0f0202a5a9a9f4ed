# The SASRec settings that led the GPU screen (explore17: H100, ten seeds) on validation, on the
# host CPU with the final seeds, next to the default on the same host (CPU results differ from
# host to host: explore18's xLSTM check). Rule, fixed before the run: adopt the setting with the
# highest validation Recall@10 pooled over its 13 runs (explore17's ten + these three) if that beats
# the default's pooled over the same 13. Paper protocol.
source benchmarks/device/env.sh
timeout 585 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 15 \
  --out $OUT/explore19_cpu.jsonl --models sasrec --set 'sasrec:{}' --set 'sasrec:{"lr":0.002}' \
  --set 'sasrec:{"scheduler":"cosine","epochs":30,"lr":0.002}' --set 'sasrec:{"batch_size":64}' \
  --set 'sasrec:{"adam_beta2":0.98}' > /dev/null 2> $OUT/explore19_cpu.log
summarise explore19_cpu
