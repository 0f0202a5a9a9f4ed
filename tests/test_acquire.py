"""The downloader against a real HTTP server on 127.0.0.1 serving archives built here."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import socket

import pytest

from helpers import leftovers, make_zip, sha256
from xlrec.data_prep import acquire
from xlrec.data_prep.acquire import SOURCES, Source, fetch, raw_dir
from xlrec.data_prep.dataset import prepare
from xlrec.errors import ConfigError, DataError

U_DATA = "1\t10\t5\t300\n1\t20\t3\t100\n2\t10\t4\t50\n2\t30\t1\t60\n3\t20\t2\t10\n"
U_ITEM = "10|Toy Story (1995)|01-Jan-1995\n20|GoldenEye (1995)|01-Jan-1995\n30|Four Rooms (1995)|01-Jan-1995\n"

pytestmark = pytest.mark.usefixtures("cache")  # every test on a private, empty data cache


ML100K_ZIP = make_zip({"u.data": U_DATA, "u.item": U_ITEM})


def table(url: str, body: bytes, **kw) -> dict[str, Source]:
    fields = {"sha256": sha256(body), "size": len(body), **kw}
    return {"ml-100k": Source(url=url, **fields)}


# ------------------------------------------------------------------------- official path


def test_download_verify_extract_and_reuse(server, cache):
    url = server.serve("/datasets/ml-100k.zip", ML100K_ZIP)
    root = raw_dir("ml-100k", sources=table(url, ML100K_ZIP))
    assert root == cache / "raw" / "ml-100k"
    assert (root / "u.data").read_text() == U_DATA  # flattened out of the zip's ml-100k/ folder
    assert (root / "u.item").read_text() == U_ITEM
    archive = cache / "downloads" / "ml-100k.zip"
    assert sha256(archive.read_bytes()) == sha256(ML100K_ZIP)
    assert leftovers(cache) == ["downloads/ml-100k.zip", "raw/ml-100k", "raw/ml-100k/u.data", "raw/ml-100k/u.item"]
    assert server.hits == ["/datasets/ml-100k.zip"]

    assert raw_dir("ml-100k", sources=table(url, ML100K_ZIP)) == root
    assert server.hits == ["/datasets/ml-100k.zip"]  # a finished raw/ folder is reused

    ds = prepare("ml-100k")  # no source: the downloaded copy in the cache
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (3, 3, 5)
    assert ds.seqs.titles[1] == "Toy Story (1995)"


@pytest.mark.parametrize("bad", ["sha256", "md5"])
def test_wrong_checksum_keeps_nothing(server, cache, bad):
    url = server.serve("/ml-100k.zip", ML100K_ZIP)
    digests = {"md5": hashlib.md5(ML100K_ZIP).hexdigest()} | {bad: "0" * (64 if bad == "sha256" else 32)}
    with pytest.raises(DataError, match="SHA-256" if bad == "sha256" else "MD5") as err:
        raw_dir("ml-100k", sources=table(url, ML100K_ZIP, **digests))
    assert url in str(err.value) and "--source" in str(err.value)
    assert leftovers(cache) == []
    assert server.hits == ["/ml-100k.zip"]  # a complete file with the wrong digest is not fetched again


def test_size_mismatch_stops_before_downloading(server, cache):
    url = server.serve("/ml-100k.zip", ML100K_ZIP)
    with pytest.raises(DataError, match=f"{len(ML100K_ZIP):,} bytes"):
        raw_dir("ml-100k", sources=table(url, ML100K_ZIP, size=len(ML100K_ZIP) + 1))
    assert leftovers(cache) == []


def test_truncated_transfer_is_retried_then_fails(server, cache):
    url = server.serve("/ml-100k.zip", ML100K_ZIP, mode="truncate")
    with pytest.raises(DataError, match=r"after 3 attempt.*ended after") as err:
        raw_dir("ml-100k", sources=table(url, ML100K_ZIP), retries=3, backoff=0)
    assert "--source" in str(err.value)
    assert server.hits == ["/ml-100k.zip"] * 3
    assert leftovers(cache) == []  # no .part, no archive, no raw folder


def test_truncated_transfer_without_checksum_fails(server, cache):
    """Even with nothing to compare against, a short body never becomes the archive."""
    url = server.serve("/ml-100k.zip", ML100K_ZIP, mode="truncate")
    dest = cache / "downloads" / "x.zip"
    with pytest.raises(DataError, match="ended after"):
        fetch(url, dest, check=acquire._check_zip, retries=1, backoff=0)
    assert leftovers(cache) == []


@pytest.mark.parametrize("cached", [b"garbage, not a zip", ML100K_ZIP[: len(ML100K_ZIP) // 2]])
def test_corrupt_cached_archive_is_refetched(server, cache, cached, capsys):
    url = server.serve("/ml-100k.zip", ML100K_ZIP)
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "ml-100k.zip").write_bytes(cached)
    root = raw_dir("ml-100k", sources=table(url, ML100K_ZIP))
    assert "corrupt" in capsys.readouterr().err
    assert server.hits == ["/ml-100k.zip"]
    assert (cache / "downloads" / "ml-100k.zip").read_bytes() == ML100K_ZIP
    assert (root / "u.data").read_text() == U_DATA


def test_verified_cached_archive_is_not_downloaded_again(server, cache):
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "ml-100k.zip").write_bytes(ML100K_ZIP)
    root = raw_dir("ml-100k", sources=table(server.base + "/ml-100k.zip", ML100K_ZIP))
    assert server.hits == []
    assert (root / "u.data").read_text() == U_DATA


def test_http_errors(server, cache):
    url = server.serve("/ml-100k.zip", b"", mode="error500")
    with pytest.raises(DataError, match="HTTP 500"):
        fetch(url, cache / "downloads" / "ml-100k.zip", sha256(b""), retries=2, backoff=0)
    assert server.hits == ["/ml-100k.zip"] * 2  # server errors are retried
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(server.base + "/missing.zip", cache / "downloads" / "missing.zip", sha256(b""), retries=3, backoff=0)
    assert server.hits.count("/missing.zip") == 1  # a missing file is not
    assert leftovers(cache) == []


def test_unreachable_server_says_how_to_work_offline(cache):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="XLREC_DATA_MIRROR") as err:
        raw_dir("ml-100k", sources=table(f"http://127.0.0.1:{port}/ml-100k.zip", ML100K_ZIP), backoff=0)
    assert "--source" in str(err.value)
    assert leftovers(cache) == []


def test_refuses_download_it_cannot_verify(server, cache):
    url = server.serve("/data.bin", b"payload")
    with pytest.raises(DataError, match="Refusing"):
        fetch(url, cache / "downloads" / "data.bin")
    assert server.hits == []


def test_unsafe_zip_is_not_unpacked(server, cache, tmp_path):
    body = make_zip({"u.data": U_DATA, "../../evil.txt": "x"}, top=None)
    url = server.serve("/ml-100k.zip", body)
    with pytest.raises(DataError, match="unsafe"):
        raw_dir("ml-100k", sources=table(url, body))
    assert not (cache / "raw" / "ml-100k").exists()
    assert not list(tmp_path.rglob("evil.txt"))
    assert [p.name for p in (cache / "raw").iterdir()] == []  # no temp folder left


def test_single_file_source_with_gzip_integrity_check(server, cache, capsys):
    reviews = "".join(
        f"{{'username': 'u{u}', 'product_id': '{i}', 'date': '2017-0{u}-1{i}'}}\n" for u in (1, 2, 3) for i in (1, 2)
    )
    body = gzip.compress(reviews.encode())
    url = server.serve("/steam_reviews.json.gz", body)
    sources = {"steam": Source(url=url, sha256=None, size=None, kind="file")}
    root = raw_dir("steam", sources=sources)
    assert (root / "steam_reviews.json.gz").read_bytes() == body
    assert sha256(body) in capsys.readouterr().err  # unverified download: its digest is printed for pinning
    ds = prepare("steam")
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (3, 2, 6)


def test_corrupt_gzip_without_checksum_is_refused(server, cache):
    body = bytearray(gzip.compress(b"{'username': 'a', 'product_id': '1', 'date': '2017-01-01'}\n" * 50))
    body[-8] ^= 0xFF  # break the CRC-32 in the gzip trailer
    url = server.serve("/steam_reviews.json.gz", bytes(body))
    with pytest.raises(DataError, match="gzip"):
        raw_dir("steam", sources={"steam": Source(url=url, sha256=None, size=None, kind="file")})
    assert leftovers(cache) == []


def test_unknown_dataset_without_source(cache):
    with pytest.raises(ConfigError, match="ml-3m"):
        raw_dir("ml-3m")


def test_progress_bar_only_on_a_terminal(server, cache):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    url = server.serve("/ml-100k.zip", ML100K_ZIP)
    tty, pipe = Terminal(), io.StringIO()
    fetch(url, cache / "a" / "ml-100k.zip", sha256(ML100K_ZIP), len(ML100K_ZIP), stream=tty)
    fetch(url, cache / "b" / "ml-100k.zip", sha256(ML100K_ZIP), len(ML100K_ZIP), stream=pipe)
    out = tty.getvalue()
    assert out.startswith("\rml-100k.zip") and "100%" in out and out.endswith("\n")
    assert pipe.getvalue() == ""


def test_official_table():
    hexd = re.compile(r"[0-9a-f]{64}")
    for name, spec in SOURCES.items():
        assert spec.url.startswith("https://")
        assert spec.sha256 is None or hexd.fullmatch(spec.sha256), name
    for name in ("ml-100k", "ml-1m", "ml-20m"):  # verified by SHA-256 and size
        assert SOURCES[name].sha256 and SOURCES[name].size and SOURCES[name].filename == f"{name}.zip"
    assert SOURCES["ml-10m"].size and SOURCES["ml-10m"].md5  # no SHA-256 known: size + MD5
    assert SOURCES["steam"].filename == "steam_reviews.json.gz" and SOURCES["steam"].kind == "file"


# ---------------------------------------------------------------------------- mirrors


def test_mirror_directory_from_env(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("XLREC_DATA_MIRROR", str(shared_data))
    assert raw_dir("ml-100k") == shared_data / "ml-100k"
    assert (raw_dir("ml-100k") / "u.data").is_file()
    other = tmp_path / "other"
    (other / "ml-100k").mkdir(parents=True)
    assert raw_dir("ml-100k", str(other)) == other / "ml-100k"  # --source wins over the variable
    with pytest.raises(DataError, match=r"has no folder ml-20m/") as err:
        raw_dir("ml-20m")  # the shared mirror holds ml-100k and ml-1m only
    assert str(shared_data) in str(err.value)


def test_mirror_base_url(server, cache, monkeypatch):
    body = make_zip({"u.data": U_DATA, "u.item": U_ITEM}, top=None)  # files at the top of the zip
    server.serve("/mirror/ml-100k.zip", body)
    monkeypatch.setenv("XLREC_DATA_MIRROR", server.base + "/mirror/")
    root = raw_dir("ml-100k")
    assert root == cache / "raw" / "ml-100k"
    assert (root / "u.data").read_text() == U_DATA
    assert server.hits == ["/mirror/ml-100k.zip.sha256", "/mirror/ml-100k.zip"]  # no sidecar: zip check only


def test_mirror_base_url_with_checksum_file(server, cache):
    server.serve("/m/ml-100k.zip", ML100K_ZIP)
    server.serve("/m/ml-100k.zip.sha256", f"{'1' * 64}  ml-100k.zip\n".encode())
    with pytest.raises(DataError, match="SHA-256"):
        raw_dir("ml-100k", server.base + "/m")
    assert leftovers(cache) == []
    server.serve("/m/ml-100k.zip.sha256", f"{sha256(ML100K_ZIP)}  ml-100k.zip\n".encode())
    ds = prepare("ml-100k", source=server.base + "/m")
    assert ds.stats["interactions"] == 5


def test_mirror_base_url_not_a_zip(server, cache):
    server.serve("/m/ml-100k.zip", b"<html>not found</html>")
    with pytest.raises(DataError, match="not a valid zip"):
        raw_dir("ml-100k", server.base + "/m")
    assert leftovers(cache) == []
