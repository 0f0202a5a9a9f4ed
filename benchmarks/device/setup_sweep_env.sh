# Source on the GPU host: unpack ray / mlflow / optuna and their missing dependencies (carried
# in .whl2 as xz tarballs, since the ray wheel alone exceeds what one call may carry) and xlstm.
REPO=$PWD
mkdir -p /tmp/site
[ -d /tmp/site/ray ] || { tar xJf .whl2/ray-2.60.0-cp312-pruned.tar.xz -C /tmp/site && tar xJf .whl2/site12.tar.xz -C /tmp/site; }
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$REPO:$REPO/benchmarks XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
unset PYTHONDONTWRITEBYTECODE
