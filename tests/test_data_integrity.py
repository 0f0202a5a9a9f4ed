"""Data-cache trust: concurrent first runs, hostile zips, truncated or corrupt mirror files.

The concurrency tests start real `python -m xlrec data prepare` processes against a real
HTTP server on 127.0.0.1 (and against the shared mirror directory), all sharing one empty
cache, and count what the server served and what the cache holds afterwards.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from helpers import REPO, SHARED_DATA, Server, leftovers, make_zip, sha256
from xlrec.data_prep.acquire import Source, install, raw_dir
from xlrec.data_prep.dataset import prepare
from xlrec.errors import DataError
from xlrec.settings import PrepConfig

PROCS = 4


pytestmark = pytest.mark.usefixtures("cache")  # every test on a private, empty data cache


@pytest.fixture(scope="module")
def ml100k_zip() -> bytes:
    """The real ML-100K raw files as the official archive lays them out (one top folder)."""
    src = SHARED_DATA / "ml-100k"
    if not (src / "u.data").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return make_zip({p.name: p.read_bytes() for p in sorted(src.iterdir()) if p.is_file()})


def cache_files(cache: Path) -> list[str]:
    """Every file in the cache except the lock files (which are meant to stay)."""
    return sorted(
        str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.relative_to(cache).parts[0] != "locks"
    )


def start_prepare(cache: Path, *args: str) -> subprocess.Popen:
    """`python -m xlrec data prepare --dataset ml-100k ARGS` with `cache` as its data cache."""
    env = {k: v for k, v in os.environ.items() if k != "XLREC_DATA_MIRROR"}
    env.update(PYTHONPATH=str(REPO), XLREC_DATA_DIR=str(cache))
    return subprocess.Popen(
        [sys.executable, "-m", "xlrec", "data", "prepare", "--dataset", "ml-100k", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def prepare_concurrently(cache: Path, *args: str, procs: int = PROCS) -> list[tuple[int, str, str]]:
    procs = [start_prepare(cache, *args) for _ in range(procs)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, out, err))
    return results


# ------------------------------------------------------------------------------ concurrency


def test_concurrent_first_downloads_share_one_fetch(server, cache, ml100k_zip):
    server.serve("/m/ml-100k.zip", ml100k_zip, mode="slow")
    results = prepare_concurrently(cache, "--source", server.base + "/m/")
    for rc, out, err in results:
        assert rc == 0, err
        assert "100,000" in out and "warning" not in err
    assert server.hits.count("/m/ml-100k.zip") == 1  # the others waited for the first download
    processed = [f for f in cache_files(cache) if f.startswith("processed/")]
    assert len(processed) == 1 and processed[0].endswith(".npz")
    names = [n.split("/", 1)[1] for n in zipfile.ZipFile(io.BytesIO(ml100k_zip)).namelist() if not n.endswith("/")]
    assert [f for f in cache_files(cache) if not f.startswith("processed/")] == ["downloads/ml-100k.zip"] + sorted(
        f"raw/ml-100k/{n}" for n in names
    )  # no .part or temp leftovers
    assert sum("processed and cached" in err for _, _, err in results) == 1  # parsed once, loaded 3 times


def test_concurrent_prepare_from_mirror_directory(cache, shared_data):
    results = prepare_concurrently(cache, "--source", str(shared_data))
    for rc, out, err in results:
        assert rc == 0, err
        assert "100,000" in out
    assert sum("processed and cached" in err for _, _, err in results) == 1
    assert sum("from cache" in err for _, _, err in results) == PROCS - 1
    files = cache_files(cache)
    assert len(files) == 1 and files[0].startswith("processed/ml-100k-") and files[0].endswith(".npz")


def test_killed_download_leaves_nothing_for_the_next_run(server, cache, ml100k_zip):
    """SIGKILL in mid-download: the lock dies with the process, the next run removes its temp file."""
    server.serve("/m/ml-100k.zip", ml100k_zip, mode="stall")
    proc = start_prepare(cache, "--source", server.base + "/m/")
    downloads = cache / "downloads"
    for _ in range(1200):  # until the transfer (stalled at half the body) has its temp file
        if "/m/ml-100k.zip" in server.hits and downloads.is_dir() and any(downloads.glob(".ml-100k.zip.*.part")):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    else:
        pytest.fail("the download never started")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert [p.name for p in downloads.iterdir()][0].endswith(".part")  # what the killed run left
    server.serve("/m/ml-100k.zip", ml100k_zip)
    ((rc, out, err),) = prepare_concurrently(cache, "--source", server.base + "/m/", procs=1)
    assert rc == 0 and "100,000" in out, err
    assert server.hits.count("/m/ml-100k.zip") == 2
    assert [p.name for p in downloads.iterdir()] == ["ml-100k.zip"]
    assert not [f for f in cache_files(cache) if Path(f).name.startswith(".")]


# ------------------------------------------------------------------------------ hostile zips


def mirror_table(server: Server, body: bytes) -> dict[str, Source]:
    return {"ml-100k": Source(url=server.serve("/ml-100k.zip", body), sha256=sha256(body), size=len(body))}


@pytest.mark.parametrize("second", ["ml-100k/u.data", "ml-100k/./u.data", "ml-100k//u.data"])
def test_duplicate_zip_members_are_refused(server, cache, ml100k_zip, second):
    buf = io.BytesIO(ml100k_zip)
    with zipfile.ZipFile(buf, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we are making on purpose
        zf.writestr(second, "1\t1\t5\t1\n")
    body = buf.getvalue()
    with pytest.raises(DataError, match="u.data") as err:
        raw_dir("ml-100k", sources=mirror_table(server, body))
    assert "twice" in str(err.value)
    assert leftovers(cache) == ["downloads/ml-100k.zip"]  # the verified archive, nothing unpacked


def bomb(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("u.data", "w") as fh:
        block = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            fh.write(block)
    return buf.getvalue()


def test_zip_bomb_is_refused(server, cache, tmp_path):
    body = bomb(64 << 20)  # 64 MiB of zeros in ~64 KB
    with pytest.raises(DataError, match="zip bomb"):
        raw_dir("ml-100k", sources=mirror_table(server, body))
    assert leftovers(cache) == ["downloads/ml-100k.zip"]
    server.serve("/m/ml-100k.zip", body)  # a mirror without a checksum: refused before the CRC pass
    with pytest.raises(DataError, match="zip bomb"):
        raw_dir("ml-100k", server.base + "/m")


def test_unpacked_size_cap_from_the_environment(server, cache, ml100k_zip, monkeypatch):
    monkeypatch.setenv("XLREC_MAX_UNPACKED_BYTES", "1000000")  # u.data alone is ~2 MB
    with pytest.raises(DataError, match="XLREC_MAX_UNPACKED_BYTES") as err:
        raw_dir("ml-100k", sources=mirror_table(server, ml100k_zip))
    assert "1,000,000" in str(err.value)
    assert leftovers(cache) == ["downloads/ml-100k.zip"]
    monkeypatch.delenv("XLREC_MAX_UNPACKED_BYTES")
    assert (raw_dir("ml-100k", sources=mirror_table(server, ml100k_zip)) / "u.data").is_file()


def test_understated_sizes_in_the_zip_directory(cache, tmp_path):
    """A central directory that claims 1,000 bytes for a 300 KB member: refused, nothing unpacked."""
    body = bytearray(make_zip({"u.data": "1\t10\t5\t300\n" * 25_000}, top=None))
    cd = body.index(b"PK\x01\x02")
    struct.pack_into("<I", body, cd + 24, 1000)  # the member's uncompressed size
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(bytes(body))
    with pytest.raises(DataError):
        install("ml-100k", archive)
    assert leftovers(cache) == []


# ------------------------------------------------------------------ statistics vs published ones


def test_truncated_mirror_file_warns(cache, shared_data, tmp_path, capsys):
    lines = (shared_data / "ml-100k" / "u.data").read_text().splitlines(keepends=True)[:99_000]
    mirror = tmp_path / "mirror" / "ml-100k"
    mirror.mkdir(parents=True)
    (mirror / "u.data").write_text("".join(lines))
    users = len({ln.split("\t")[0] for ln in lines})
    items = len({ln.split("\t")[1] for ln in lines})
    ds = prepare("ml-100k", PrepConfig(), source=str(tmp_path / "mirror"))
    assert ds.stats["interactions"] == 99_000
    err = capsys.readouterr().err
    warning = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warning) == 1, err
    assert "ml-100k" in warning[0] and "99,000 interactions" in warning[0] and "100,000" in warning[0]
    assert (users, items) == (943, 1682)  # the first 99,000 ratings still cover every user and item
    assert "users" not in warning[0] and "items" not in warning[0]
    assert ds.data_warning and ds.raw_counts == {
        "interactions": 99_000,
        "users": users,
        "items": items,
        "duplicate_rows": 0,
    }
    again = prepare("ml-100k", PrepConfig(), source=str(tmp_path / "mirror"))
    assert again.from_cache and again.data_warning == ds.data_warning  # the flag survives the cache
    assert "99,000 interactions" in capsys.readouterr().err


def test_real_ml100k_has_no_warning(cache, shared_data, capsys):
    ds = prepare("ml-100k", PrepConfig(), source=str(shared_data))
    assert ds.data_warning is None
    assert ds.raw_counts == {"interactions": 100_000, "users": 943, "items": 1682, "duplicate_rows": 0}
    assert "warning" not in capsys.readouterr().err


def test_partial_ml1m_copy_says_what_differs(cache, shared_data, capsys):
    if not (shared_data / "ml-1m" / "ratings.dat").is_file():
        pytest.skip("no shared ml-1m")
    ds = prepare("ml-1m", PrepConfig(), source=str(shared_data))  # a warning, not an error
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [ds.data_warning] and "\n" not in ds.data_warning
    for text in ("ml-1m", "987,019 interactions", "1,000,209", "3,416 items", "3,706", "partial or truncated"):
        assert text in ds.data_warning
    assert "users" not in ds.data_warning  # 6,040 users, as published


# --------------------------------------------------------------------- corrupt mirror files


@pytest.mark.parametrize(
    "content", [b"", bytes(range(256)) * 40, b"1\t10\t5\n2\t20\t4\n"], ids=["empty", "binary", "three-columns"]
)
def test_corrupt_mirror_file_is_a_data_error(cache, tmp_path, content):
    (tmp_path / "mirror" / "ml-100k").mkdir(parents=True)
    (tmp_path / "mirror" / "ml-100k" / "u.data").write_bytes(content)
    with pytest.raises(DataError, match="u.data"):
        prepare("ml-100k", PrepConfig(), source=str(tmp_path / "mirror"))
    assert cache_files(cache) == []


def test_corrupt_file_from_a_mirror_url_is_not_kept(server, cache):
    """A readable zip with an unreadable u.data: nothing stays cached, so a fixed mirror is used next time."""
    server.serve("/m/ml-100k.zip", make_zip({"u.data": b"\x00\xff garbage \x01"}))
    with pytest.raises(DataError, match="u.data") as err:
        prepare("ml-100k", source=server.base + "/m")
    assert "removed" in str(err.value)
    assert cache_files(cache) == []
    good = make_zip({"u.data": "1\t10\t5\t300\n2\t10\t4\t50\n"})
    server.serve("/m/ml-100k.zip", good)
    assert prepare("ml-100k", source=server.base + "/m").stats["interactions"] == 2
