# The paper's SASRec and BERT4Rec layouts (configs/paper/*.yaml: Table 4 parameter counts):
# dropout around the project default on one GPU (fp32, five seeds, validation Recall@10
# decides), and BERT4Rec's paper layout on the host's CPU cores with the final seeds.
source benchmarks/device/env.sh
S='"ffn_mult":4,"num_blocks":1,"output_bias":true,"norm_first":false,"sample_mode":"prefix"'
B='"ffn_mult":1,"num_blocks":2,"output_bias":true,"norm_first":false,"output_head":true'
timeout 570 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023 --workers 3 \
  --out $OUT/explore10_cpu.jsonl --models bert4rec --set "bert4rec:{$B}" > /dev/null 2> $OUT/explore10_cpu.log &
timeout 570 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds 42,123,2023,7,99 --workers 11 \
  --out $OUT/explore10.jsonl --models sasrec,bert4rec \
  --set "sasrec:{$G,$S,\"dropout\":0.1}" --set "sasrec:{$G,$S,\"dropout\":0.3}" \
  --set "bert4rec:{$G,$B}" --set "bert4rec:{$G,$B,\"dropout\":0.2}" \
  > /dev/null 2> $OUT/explore10.log
wait
summarise explore10 explore10_cpu
