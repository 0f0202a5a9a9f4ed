# Device call: profile + quick H100 speed check + SASRec/BERT4Rec validation grid on the GPU.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
python3 benchmarks/profile_step.py --shape ml-10m --batch-size 1024 --steps 6 > $OUT/profile_ml10m.txt 2>&1; head -45 $OUT/profile_ml10m.txt
python3 benchmarks/speed.py --shapes ml-1m --models xlstm --prefix-steps 30 --epochs 2 --out $OUT/speed.jsonl
python3 benchmarks/speed.py --shapes ml-10m --models xlstm --epochs 2 --batch-size 1024 --out $OUT/speed.jsonl
for i in 1 2; do /usr/bin/time -f "ml-100k full xlstm run $i wall %e s" python3 -m xlrec train --model xlstm --dataset ml-100k --source shared_data --device cuda --no-tracking > $OUT/ml100k_full$i.json 2> $OUT/ml100k_full$i.log; tail -1 $OUT/ml100k_full$i.log; done
S=42,123,2023,7,99
timeout 330 python3 benchmarks/accuracy.py --source shared_data --protocols paper --seeds $S --workers 10 --out $OUT/explore4.jsonl \
  --models sasrec,bert4rec \
  --set 'sasrec:{"device":"cuda"}' --set 'sasrec:{"device":"cuda","patience":6}' \
  --set 'sasrec:{"device":"cuda","max_len":128}' --set 'sasrec:{"device":"cuda","max_len":32}' \
  --set 'sasrec:{"device":"cuda","lr":0.0005,"patience":6}' --set 'sasrec:{"device":"cuda","dropout":0.2}' \
  --set 'sasrec:{"device":"cuda","dropout":0.4}' --set 'sasrec:{"device":"cuda","batch_size":64}' \
  --set 'bert4rec:{"device":"cuda"}' --set 'bert4rec:{"device":"cuda","patience":6}' \
  --set 'bert4rec:{"device":"cuda","max_len":32}' --set 'bert4rec:{"device":"cuda","max_len":128}' \
  --set 'bert4rec:{"device":"cuda","mask_prob":0.15}' --set 'bert4rec:{"device":"cuda","mask_prob":0.3}' \
  --set 'bert4rec:{"device":"cuda","dropout":0.2}' --set 'bert4rec:{"device":"cuda","batch_size":128}' \
  > /dev/null 2> $OUT/explore4.log
python3 -c "import json; from accuracy import table; print(table([json.loads(l) for l in open('$OUT/explore4.jsonl')]))" | tee $OUT/explore4.md
