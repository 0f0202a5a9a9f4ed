# The accuracy table in BENCHMARKS.md (paper protocol): every model at its defaults, seeds 42, 123,
# 2023, one torch thread per run, all at once on the 16-core CPU of the GPU host.
source benchmarks/device/env.sh
python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 16 \
  --models xlstm,sasrec,bert4rec,gru4rec,lstm,pop --out $OUT/final_paper.jsonl > /dev/null 2> $OUT/final_paper.log
summarise final_paper
