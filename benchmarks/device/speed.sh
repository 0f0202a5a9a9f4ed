# The GPU table in BENCHMARKS.md: run on the device machine from the repo root.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site:$PWD
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 benchmarks/speed.py --shapes ml-1m --models xlstm --prefix-steps 60 --epochs 2 --out $OUT/speed.jsonl
python3 benchmarks/speed.py --shapes ml-1m --models sasrec,bert4rec,gru4rec --prefix-steps 30 --epochs 2 --out $OUT/speed.jsonl
python3 benchmarks/speed.py --shapes ml-100k --models xlstm --epochs 2 --source shared_data --out $OUT/speed.jsonl
/usr/bin/time -f "ml-100k full xlstm run wall %e s" python3 -m xlrec train --model xlstm --dataset ml-100k --source shared_data --device cuda --no-tracking > $OUT/ml100k_full.json 2> $OUT/ml100k_full.log; tail -2 $OUT/ml100k_full.log; tail -c 400 $OUT/ml100k_full.json
python3 benchmarks/gpu_vs_cpu.py | tee $OUT/gpu_vs_cpu.json
python3 benchmarks/packing.py --source shared_data | tee $OUT/packing.jsonl
python3 benchmarks/speed.py --shapes ml-10m --models xlstm --epochs 1 --batch-size 1024 --out $OUT/speed.jsonl
python3 benchmarks/speed.py --shapes ml-20m --models xlstm --epochs 1 --batch-size 1024 --out $OUT/speed.jsonl
