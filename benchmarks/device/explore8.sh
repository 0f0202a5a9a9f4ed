# Validation grid on one GPU (fp32: amp off, so the numbers track the CPU's) for the SASRec and
# BERT4Rec block layouts: feed-forward width, output bias, post-LN, the paper's one-block
# layout (its Table 4 parameter counts), and the paper's prefix training. Five seeds, paper
# protocol; chosen on validation Recall@10 only, then confirmed on CPU with the final seeds.
source benchmarks/device/env.sh
P='"ffn_mult":4,"num_blocks":1,"output_bias":true,"norm_first":false'
timeout 560 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 10 \
  --out $OUT/explore8.jsonl --models sasrec,bert4rec \
  --set "sasrec:{$G}" --set "sasrec:{$G,\"ffn_mult\":4}" --set "sasrec:{$G,\"ffn_mult\":4,\"num_blocks\":1}" \
  --set "sasrec:{$G,\"output_bias\":true}" --set "sasrec:{$G,\"norm_first\":false}" --set "sasrec:{$G,$P}" \
  --set "sasrec:{$G,$P,\"dropout\":0.1}" --set "sasrec:{$G,$P,\"dropout\":0.3}" \
  --set "sasrec:{$G,\"ffn_mult\":4,\"output_bias\":true}" --set "sasrec:{$G,\"ffn_mult\":4,\"dropout\":0.3}" \
  --set "sasrec:{$G,\"sample_mode\":\"prefix\"}" --set "sasrec:{$G,$P,\"sample_mode\":\"prefix\"}" \
  --set "bert4rec:{$G}" --set "bert4rec:{$G,\"output_bias\":true}" --set "bert4rec:{$G,\"norm_first\":false}" \
  --set "bert4rec:{$G,$P}" \
  > /dev/null 2> $OUT/explore8.log
summarise explore8
