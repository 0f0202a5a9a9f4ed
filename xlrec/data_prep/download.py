"""Downloading one file safely: streamed, verified, retried, never half-kept.

The body streams into a temporary file of its own beside the destination (so concurrent
downloads never share one), is checked against the known size and SHA-256 (MD5 where
GroupLens publishes only that) or, where no digest is known, a structural check of its
format, and is renamed into place with `os.replace`: the destination is always a
complete, verified file. Processes fetching the same file take turns (`cache.lock`):
the first downloads, the others find its verified copy. Only the standard library
(urllib) is used.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from xlrec.data_prep import cache
from xlrec.data_prep.unpack import limits_problem
from xlrec.errors import DataError
from xlrec.redact import basic_auth_request, redact

CHUNK = 1 << 20  # bytes per read while streaming
CONNECT_TIMEOUT = 30.0  # seconds; urllib applies it to the connect and to every read
RETRIES = 3  # attempts per download for transient failures (drops, short transfers, 5xx)
BACKOFF = 1.0  # seconds before the 2nd attempt, doubled for each further one

_OFFLINE = (
    "pass --source DIR (or set XLREC_DATA_MIRROR=DIR) where DIR holds one folder per dataset with its "
    "raw files (e.g. DIR/ml-100k/u.data)"
)
_OFFLINE_HINT = f"To work offline, {_OFFLINE}"


# ------------------------------------------------------------------------------ download


def fetch(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    size: int | None = None,
    *,
    md5: str | None = None,
    check: Callable[[Path], str | None] | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    timeout: float = CONNECT_TIMEOUT,
    stream: TextIO | None = None,
) -> Path:
    """Download `url` to `dest` unless a verified copy is already there; return `dest`.

    The body is streamed into a temporary file of its own beside `dest` (so concurrent
    downloads never share one) and renamed to `dest` only once it is complete and verified:
    its size must equal `size`, its digest `sha256` (and `md5`) where given. When no digest is
    known, `check(path)` (an integrity check returning a problem or None) must pass, and if
    there is no check either, the file is refused.
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
    with cache.lock(dest, f"downloading {dest.name}", stream):
        return _fetch_locked(url, dest, sha256, size, md5, check, retries, backoff, timeout, stream)


def _fetch_locked(
    url: str,
    dest: Path,
    sha256: str | None,
    size: int | None,
    md5: str | None,
    check: Callable[[Path], str | None] | None,
    retries: int,
    backoff: float,
    timeout: float,
    stream: TextIO,
) -> Path:
    if dest.is_file():
        problem = _verify(dest, sha256, size, md5, check)
        if problem is None:
            return dest
        print(f"xlrec: cached {dest} is corrupt ({problem}); deleting it and downloading it again.", file=stream)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    cache.remove_stale(dest.parent, f".{dest.name}.", ".part")  # from a killed download
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
                    print(
                        f"xlrec: download of {redact(url)} failed ({last}); retrying ({attempt + 1}/{attempts}).",
                        file=stream,
                    )
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
                print(
                    f"xlrec: note: {redact(url)} has no published checksum; accepted after an integrity check "
                    f"(SHA-256 {hashes[0]}).",
                    file=stream,
                )
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
    return basic_auth_request(url, {"User-Agent": "xlrec-data/1", "Accept-Encoding": "identity"})


def _download(url: str, part: Path, dest: Path, size: int | None, timeout: float, stream: TextIO) -> tuple[str, str]:
    """Stream `url` into `part` (the temp file for `dest`); return its (sha256, md5) hex digests.

    Raises _Transient or DataError.
    """
    try:
        resp = urllib.request.urlopen(_request(url), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DataError(
            f"Downloading {url} failed with HTTP {exc.code} {exc.reason}. The URL may have moved. {_OFFLINE_HINT}."
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


def _verify(
    path: Path,
    sha256: str | None,
    size: int | None,
    md5: str | None,
    check: Callable[[Path], str | None] | None,
    hashes: tuple[str, str] | None = None,
) -> str | None:
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
            text = (
                f"\r{self.label} [{bar:<30}] {frac:4.0%} {self.done / mb:,.1f}/{self.total / mb:,.1f} MB "
                f"{rate / mb:,.1f} MB/s"
            )
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
