"""The pip requirements a logged model carries, read from the installed xlrec.

pyproject.toml is the one place that pins versions. A logged model asks for the dependencies
of xlrec that loading and serving it imports, at the versions installed in the process that
trained it (the environment that produced the weights), so no version is written here. The sweep
and tracking stack (ray, optuna, psycopg2, matplotlib, ...) is left out: a serving environment
built from the model's requirements.txt does not need it.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires, version

from xlrec.errors import XlrecError

# `name[extras]` at the start of a requirement string (PEP 508)
_NAME = re.compile(r"\s*(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?P<extras>\[[^\]]*\])?")
# what xlrec.platform.registry.serving and the models import (names only; each must be declared in pyproject)
SERVING = ("torch", "xlstm", "mlstm-kernels", "mlflow", "numpy", "pandas", "pyyaml", "safetensors")


def pip_requirements() -> list[str]:
    """`name==version` for each serving dependency of xlrec (`SERVING`), at its installed version.

    Optional extras (`test`) are left out. A local version label (`2.13.0+cpu`) is dropped: the
    index serves the plain version, and the model runs on either build.
    """
    try:
        declared = requires("xlrec") or []
    except PackageNotFoundError:
        raise XlrecError(
            "xlrec is not installed (`pip install -e .`): a logged model's requirements are the "
            "installed versions of the dependencies xlrec declares."
        ) from None
    pins = []
    for req in declared:
        spec, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        m = _NAME.match(spec)
        if m is not None and m["name"].lower() not in SERVING:
            continue
        if m is None:
            raise XlrecError(
                f"xlrec's installed metadata has a requirement that cannot be read: {req!r}. "
                f"Reinstall xlrec (`pip install -e .`)."
            )
        try:
            installed = version(m["name"]).split("+")[0]
        except PackageNotFoundError:
            raise XlrecError(
                f"{m['name']}, a dependency of xlrec, is not installed. Reinstall xlrec (`pip install -e .`)."
            ) from None
        pins.append(f"{m['name']}{m['extras'] or ''}=={installed}")
    missing = set(SERVING) - {p.split("==")[0].split("[")[0].lower() for p in pins}
    if missing:  # a dependency renamed or dropped in pyproject.toml without updating SERVING
        raise XlrecError(
            f"xlrec's installed metadata does not declare {sorted(missing)}, which a served model "
            f"needs. Reinstall xlrec (`pip install -e .`)."
        )
    return pins
