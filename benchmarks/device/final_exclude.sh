# The default-protocol accuracy table in BENCHMARKS.md (seen items excluded), on the 16-core CPU
# of the GPU host, project defaults, one torch thread per run.
source benchmarks/device/env.sh
timeout 585 python3 benchmarks/accuracy.py --source shared_data --protocols exclude --seeds 42,123,2023 --workers 16 \
  --models xlstm,sasrec,bert4rec,gru4rec,lstm,pop --out $OUT/final_exclude.jsonl > /dev/null 2> $OUT/final_exclude.log
summarise final_exclude
