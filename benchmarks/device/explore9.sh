# The paper's prefix training for SASRec on one GPU, after the fix of the Triton loss kernel's
# strided-target read (explore8's prefix rows trained on wrong targets). fp32, paper protocol,
# five seeds; chosen on validation Recall@10 only.
source benchmarks/device/env.sh
G="$G,\"sample_mode\":\"prefix\""
P='"ffn_mult":4,"num_blocks":1,"output_bias":true,"norm_first":false'
timeout 570 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 12 \
  --out $OUT/explore9.jsonl --models sasrec \
  --set "sasrec:{$G}" --set "sasrec:{$G,$P}" --set "sasrec:{$G,\"dropout\":0.3}" \
  --set "sasrec:{$G,\"batch_size\":256,\"lr\":0.002}" \
  > /dev/null 2> $OUT/explore9.log
summarise explore9
