# The H100 table in BENCHMARKS.md (part 1): run on the device machine from the repo root.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip list 2>/dev/null > $OUT/gpu_host_pip_list.txt
python3 benchmarks/ce_check.py | tee $OUT/ce_check.jsonl
python3 benchmarks/speed.py --shapes ml-1m --models xlstm --prefix-steps 60 --epochs 3 --out $OUT/speed.jsonl
python3 benchmarks/speed.py --shapes ml-1m --models sasrec,bert4rec,gru4rec --prefix-steps 30 --epochs 3 --out $OUT/speed.jsonl
python3 benchmarks/speed.py --shapes ml-100k --models xlstm --epochs 3 --source shared_data --out $OUT/speed.jsonl
python3 benchmarks/speed.py --shapes ml-10m --models xlstm --epochs 2 --batch-size 1024 --out $OUT/speed.jsonl
python3 benchmarks/speed.py --shapes ml-20m --models xlstm --epochs 1 --batch-size 1024 --out $OUT/speed.jsonl
for i in 1 2; do /usr/bin/time -f "ml-100k full xlstm run $i wall %e s" python3 -m xlrec train --model xlstm --dataset ml-100k --source shared_data --device cuda --no-tracking > $OUT/ml100k_full$i.json 2> $OUT/ml100k_full$i.log; tail -1 $OUT/ml100k_full$i.log; done
python3 -m cProfile -o /tmp/ml100k.prof -m xlrec train --model xlstm --dataset ml-100k --source shared_data --device cuda --no-tracking > /dev/null 2>&1
python3 -c "import pstats; pstats.Stats('/tmp/ml100k.prof').sort_stats('cumulative').print_stats(40)" > $OUT/ml100k_profile.txt
