"""Where raw files come from: a mirror directory or URL, or the official download.

`raw_dir(name, source)` returns a local directory holding dataset `name`'s raw files.
The source is chosen in this order:

1. the explicit `source` argument (the CLI's `--source DIR_OR_URL`),
2. the environment variable `XLREC_DATA_MIRROR`,
3. the official download URL in `SOURCES`.

A source without ``://`` is a *mirror directory* holding one folder per dataset with its
raw files, used in place (nothing is copied): ``XLREC_DATA_MIRROR=../shared/data`` makes
``ml-100k`` resolve to ``../shared/data/ml-100k/``.

A source with ``://`` is a *mirror base URL*. It serves one zip archive per dataset at
``<base>/<name>.zip`` (for example ``http://host/data/ml-100k.zip``), laid out like the
official MovieLens archives: the raw files either at the top of the zip or inside one
folder. (For Steam, the zip holds ``steam_reviews.json.gz``.) The mirror may publish the
archive's SHA-256 beside it at ``<base>/<name>.zip.sha256`` (``sha256sum`` output); when
it does the archive is verified against it, otherwise the archive is accepted only if it
is a complete, valid zip (every member's CRC is checked).

Downloads (official or mirror URL) are streamed in chunks into a temporary file of
their own beside ``data_dir()/downloads/<file>`` with a progress bar on stderr (only when
stderr is a terminal), checked against the known size and SHA-256 (MD5 where GroupLens
publishes only that), and renamed into place with `os.replace`, so ``downloads/<file>`` is
always a complete, verified archive (see `download`). A transfer that ends short of its Content-Length or drops is
retried a few times and then raises `DataError`; its partial file is deleted. A cached
archive that no longer matches its checksum is deleted and fetched again, never used.
The verified archive is then extracted into a temporary folder under ``data_dir()/raw/``
and renamed to ``data_dir()/raw/<name>/`` in one step; an archive whose contents sit in a
single top folder (``ml-100k/``, ``ml-10M100K/``, ``ml-20m/``) is flattened, so
``raw/ml-100k/u.data`` exists. A finished ``raw/<name>/`` is reused by later runs, unless
its files fail to parse: then `discard` removes it and the archive, so the next run fetches
them again. Unpacking refuses unsafe paths, duplicate members and zip bombs (see `unpack`).

Processes sharing one cache (a sweep's trials, parallel runs) take a lock per download
and per ``raw/<name>/`` (see `cache`): the first one fetches and unpacks, the others wait
and then use its result, so a dataset is downloaded once however many runs start at once.

`data_dir()` is ``$XLREC_DATA_DIR`` or ``~/.cache/xlrec``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from xlrec.data_prep.cache import data_dir, lock, remove_stale
from xlrec.data_prep.download import (  # noqa: F401 (fetch and the checks are part of this module's API)
    _OFFLINE_HINT,
    BACKOFF,
    CONNECT_TIMEOUT,
    RETRIES,
    _check_gzip,
    _check_zip,
    _request,
    fetch,
)
from xlrec.data_prep.unpack import extract_zip
from xlrec.errors import ConfigError, DataError


@dataclass(frozen=True)
class Source:
    """One downloadable raw-data file and what a correct copy of it looks like.

    `kind` says how it becomes ``raw/<name>/``: ``"zip"`` is extracted, ``"file"`` is
    placed there as it is (e.g. the gzipped Steam reviews, which the reader opens itself).
    A value of None means "not known"; see `fetch` for what is then still checked.
    """

    url: str
    sha256: str | None
    size: int | None
    md5: str | None = None
    kind: str = "zip"

    @property
    def filename(self) -> str:
        return PurePosixPath(urllib.parse.urlparse(self.url).path).name


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"

# Official sources. Provenance of the values:
# - ml-100k, ml-1m, ml-20m: size and SHA-256 from TensorFlow Datasets'
#   tensorflow_datasets/url_checksums/movielens.txt (tensorflow/datasets), which records
#   the bytes TFDS downloaded from these exact URLs.
# - MD5 of every MovieLens zip: GroupLens' own ``<zip>.md5`` files, as quoted by several
#   independent projects; it is checked in addition to SHA-256 where both are known.
# - ml-10m: no published SHA-256 was found, so it is UNVERIFIED by SHA-256 (None); the
#   download is accepted only when its size (65,566,137 bytes, quoted by two independent
#   projects) and the GroupLens MD5 both match.
# - steam: neither SHA-256 nor size nor MD5 of steam_reviews.json.gz was found, so all
#   are None (UNVERIFIED). The download is accepted only when the transfer is complete
#   (Content-Length) and the whole gzip stream decompresses with a correct CRC-32 and
#   length trailer; its SHA-256 is printed so it can be pinned here.
SOURCES: dict[str, Source] = {
    "ml-100k": Source(
        url=f"{_GROUPLENS}/ml-100k.zip",
        size=4_924_029,
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        md5="0e33842e24a9c977be4e0107933c0723",
    ),
    "ml-1m": Source(
        url=f"{_GROUPLENS}/ml-1m.zip",
        size=5_917_549,
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        md5="c4d9eecfca2ab87c1945afe126590906",
    ),
    "ml-10m": Source(
        url=f"{_GROUPLENS}/ml-10m.zip",
        size=65_566_137,
        sha256=None,  # unverified: no published SHA-256 found; size + MD5 are checked
        md5="ce571fd55effeba0271552578f2648bd",
    ),
    "ml-20m": Source(
        url=f"{_GROUPLENS}/ml-20m.zip",
        size=198_702_078,
        sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        md5="cd245b17a1ae2cc31bb14903e1204af3",
    ),
    # The Steam reviews used by SASRec and BERT4Rec (Kang & McAuley), also served at
    # https://mcauleylab.ucsd.edu/public_datasets/data/steam/steam_reviews.json.gz
    "steam": Source(
        url="https://cseweb.ucsd.edu/~wckang/steam_reviews.json.gz",
        sha256=None,
        size=None,
        md5=None,
        kind="file",  # unverified: no published values found
    ),
}

# --------------------------------------------------------------------------- resolution


def raw_dir(
    name: str,
    source: str | None = None,
    *,
    sources: Mapping[str, Source] | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    timeout: float = CONNECT_TIMEOUT,
) -> Path:
    """Local directory with the raw files of dataset `name` (mirror first, else cache/download).

    `sources` replaces the official table (`SOURCES`), e.g. to point at a test server.
    """
    source = source or os.environ.get("XLREC_DATA_MIRROR") or None
    if source and "://" not in source:
        path = Path(source) / name
        if not path.is_dir():
            raise DataError(
                f"The mirror {source} has no folder {name}/ for dataset {name!r}. A mirror holds one folder per "
                f"dataset with its raw files (e.g. {Path(source) / 'ml-100k' / 'u.data'}); fix --source or "
                f"XLREC_DATA_MIRROR."
            )
        return path
    target = data_dir() / "raw" / name
    if target.is_dir():  # only ever created complete (atomic rename), so it is usable as is
        return target
    with lock(target, f"fetching {name}"):
        if target.is_dir():  # another process finished it while we waited
            return target
        return _acquire(name, source, target, sources, retries, backoff, timeout)


def _acquire(
    name: str,
    source: str | None,
    target: Path,
    sources: Mapping[str, Source] | None,
    retries: int,
    backoff: float,
    timeout: float,
) -> Path:
    """Download and unpack `name` into `target` (the caller holds `target`'s lock)."""
    if source:  # mirror base URL
        base = source.rstrip("/")
        url = f"{base}/{name}.zip"
        sha256 = _mirror_sha256(f"{url}.sha256", timeout)
        spec = Source(url=url, sha256=sha256, size=None, kind="zip")
    else:
        table = SOURCES if sources is None else sources
        if name not in table:
            raise ConfigError(
                f"No download source is known for dataset {name!r} (known: {', '.join(sorted(table))}). "
                f"{_OFFLINE_HINT}."
            )
        spec = table[name]
    archive = data_dir() / "downloads" / spec.filename
    fetch(
        spec.url,
        archive,
        spec.sha256,
        spec.size,
        md5=spec.md5,
        check=_integrity_check(spec),
        retries=retries,
        backoff=backoff,
        timeout=timeout,
    )
    return _install(name, archive, spec.kind)


def discard(name: str) -> list[Path]:
    """Remove the cached raw folder and downloaded archive of `name`; return what was removed.

    Used when the unpacked files turn out to be unreadable, so that the next run fetches
    them again (e.g. from a mirror that has been fixed) instead of reusing them.
    """
    target = data_dir() / "raw" / name
    removed = []
    with lock(target, f"fetching {name}"):
        if target.is_dir():
            # Renamed aside first, so no reader finds a half-deleted folder under the real name.
            aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-", suffix=".old"))
            os.replace(target, aside / name)
            shutil.rmtree(aside, ignore_errors=True)
            removed.append(target)
        names = {f"{name}.zip"} | ({SOURCES[name].filename} if name in SOURCES else set())
        for archive in (data_dir() / "downloads" / n for n in sorted(names)):
            with lock(archive, f"downloading {archive.name}"):
                if archive.is_file():
                    archive.unlink()
                    removed.append(archive)
    return removed


def _mirror_sha256(url: str, timeout: float) -> str | None:
    """The SHA-256 a mirror publishes beside its archive, or None when it publishes none."""
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as resp:
            text = resp.read(4096).decode("ascii", "replace")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        return None  # no sidecar (404) or unreachable: the archive itself will tell
    word = text.split()[0].lower() if text.split() else ""
    if len(word) != 64 or any(c not in "0123456789abcdef" for c in word):
        raise DataError(
            f"The mirror's checksum file {url} does not start with a SHA-256 hex digest ({text[:80]!r}). "
            f"Fix the mirror (the file should hold `sha256sum` output) or remove that file."
        )
    return word


def _integrity_check(spec: Source) -> Callable[[Path], str | None] | None:
    """A structural check for files without a known digest, from the file's format."""
    if spec.kind == "zip":
        return _check_zip
    if spec.filename.endswith(".gz"):
        return _check_gzip
    return None  # nothing to check: `fetch` refuses such a file unless a digest is known


# ------------------------------------------------------------------------------- install


def install(name: str, archive: str | os.PathLike, kind: str = "zip") -> Path:
    """Unpack a verified `archive` into ``data_dir()/raw/<name>/`` atomically; return that folder.

    Concurrent installs of one dataset take turns; the later ones find the folder done.
    """
    target = data_dir() / "raw" / name
    if target.is_dir():
        return target
    with lock(target, f"fetching {name}"):
        return _install(name, Path(archive), kind)


def _install(name: str, archive: Path, kind: str) -> Path:
    """`install` for a caller that holds the lock on ``raw/<name>``."""
    raw = data_dir() / "raw"
    target = raw / name
    if target.is_dir():
        return target
    raw.mkdir(parents=True, exist_ok=True)
    for suffix in (".tmp", ".old"):  # from a killed install or discard
        remove_stale(raw, f".{name}-", suffix)
    tmp = Path(tempfile.mkdtemp(dir=raw, prefix=f".{name}-", suffix=".tmp"))
    try:
        if kind == "zip":
            extract_zip(archive, tmp)
        else:
            dest = tmp / archive.name
            try:
                os.link(archive, dest)  # same filesystem: no copy of a large file
            except OSError:
                shutil.copy2(archive, dest)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a concurrent run that got there first
                raise
    except OSError as exc:
        raise DataError(
            f"Cannot unpack {archive} into {target} ({exc}). Free disk space or set XLREC_DATA_DIR elsewhere."
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
