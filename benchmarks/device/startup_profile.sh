# Where the wall time of a full ML-100K xLSTM run goes on the GPU host (BENCHMARKS.md).
# The host's environment sets PYTHONDONTWRITEBYTECODE, so every process compiles torch's and
# the project's sources (~10 s); unsetting it gives the bytecode cache any pip install has.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null
echo "PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE-<unset>}"
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
A="-m xlrec train --model xlstm --dataset ml-100k --source shared_data --device cuda --no-tracking"
for i in 1 2 3 4; do /usr/bin/time -f "run$i wall %e s" python3 $A > $OUT/run$i.json 2>$OUT/run$i.log; tail -1 $OUT/run$i.log; done
/usr/bin/time -f "eager run wall %e s" python3 $A --no-cuda-graph > $OUT/eager.json 2>$OUT/eager.log; tail -1 $OUT/eager.log
du -sh /tmp/pyc
/usr/bin/time -f "import torch %e s" python3 -c "import torch"
/usr/bin/time -f "import torch+cuda init %e s" python3 -c "import torch; torch.zeros(1).cuda()"
/usr/bin/time -f "import mlstm triton kernels %e s" python3 -c "import mlstm_kernels.torch.chunkwise.triton_limit_chunk"
python3 -m cProfile -o /tmp/p.prof $A > /dev/null 2>&1
python3 -c "import pstats; s=pstats.Stats('/tmp/p.prof'); s.sort_stats('cumulative').print_stats(45)" > $OUT/prof_cum.txt
grep -E "function calls|cli.py|fit|train_epoch|evaluate|prepare|import" $OUT/prof_cum.txt | head -30
python3 benchmarks/gpu_vs_cpu.py | tee $OUT/gpu_vs_cpu.json
