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
always a complete, verified archive. A transfer that ends short of its Content-Length or drops is
retried a few times and then raises `DataError`; its partial file is deleted. A cached
archive that no longer matches its checksum is deleted and fetched again, never used.
The verified archive is then extracted into a temporary folder under ``data_dir()/raw/``
and renamed to ``data_dir()/raw/<name>/`` in one step; an archive whose contents sit in a
single top folder (``ml-100k/``, ``ml-10M100K/``, ``ml-20m/``) is flattened, so
``raw/ml-100k/u.data`` exists. A finished ``raw/<name>/`` is reused by later runs.
Unpacking refuses unsafe paths, duplicate members and zip bombs (see `unpack`).

Processes sharing one cache (a sweep's trials, parallel runs) take a lock per download
and per ``raw/<name>/`` (see `locks`): the first one fetches and unpacks, the others wait
and then use its result, so a dataset is downloaded once however many runs start at once.

`data_dir()` is ``$XLREC_DATA_DIR`` or ``~/.cache/xlrec``. Only the standard library
(urllib) is used for downloads.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping, TextIO

from xlrec.data_prep import locks
from xlrec.data_prep.unpack import extract_zip, limits_problem
from xlrec.errors import ConfigError, DataError

CHUNK = 1 << 20  # bytes per read while streaming
CONNECT_TIMEOUT = 30.0  # seconds; urllib applies it to the connect and to every read
RETRIES = 3  # attempts per download for transient failures (drops, short transfers, 5xx)
BACKOFF = 1.0  # seconds before the 2nd attempt, doubled for each further one


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
        return PurePosixPath(urllib.request.urlparse(self.url).path).name


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
        url=f"{_GROUPLENS}/ml-100k.zip", size=4_924_029,
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        md5="0e33842e24a9c977be4e0107933c0723",
    ),
    "ml-1m": Source(
        url=f"{_GROUPLENS}/ml-1m.zip", size=5_917_549,
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        md5="c4d9eecfca2ab87c1945afe126590906",
    ),
    "ml-10m": Source(
        url=f"{_GROUPLENS}/ml-10m.zip", size=65_566_137,
        sha256=None,  # unverified: no published SHA-256 found; size + MD5 are checked
        md5="ce571fd55effeba0271552578f2648bd",
    ),
    "ml-20m": Source(
        url=f"{_GROUPLENS}/ml-20m.zip", size=198_702_078,
        sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        md5="cd245b17a1ae2cc31bb14903e1204af3",
    ),
    # The Steam reviews used by SASRec and BERT4Rec (Kang & McAuley), also served at
    # https://mcauleylab.ucsd.edu/public_datasets/data/steam/steam_reviews.json.gz
    "steam": Source(
        url="https://cseweb.ucsd.edu/~wckang/steam_reviews.json.gz",
        sha256=None, size=None, md5=None, kind="file",  # unverified: no published values found
    ),
}

_OFFLINE = (
    "pass --source DIR (or set XLREC_DATA_MIRROR=DIR) where DIR holds one folder per dataset with its "
    "raw files (e.g. DIR/ml-100k/u.data)"
)
_OFFLINE_HINT = f"To work offline, {_OFFLINE}"


def data_dir() -> Path:
    """Root of xlrec's data cache: ``$XLREC_DATA_DIR`` or ``~/.cache/xlrec``."""
    return Path(os.environ.get("XLREC_DATA_DIR") or Path.home() / ".cache" / "xlrec")


def lock(target: Path, what: str, stream: TextIO | None = None):
    """The cache's inter-process lock guarding `target` (a context manager)."""
    return locks.locked(locks.lock_path(data_dir(), target), what, stream)


# --------------------------------------------------------------------------- resolution


def raw_dir(name: str, source: str | None = None, *, sources: Mapping[str, Source] | None = None,
            retries: int = RETRIES, backoff: float = BACKOFF, timeout: float = CONNECT_TIMEOUT) -> Path:
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


def _acquire(name: str, source: str | None, target: Path, sources: Mapping[str, Source] | None,
             retries: int, backoff: float, timeout: float) -> Path:
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
    fetch(spec.url, archive, spec.sha256, spec.size, md5=spec.md5, check=_integrity_check(spec),
          retries=retries, backoff=backoff, timeout=timeout)
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


# ------------------------------------------------------------------------------ download


def fetch(url: str, dest: str | os.PathLike, sha256: str | None = None, size: int | None = None, *,
          md5: str | None = None, check: Callable[[Path], str | None] | None = None,
          retries: int = RETRIES, backoff: float = BACKOFF, timeout: float = CONNECT_TIMEOUT,
          stream: TextIO | None = None) -> Path:
    """Download `url` to `dest` unless a verified copy is already there; return `dest`.

    The body is streamed into a temporary file of its own beside `dest` (so concurrent
    downloads never share one) and renamed to `dest` only once it is complete and verified: its size must equal `size`, its digest `sha256` (and `md5`)
    where given. When no digest is known, `check(path)` (an integrity check returning a
    problem or None) must pass, and if there is no check either, the file is refused.
    An existing `dest` that fails verification is deleted and fetched again. Transient
    failures (short transfer, dropped connection, timeout, HTTP 5xx) are retried up to
    `retries` attempts in all; a complete file with the wrong checksum is not. Processes
    fetching the same `dest` at once take turns (an inter-process lock): the first one
    downloads, the others find its verified copy.
    """
    dest = Path(dest)
    if sha256 is None and md5 is None and check is None:
        raise DataError(
            f"Refusing to download {url}: no checksum is known for it and no integrity check applies, so a "
            f"corrupt copy could not be detected. {_OFFLINE_HINT}."
        )
    stream = sys.stderr if stream is None else stream
    with lock(dest, f"downloading {dest.name}", stream):
        return _fetch_locked(url, dest, sha256, size, md5, check, retries, backoff, timeout, stream)


def _fetch_locked(url: str, dest: Path, sha256: str | None, size: int | None, md5: str | None,
                  check: Callable[[Path], str | None] | None, retries: int, backoff: float, timeout: float,
                  stream: TextIO) -> Path:
    if dest.is_file():
        problem = _verify(dest, sha256, size, md5, check)
        if problem is None:
            return dest
        print(f"xlrec: cached {dest} is corrupt ({problem}); deleting it and downloading it again.", file=stream)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    locks.remove_stale(dest.parent, f".{dest.name}.", ".part")  # from a killed download
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    part = Path(name)
    attempts = max(1, retries)
    last = ""
    try:
        for attempt in range(1, attempts + 1):
            try:
                hashes = _download(url, part, dest, size, timeout, stream)
            except _Transient as exc:
                last = str(exc)
                if attempt < attempts:
                    print(f"xlrec: download of {url} failed ({last}); retrying ({attempt + 1}/{attempts}).",
                          file=stream)
                    time.sleep(backoff * 2 ** (attempt - 1))
                continue
            problem = _verify(part, sha256, size, md5, check, hashes)
            if problem is not None:
                raise DataError(
                    f"The download of {url} is not the expected file: {problem}. Nothing was kept. The file may "
                    f"have changed on the server or a proxy may have altered it; try again later, or download it "
                    f"by other means and use a mirror directory. {_OFFLINE_HINT}."
                )
            if sha256 is None and md5 is None:
                print(f"xlrec: note: {url} has no published checksum; accepted after an integrity check "
                      f"(SHA-256 {hashes[0]}).", file=stream)
            os.replace(part, dest)
            return dest
    finally:
        if part.exists():
            part.unlink()
    raise DataError(
        f"Could not download {url} after {attempts} attempt(s): {last}. Nothing was kept. Check the network and "
        f"try again; to work offline, {_OFFLINE}; or put a copy of the file at {dest} (it is "
        f"verified before use)."
    )


class _Transient(Exception):
    """A failure worth retrying: short transfer, reset, timeout, server error."""


def _request(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"User-Agent": "xlrec-data/1", "Accept-Encoding": "identity"})


def _download(url: str, part: Path, dest: Path, size: int | None, timeout: float,
              stream: TextIO) -> tuple[str, str]:
    """Stream `url` into `part` (the temp file for `dest`); return its (sha256, md5) hex digests.

    Raises _Transient or DataError.
    """
    try:
        resp = urllib.request.urlopen(_request(url), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DataError(
            f"Downloading {url} failed with HTTP {exc.code} {exc.reason}. The URL may have moved. "
            f"{_OFFLINE_HINT}."
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, ConnectionResetError)):
            raise _Transient(str(reason)) from None
        raise DataError(
            f"Cannot reach {url} ({reason}); this machine may have no internet access. {_OFFLINE_HINT}; or put "
            f"a copy of the file at {dest} (it is verified before use)."
        ) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # malformed URL
        raise DataError(f"{url!r} is not a usable download URL ({exc}). Fix --source or XLREC_DATA_MIRROR.") from None
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with resp:
        length_header = resp.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        if expected is not None and size is not None and expected != size:
            raise DataError(
                f"{url} is {expected:,} bytes but the expected file is {size:,} bytes: it has changed on the "
                f"server or the URL is wrong. Nothing was downloaded. {_OFFLINE_HINT}."
            )
        received = 0
        bar = _Progress(dest.name, expected or size, stream)
        try:
            with open(part, "wb") as fh:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    received += len(chunk)
                    bar.update(received)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Transient(f"connection lost after {received:,} bytes ({type(exc).__name__}: {exc})") from None
        except OSError as exc:  # disk full, permissions: not worth retrying
            raise DataError(f"Cannot write {part} ({exc}). Free disk space or set XLREC_DATA_DIR elsewhere.") from None
        finally:
            bar.close()
    if expected is not None and received != expected:
        raise _Transient(f"the transfer ended after {received:,} of {expected:,} bytes")
    return sha.hexdigest(), md5.hexdigest()


def _file_hashes(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _verify(path: Path, sha256: str | None, size: int | None, md5: str | None,
            check: Callable[[Path], str | None] | None, hashes: tuple[str, str] | None = None) -> str | None:
    """What is wrong with `path` as a copy of the expected file, or None if it checks out."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"it is {actual:,} bytes, expected {size:,}"
    if sha256 is not None or md5 is not None:
        got_sha, got_md5 = hashes or _file_hashes(path)
        if sha256 is not None and got_sha != sha256.lower():
            return f"SHA-256 {got_sha}, expected {sha256.lower()}"
        if md5 is not None and got_md5 != md5.lower():
            return f"MD5 {got_md5}, expected {md5.lower()}"
        return None
    if check is None:
        return "no checksum is known and no integrity check applies"
    return check(path)


def _integrity_check(spec: Source) -> Callable[[Path], str | None] | None:
    """A structural check for files without a known digest, from the file's format."""
    if spec.kind == "zip":
        return _check_zip
    if spec.filename.endswith(".gz"):
        return _check_gzip
    return None  # nothing to check: `fetch` refuses such a file unless a digest is known


def _check_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            too_large = limits_problem(zf)  # before testzip, which would inflate a zip bomb
            if too_large:
                return too_large
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        return f"not a valid zip archive ({exc})"
    return None if bad is None else f"zip member {bad} is corrupt"


def _check_gzip(path: Path) -> str | None:
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"not a complete gzip file ({exc})"
    return None


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
        locks.remove_stale(raw, f".{name}-", suffix)
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


# ------------------------------------------------------------------------------ progress


class _Progress:
    """A one-line progress bar on a terminal (``\\r`` updates); silent when not a TTY."""

    def __init__(self, label: str, total: int | None, stream: TextIO, interval: float = 0.2):
        self.label, self.total, self.stream, self.interval = label, total, stream, interval
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self.start = self.last = time.monotonic()
        self.done = 0
        self.shown = False

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.interval or (self.total and done >= self.total)):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6)
        mb = 1 << 20
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = (f"\r{self.label} [{bar:<30}] {frac:4.0%} {self.done / mb:,.1f}/{self.total / mb:,.1f} MB "
                    f"{rate / mb:,.1f} MB/s")
        else:
            text = f"\r{self.label} {self.done / mb:,.1f} MB {rate / mb:,.1f} MB/s"
        self.stream.write(text)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
