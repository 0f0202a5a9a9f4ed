# The H100 table in BENCHMARKS.md (part 1): run on the device machine from the repo root,
# carrying .whl and shared_data (DEVELOPERS.md). Part 2 (the ML-100K full runs, graph on/off,
# packing, GPU vs CPU) is graph_h100.sh.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null
unset PYTHONDONTWRITEBYTECODE  # the host sets it; an installed environment has its bytecode
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip list 2>/dev/null > $OUT/gpu_host_pip_list.txt
python3 benchmarks/ce_check.py > $OUT/ce_check.jsonl
python3 benchmarks/speed.py --shapes ml-1m --models xlstm --prefix-steps 60 --epochs 3 --out $OUT/speed.jsonl > /dev/null
python3 benchmarks/speed.py --shapes ml-1m --models sasrec,bert4rec,gru4rec --prefix-steps 30 --epochs 3 --out $OUT/speed.jsonl > /dev/null
python3 benchmarks/speed.py --shapes ml-100k --models xlstm --epochs 3 --source shared_data --out $OUT/speed.jsonl > /dev/null
python3 benchmarks/speed.py --shapes ml-10m --models xlstm --epochs 2 --batch-size 1024 --out $OUT/speed.jsonl > /dev/null
python3 benchmarks/speed.py --shapes ml-20m --models xlstm --epochs 1 --batch-size 1024 --out $OUT/speed.jsonl > /dev/null
python3 -c "
import json
for line in open('$OUT/speed.jsonl'):
    r = json.loads(line)
    print(r['shape'], r['model'], 'graph' if r['cuda_graph'] else 'eager', r['epoch_times_s'], 'tput', int(r['throughput']), 'peak', r['peak_gpu_mb'], 'eval', r['eval_all_users_s'], r['eval_first_call_s'], 'R@10', round(r['test_recall@10'], 4), 'speedup', r.get('speedup_vs_prefix'), r.get('prefix_epoch_s_extrapolated'))
"
