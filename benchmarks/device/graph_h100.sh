# The H100 rows of BENCHMARKS.md that changed with the CUDA-graph training step: the ML-100K full
# run (graphed and eager), speed rows with the graph on and off, packing, GPU vs CPU.
# Run on the device machine from the repo root, carrying .whl and shared_data (DEVELOPERS.md).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null
# The host sets PYTHONDONTWRITEBYTECODE=1: every process would compile torch's sources (~10 s).
# An installed environment has its bytecode; unset it and cache under /tmp/pyc.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
A="-m xlrec train --model xlstm --dataset ml-100k --source shared_data --device cuda --no-tracking"
python3 $A --epochs 1 > /dev/null 2>&1  # fills the bytecode and Triton caches; not timed
full() {  # $1 = tag, rest = extra flags
  tag=$1; shift
  /usr/bin/time -f "ml-100k full xlstm run $tag wall %e s" python3 $A "$@" > /tmp/full_$tag.json 2> /tmp/full_$tag.log
  tail -1 /tmp/full_$tag.log
  python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(sys.argv[2], json.dumps({k: r[k] for k in ('seed','epochs_run','best_epoch','avg_epoch_time_s')}), 'test R@10', round(r['test']['recall@10'],4), 'val R@10', round(r['val']['recall@10'],4))" /tmp/full_$tag.json $tag
}
for i in 1 2 3; do full graph$i; done
for i in 1 2; do full eager$i --no-cuda-graph; done
for s in 123 2023; do full graph_seed$s --seed $s; done
cat /tmp/full_graph1.log
python3 benchmarks/speed.py --shapes ml-100k --models xlstm --epochs 3 --source shared_data --out $OUT/speed.jsonl > /dev/null
python3 benchmarks/speed.py --shapes ml-100k --models xlstm --epochs 3 --source shared_data --no-cuda-graph --out $OUT/speed.jsonl > /dev/null
python3 benchmarks/speed.py --shapes ml-1m --models xlstm --prefix-steps 60 --epochs 3 --out $OUT/speed.jsonl > /dev/null
python3 benchmarks/speed.py --shapes ml-1m --models sasrec,gru4rec --prefix-steps 30 --epochs 3 --out $OUT/speed.jsonl > /dev/null
python3 benchmarks/speed.py --shapes ml-1m --models xlstm,sasrec,gru4rec --epochs 3 --no-cuda-graph --out $OUT/speed.jsonl > /dev/null
python3 -c "
import json
for line in open('$OUT/speed.jsonl'):
    r = json.loads(line)
    print(r['shape'], r['model'], 'graph' if r['cuda_graph'] else 'eager', 'epoch_s', round(r['epoch_s'], 4), 'tput', int(r['throughput']), 'peak', r['peak_gpu_mb'], 'eval', r['eval_all_users_s'], r['eval_first_call_s'], 'R@10', round(r['test_recall@10'], 4), 'speedup', r.get('speedup_vs_prefix'), r.get('prefix_epoch_s_extrapolated'))
"
python3 benchmarks/packing.py --source shared_data --concurrency 1,2,4,8 | tee $OUT/packing.jsonl
python3 benchmarks/gpu_vs_cpu.py | tee $OUT/gpu_vs_cpu.json
