# Source on the lent GPU host, from the repo root: the packages its image lacks, installed once per
# machine into /tmp/site (DEVELOPERS.md "Running on a GPU" builds them):
#   .whlray/*.tar.xz  one bundle of every missing package for Python 3.12 (pip --target, pruned, xz'd),
#                     or the pruned ray wheel alone beside .whl/
#   .whl/             wheels for Python 3.12 (the older way: mlflow, optuna, xlstm and their dependencies)
mkdir -p /tmp/site
PIP="python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site"
# xlrec's own metadata (a logged model's requirements are read from it); its code stays the repo's,
# so the copy pip made is removed. First: pip --target --upgrade replaces /tmp/site/bin.
if [ ! -d /tmp/site/xlrec-0.1.0.dist-info ]; then
  $PIP --no-build-isolation . > /dev/null 2>&1 && rm -rf /tmp/site/xlrec
fi
[ -d .whl ] && [ ! -d /tmp/site/mlflow ] && $PIP .whl/*.whl 2>&1 | grep -v "^WARNING" | tail -3
if [ ! -d /tmp/site/ray ] && ls .whlray/*.tar.xz > /dev/null 2>&1; then
  for t in .whlray/*.tar.xz; do tar xJf "$t" -C /tmp/site; done
  # scripts installed elsewhere (pip --target) name that machine's interpreter
  sed -i '1s|^#!.*python[0-9.]*$|#!/usr/bin/env python3|' /tmp/site/bin/* 2> /dev/null
fi
for f in $(ls .devdata/*/*.gz 2>/dev/null); do [ -f "${f%.gz}" ] || gunzip -k "$f"; done  # data carried compressed
# The host sets PYTHONDONTWRITEBYTECODE=1: every process (each Ray worker too) would compile
# torch's sources again; an installed environment has its bytecode.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH XLREC_DATA_DIR=/tmp/xd PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
