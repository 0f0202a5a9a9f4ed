# SASRec with its weight average (ema_decay 0.998), screened on one GPU (fp32) over ten seeds:
# settings whose best value can move once the weights are averaged (learning rate, batch size,
# Adam's beta2 = the original SASRec's 0.98, dropout, feed-forward width, heads, window stride,
# cosine schedule). Paper protocol; the CPU grid (explore18) runs the ones that lead on validation.
source benchmarks/device/env.sh
V=(--set "sasrec:{$G}" --set "sasrec:{$G,\"lr\":0.002}" --set "sasrec:{$G,\"lr\":0.002,\"ema_decay\":0.999}"
   --set "sasrec:{$G,\"batch_size\":64}" --set "sasrec:{$G,\"batch_size\":256,\"lr\":0.002}"
   --set "sasrec:{$G,\"adam_beta2\":0.98}" --set "sasrec:{$G,\"ffn_mult\":4}" --set "sasrec:{$G,\"dropout\":0.3}"
   --set "sasrec:{$G,\"num_heads\":1}" --set "sasrec:{$G,\"window_stride\":5}"
   --set "sasrec:{$G,\"scheduler\":\"cosine\",\"epochs\":30,\"lr\":0.002}")
# two waves of five seeds, so a wave cut by the time limit leaves the first whole
end=$((SECONDS + 565))
for w in a b; do
  seeds=42,123,2023,7,99; [ $w = b ] && seeds=1,2,3,4,5
  timeout $((end - SECONDS)) python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds $seeds --workers 14 \
    --models sasrec "${V[@]}" --out $OUT/explore17$w.jsonl > /dev/null 2> $OUT/explore17$w.log
done
cat $OUT/explore17a.jsonl $OUT/explore17b.jsonl > $OUT/explore17.jsonl; rm $OUT/explore17a.jsonl $OUT/explore17b.jsonl
summarise explore17
