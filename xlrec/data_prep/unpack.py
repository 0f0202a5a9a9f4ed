"""Unpacking a dataset zip safely: no path escapes, no duplicate members, no zip bombs.

`zipfile.extractall` would do for a trusted archive; these archives come from mirrors, so
each member is checked before anything is written: its path must stay inside the target,
its normalised name must be unique (a second ``u.data`` would silently replace the first),
and the archive must not expand past `max_unpacked_bytes()` in total or by more than
`MAX_RATIO` per member. The sizes come from the central directory, which an archive can
fake, so the bytes are counted again while they are written.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from xlrec.errors import DataError

CHUNK = 1 << 20
# ML-20M unpacks to ~0.9 GB and the Steam reviews to ~1.3 GB; 8 GiB leaves room for larger
# MovieLens releases while refusing archives that would fill a disk.
MAX_UNPACKED_BYTES = 8 << 30
MAX_RATIO = 200  # text data deflates ~4-10x; zip bombs reach ~1000x
RATIO_MIN_BYTES = 1 << 20  # tiny members (empty files, READMEs) may have any ratio
ENV_MAX_UNPACKED = "XLREC_MAX_UNPACKED_BYTES"


def max_unpacked_bytes() -> int:
    """The cap on an archive's total unpacked size: ``$XLREC_MAX_UNPACKED_BYTES`` or 8 GiB."""
    value = os.environ.get(ENV_MAX_UNPACKED, "").strip()
    if not value:
        return MAX_UNPACKED_BYTES
    if not value.isdigit():
        raise DataError(f"{ENV_MAX_UNPACKED}={value!r} is not a whole number of bytes. Fix or unset it.")
    return int(value)


def junk(filename: str) -> bool:
    parts = PurePosixPath(filename).parts
    return not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"


def _parts(filename: str) -> tuple[str, ...]:
    """A member's path as normalised parts (``./a//b`` and ``a\\b`` both become ``('a', 'b')``)."""
    return tuple(p for p in PurePosixPath(filename.replace("\\", "/")).parts if p not in (".", ""))


def limits_problem(zf: zipfile.ZipFile, cap: int | None = None) -> str | None:
    """What makes `zf` too large to unpack, from its central directory; None if it is within bounds."""
    cap = max_unpacked_bytes() if cap is None else cap
    total = sum(m.file_size for m in zf.infolist())
    if total > cap:
        return (
            f"it would unpack to {total:,} bytes, over the limit of {cap:,} bytes "
            f"(raise {ENV_MAX_UNPACKED} if this dataset really is that large)"
        )
    for m in zf.infolist():
        if m.file_size >= RATIO_MIN_BYTES and m.file_size > MAX_RATIO * max(m.compress_size, 1):
            return (
                f"member {m.filename!r} expands {m.file_size / max(m.compress_size, 1):,.0f}-fold "
                f"({m.compress_size:,} -> {m.file_size:,} bytes), more than the {MAX_RATIO}-fold any real "
                f"dataset file does: it looks like a zip bomb"
            )
    return None


def _refuse(archive: Path, why: str) -> DataError:
    return DataError(
        f"{archive} cannot be unpacked: {why}. Nothing was unpacked. Delete the file and get the "
        f"dataset from a trusted source."
    )


def extract_zip(archive: Path, dest: Path) -> None:
    """Unpack `archive` into the empty folder `dest`, flattening a single top folder.

    Raises DataError before writing anything when a member is unsafe or duplicated or the
    archive is too large; and while writing when the real bytes exceed the declared cap
    (the caller then deletes `dest`).
    """
    cap = max_unpacked_bytes()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not junk(m.filename)]
            if not members:
                raise DataError(f"{archive} is an empty zip archive. Delete it and fetch the dataset again.")
            seen: dict[tuple[str, ...], str] = {}
            for m in members:
                p = PurePosixPath(m.filename.replace("\\", "/"))
                if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
                    raise DataError(
                        f"{archive} contains the unsafe path {m.filename!r}; refusing to unpack it. "
                        f"Delete the file and get the dataset from a trusted source."
                    )
                key = _parts(m.filename)
                if not m.is_dir() and key in seen:
                    raise _refuse(
                        archive,
                        f"it holds the member {'/'.join(key)!r} twice ({seen[key]!r} and "
                        f"{m.filename!r}), so one copy would silently replace the other",
                    )
                if not m.is_dir():
                    seen[key] = m.filename
            problem = limits_problem(zf, cap)
            if problem:
                raise _refuse(archive, problem)
            tops = {_parts(m.filename)[0] for m in members if _parts(m.filename)}
            strip = 0
            if len(tops) == 1 and all(m.is_dir() or len(_parts(m.filename)) > 1 for m in members):
                strip = 1  # everything sits in one top folder (ml-100k/, ml-10M100K/): flatten it
            written = 0
            for m in members:
                parts = _parts(m.filename)[strip:]
                if not parts:
                    continue
                out = dest.joinpath(*parts)
                if m.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(out, "wb") as dst:
                    for block in iter(lambda: src.read(CHUNK), b""):
                        written += len(block)
                        if written > cap:  # the central directory understated the sizes
                            raise _refuse(
                                archive,
                                f"it unpacks to more than the limit of {cap:,} bytes although its directory says less",
                            )
                        dst.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{archive} is not a readable zip archive ({exc}). Delete it and fetch it again.") from None
