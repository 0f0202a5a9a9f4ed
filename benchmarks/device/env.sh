# Source on the lent GPU host, from the repo root: the packages its image lacks, carried as wheels
# (DEVELOPERS.md "GPU host"), installed once per machine into /tmp/site.
#   .whl/       wheels for Python 3.12 (mlflow, optuna, xlstm and their missing dependencies)
#   .whlray/    ray-2.60.0-cp312-pruned.tar.xz: the ray wheel (79 MB, over what one call may carry)
#               unpacked without its Java jars, RLlib, Serve, LLM and dashboard web client, xz'd (29 MB):
#               mkdir r && cd r && unzip -q ../ray-2.60.0-cp312-*.whl && rm -rf ray/jars ray/rllib ray/serve \
#                 ray/llm ray/dashboard/client/build && tar cf - . | xz -6 > ../.whlray/ray-2.60.0-cp312-pruned.tar.xz
#               Carry it in a second call when .whl and the data fill the first.
mkdir -p /tmp/site
PIP="python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site"
[ -d .whl ] && [ ! -d /tmp/site/mlflow ] && $PIP .whl/*.whl 2>&1 | grep -v "^WARNING" | tail -3
[ ! -d /tmp/site/ray ] && ls .whlray/ray-*.tar.xz > /dev/null 2>&1 && tar xJf .whlray/ray-*.tar.xz -C /tmp/site
for f in $(ls .devdata/*/*.gz 2>/dev/null); do [ -f "${f%.gz}" ] || gunzip -k "$f"; done  # data carried compressed
# xlrec's own metadata (a logged model's requirements are read from it); its code stays the
# repo's, so the copy pip made is removed.
if [ ! -d /tmp/site/xlrec-0.1.0.dist-info ]; then
  $PIP --no-build-isolation . > /dev/null 2>&1 && rm -rf /tmp/site/xlrec
fi
# The host sets PYTHONDONTWRITEBYTECODE=1: every process (each Ray worker too) would compile
# torch's sources again; an installed environment has its bytecode.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
