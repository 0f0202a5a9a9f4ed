# The H100 table in BENCHMARKS.md (part 2): packing and GPU-vs-CPU, on the same warm machine.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks
export XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
python3 benchmarks/packing.py --source shared_data | tee $OUT/packing.jsonl
python3 benchmarks/gpu_vs_cpu.py | tee $OUT/gpu_vs_cpu.json
