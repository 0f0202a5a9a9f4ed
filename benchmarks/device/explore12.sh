# BERT4Rec output layouts: the original's prediction head (dense + activation) with a per-item
# bias, with and without tied input/output embeddings, and the cosine schedule that xLSTM uses.
# One GPU (fp32, five seeds) and the host's CPU cores (the final seeds), paper protocol;
# adopted only if validation Recall@10 beats the default's.
source benchmarks/device/env.sh
V1='"output_head":true,"output_bias":true,"tied_output":true'
V2='"output_head":true,"output_bias":true'
V3='"scheduler":"cosine","epochs":30,"lr":0.002'
timeout 570 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 9 \
  --out $OUT/explore12_cpu.jsonl --models bert4rec --set "bert4rec:{$V1}" --set "bert4rec:{$V2}" --set "bert4rec:{$V3}" \
  > /dev/null 2> $OUT/explore12_cpu.log &
timeout 570 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 6 \
  --out $OUT/explore12.jsonl --models bert4rec --set "bert4rec:{$G,$V1}" --set "bert4rec:{$G,$V2}" --set "bert4rec:{$G,$V3}" \
  > /dev/null 2> $OUT/explore12.log
wait
summarise explore12 explore12_cpu
