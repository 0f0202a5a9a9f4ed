# The paper grid as one sweep on this GPU host (fractional GPUs: 4 trials per GPU).
# usage: bash benchmarks/device/grid_gpu.sh TAG   (CUDA_VISIBLE_DEVICES picks the GPUs)
TAG=$1
source benchmarks/device/setup_sweep_env.sh
nvidia-smi -L; python3 -c "import ray, mlflow, optuna; print('ray', ray.__version__, 'mlflow', mlflow.__version__, 'optuna', optuna.__version__)"
W=/tmp/grid_$TAG; rm -rf $W; mkdir -p $W; cd $W
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 > $OUT/gpu_util_$TAG.csv &
SMI=$!
/usr/bin/time -f "grid $TAG wall %e s" python3 -m xlrec sweep --mode grid --datasets ml-100k \
  --models xlstm,sasrec,bert4rec,gru4rec --max-lens 32,64,128 --seeds 42,123,2023 \
  --gpus-per-trial 0.25 --cpus-per-trial 2 --epochs 30 --source $REPO/shared_data --set exclude_seen=false \
  > $OUT/grid_$TAG.json 2> $OUT/grid_$TAG.log
tail -3 $OUT/grid_$TAG.log
kill $SMI
python3 $REPO/benchmarks/grid_summary.py $OUT/grid_$TAG.json $OUT/gpu_util_$TAG.csv $OUT | tee $OUT/grid_${TAG}_summary.txt
cd $REPO
