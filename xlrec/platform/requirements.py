"""The pip requirements a logged model carries, read from the installed xlrec.

pyproject.toml is the one place that pins versions. A logged model asks for the project's
declared runtime dependencies at the versions installed in the process that trained it (the
environment that produced the weights), so no version is written here.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires, version

from xlrec.errors import XlrecError

# `name[extras]` at the start of a requirement string (PEP 508)
_NAME = re.compile(r"\s*(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?P<extras>\[[^\]]*\])?")


def pip_requirements() -> list[str]:
    """`name==version` for each runtime dependency of xlrec, at its installed version.

    Optional extras (`test`) are left out. A local version label (`2.13.0+cpu`) is dropped: the
    index serves the plain version, and the model runs on either build.
    """
    try:
        declared = requires("xlrec") or []
    except PackageNotFoundError:
        raise XlrecError("xlrec is not installed (`pip install -e .`): a logged model's requirements are the "
                         "installed versions of the dependencies xlrec declares.") from None
    pins = []
    for req in declared:
        spec, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        m = _NAME.match(spec)
        if m is None:
            raise XlrecError(f"xlrec's installed metadata has a requirement that cannot be read: {req!r}. "
                             f"Reinstall xlrec (`pip install -e .`).")
        try:
            installed = version(m["name"]).split("+")[0]
        except PackageNotFoundError:
            raise XlrecError(f"{m['name']}, a dependency of xlrec, is not installed. Reinstall xlrec "
                             f"(`pip install -e .`).") from None
        pins.append(f"{m['name']}{m['extras'] or ''}=={installed}")
    return pins
