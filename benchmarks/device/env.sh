# Source on the lent GPU host, from the repo root: the packages its image lacks, carried as wheels
# (DEVELOPERS.md "GPU host"), installed once per machine into /tmp/site.
#   .whl/       wheels for Python 3.12 (mlflow, optuna, xlstm and their missing dependencies)
#   .whlray1/, .whlray2/   the ray wheel split in parts (79 MB, over what one call may carry):
#               carry .whlray1 in one call and .whlray2 in the next, on the same warm machine.
mkdir -p /tmp/site /tmp/raypart
for d in .whlray1 .whlray2; do [ -d $d ] && cp $d/* /tmp/raypart/; done
PIP="python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site"
[ -d .whl ] && [ ! -d /tmp/site/mlflow ] && $PIP .whl/*.whl 2>&1 | grep -v "^WARNING" | tail -3
if [ ! -d /tmp/site/ray ] && [ "$(ls /tmp/raypart | wc -l)" -ge 5 ]; then
  cat /tmp/raypart/ray.part.* > /tmp/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
  $PIP /tmp/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl 2>&1 | grep -v "^WARNING" | tail -3
fi
# xlrec's own metadata (a logged model's requirements are read from it); its code stays the
# repo's, so the copy pip made is removed.
if [ ! -d /tmp/site/xlrec-0.1.0.dist-info ]; then
  $PIP --no-build-isolation . > /dev/null 2>&1 && rm -rf /tmp/site/xlrec
fi
# The host sets PYTHONDONTWRITEBYTECODE=1: every process (each Ray worker too) would compile
# torch's sources again; an installed environment has its bytecode.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
