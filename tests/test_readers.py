"""Readers + preprocessing + cache, through `prepare`, on small files in the real formats."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from xlrec.config import resolve_config
from xlrec.data_prep.dataset import prepare
from xlrec.errors import ConfigError, DataError
from xlrec.settings import PrepConfig

pytestmark = pytest.mark.usefixtures("cache")  # every test on a private, empty data cache


@pytest.fixture
def mirror(tmp_path) -> Path:
    path = tmp_path / "mirror"
    path.mkdir()
    return path


def write(path: Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def sequences(ds) -> dict:
    """Raw user id -> list of raw item ids, in sequence order."""
    s = ds.seqs
    return {
        _py(s.user_ids[u]): [_py(s.item_ids[i]) for i in s.items[s.offsets[u] : s.offsets[u + 1]]]
        for u in range(s.num_users)
    }


def _py(v):
    return v.item() if hasattr(v, "item") else v


def check_invariants(ds) -> None:
    s = ds.seqs
    assert sorted(set(s.items.tolist())) == list(range(1, s.num_items + 1))  # contiguous 1..N, 0 = padding
    assert s.offsets[0] == 0 and s.offsets[-1] == len(s.items) and np.all(np.diff(s.offsets) > 0)
    for u in range(s.num_users):
        assert np.all(np.diff(s.timestamps[s.offsets[u] : s.offsets[u + 1]]) >= 0)  # chronological
    assert len(s.titles) == s.num_items + 1 and s.titles[0] == "<pad>"


# User 1 has two ratings at t=200; item 40's row comes first in the file, so it must stay first.
ML1M_RATINGS = "1::10::5::300\n1::20::3::100\n1::40::4::200\n1::30::4::200\n2::10::5::50\n2::30::1::60\n3::20::2::10\n"
ML1M_MOVIES = (
    "10::Toy Story (1995)::Animation\n20::Heat (1995)::Action\n30::Léon (1994)::Drama\n40::Fargo (1996)::Crime\n"
)


def test_ml1m(mirror):
    write(mirror / "ml-1m" / "ratings.dat", ML1M_RATINGS)
    write(mirror / "ml-1m" / "movies.dat", ML1M_MOVIES, encoding="latin-1")  # the real file is latin-1
    ds = prepare("ml-1m", PrepConfig(), source=str(mirror))
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (3, 4, 7)
    assert sequences(ds) == {1: [20, 40, 30, 10], 2: [10, 30], 3: [20]}  # time, then file order
    check_invariants(ds)
    titles = dict(zip(ds.seqs.item_ids[1:].tolist(), ds.seqs.titles[1:]))
    assert titles == {10: "Toy Story (1995)", 20: "Heat (1995)", 30: "Léon (1994)", 40: "Fargo (1996)"}
    assert ds.seqs.timestamps[:4].tolist() == [100, 200, 200, 300]


def test_ml1m_titles_in_utf8_as_the_sasrec_copy_has_them(mirror):
    write(mirror / "ml-1m" / "ratings.dat", ML1M_RATINGS)
    # one line UTF-8 (as in ../shared/data/ml-1m), one latin-1 (the original): both read as written
    (mirror / "ml-1m" / "movies.dat").write_bytes(
        "10::Alien³ (1992)::Action\n".encode() + "30::Léon (1994)::Drama\n".encode("latin-1")
    )
    ds = prepare("ml-1m", PrepConfig(), source=str(mirror))
    titles = dict(zip(ds.seqs.item_ids[1:].tolist(), ds.seqs.titles[1:]))
    assert (titles[10], titles[30]) == ("Alien³ (1992)", "Léon (1994)")


def test_ml10m_in_subfolder(mirror):
    sub = mirror / "ml-10m" / "ml-10M100K"
    write(sub / "ratings.dat", "5::1::4.5::20\n5::2::3.5::10\n7::2::0.5::10\n7::1::5::10\n")
    write(sub / "movies.dat", "1::Toy Story (1995)::Adventure|Animation\n2::Jumanji (1995)::Adventure\n")
    ds = prepare("ml-10m", PrepConfig(), source=str(mirror))
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (2, 2, 4)
    assert sequences(ds) == {5: [2, 1], 7: [2, 1]}
    assert ds.seqs.titles[1:] == ["Toy Story (1995)", "Jumanji (1995)"]
    check_invariants(ds)
    ds4 = prepare("ml-10m", PrepConfig(min_rating=4.0), source=str(mirror))  # half-star ratings parse as floats
    assert sequences(ds4) == {5: [1], 7: [1]}


def test_ml20m_csv_with_header(mirror):
    write(
        mirror / "ml-20m" / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.5,1112484676\n2,2,4.0,974820889\n"
        "2,29,4.0,974820889\n2,32,1.0,974820691\n",
    )
    write(
        mirror / "ml-20m" / "movies.csv",
        'movieId,title,genres\n2,Jumanji (1995),Adventure\n29,"City of Lost Children, The (1995)",Drama\n'
        "32,Twelve Monkeys (a.k.a. 12 Monkeys) (1995),Sci-Fi\n",
    )
    ds = prepare("ml-20m", PrepConfig(), source=str(mirror))
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (2, 3, 5)
    assert sequences(ds) == {1: [29, 2], 2: [32, 2, 29]}
    titles = dict(zip(ds.seqs.item_ids[1:].tolist(), ds.seqs.titles[1:]))
    assert titles[29] == "City of Lost Children, The (1995)"
    check_invariants(ds)


def test_ml20m_files_directly_in_folder(mirror):
    write(mirror / "ml-20m" / "ml-20m" / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,5\n")
    assert prepare("ml-20m", source=str(mirror)).stats["interactions"] == 1
    write(mirror / "flat" / "ml-20m" / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,5\n1,3,3,6\n")
    assert prepare("ml-20m", source=str(mirror / "flat")).stats["interactions"] == 2


STEAM_LINES = [
    "{'username': 'alice', 'hours': 3.1, 'product_id': '725280', 'date': '2017-12-17', 'text': 'fun'}",
    "{'username': 'bob', 'product_id': '328100', 'date': '2017-10-20', 'text': \"it's ok\"}",
    "{'username': 'alice', 'product_id': '35140', 'date': '2017-12-17', 'early_access': False}",
    "{'username': 'alice', 'product_id': '328100', 'date': '2016-01-02'}",
    "{'username': 'carol', 'product_id': '725280', 'date': '2018-01-04'}",
]


def test_steam(mirror):
    write(mirror / "steam" / "steam_reviews.json.gz", gzip.compress("\n".join(STEAM_LINES).encode() + b"\n"))
    write(
        mirror / "steam" / "steam_games.json.gz",
        gzip.compress(
            b"{'id': '725280', 'app_name': 'Psi Project'}\n{'id': '35140', 'app_name': 'Batman: Arkham Asylum'}\n"
        ),
    )
    ds = prepare("steam", PrepConfig(), source=str(mirror))
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (3, 3, 5)
    # alice: 2016 first, then the two reviews of 2017-12-17 in file order
    assert sequences(ds) == {"alice": [328100, 725280, 35140], "bob": [328100], "carol": [725280]}
    titles = dict(zip(ds.seqs.item_ids[1:].tolist(), ds.seqs.titles[1:]))
    assert titles == {35140: "Batman: Arkham Asylum", 328100: "Item 328100", 725280: "Psi Project"}
    check_invariants(ds)
    again = prepare("steam", PrepConfig(), source=str(mirror))  # string user ids survive the .npz cache
    assert again.from_cache and sequences(again) == sequences(ds)


# k-core with users >= 2 and items >= 2. One pass drops items 5 and 6 (one rating each), then
# users 4 and 5 (one rating left); only a second pass sees that items 3 and 4 now have one
# rating each, which drops user 3. The fixed point is users {1, 2} x items {1, 2}.
KCORE = (
    "1::1::5::1\n1::2::5::2\n2::1::5::1\n2::2::5::2\n3::3::5::1\n3::4::5::2\n4::4::5::1\n4::5::5::2\n"
    "5::3::5::1\n5::6::5::2\n"
)


def test_kcore_iterates_to_fixed_point(mirror):
    write(mirror / "ml-1m" / "ratings.dat", KCORE)
    once = prepare(
        "ml-1m", PrepConfig(min_user_interactions=2, min_item_interactions=2, kcore_iterate=False), source=str(mirror)
    )
    assert sequences(once) == {1: [1, 2], 2: [1, 2], 3: [3, 4]}  # one pass is not enough
    fixed = prepare("ml-1m", PrepConfig(min_user_interactions=2, min_item_interactions=2), source=str(mirror))
    assert sequences(fixed) == {1: [1, 2], 2: [1, 2]}
    assert (fixed.stats["users"], fixed.stats["items"], fixed.stats["interactions"]) == (2, 2, 4)
    check_invariants(fixed)


def test_ml1m_preset_drops_items_under_5(mirror):
    prep = resolve_config(dataset="ml-1m").prep
    assert prep.min_item_interactions == 5 and prep.min_user_interactions == 0
    lines = [f"{u}::100::4::{u}" for u in range(1, 6)] + [f"{u}::200::4::{u + 10}" for u in range(1, 5)]
    lines.append("9::300::4::1")
    write(mirror / "ml-1m" / "ratings.dat", "\n".join(lines) + "\n")
    ds = prepare("ml-1m", prep, source=str(mirror))
    assert ds.seqs.item_ids[1:].tolist() == [100]  # 200 (4 ratings) and 300 (1) are dropped
    assert (ds.stats["users"], ds.stats["interactions"]) == (5, 5)  # user 9 had only item 300
    check_invariants(ds)


def test_cache(mirror, cache):
    ratings = write(mirror / "ml-1m" / "ratings.dat", ML1M_RATINGS)
    first = prepare("ml-1m", PrepConfig(), source=str(mirror))
    assert not first.from_cache and first.cache_path.is_file()
    assert first.cache_path.parent == cache / "processed"
    second = prepare("ml-1m", PrepConfig(), source=str(mirror))
    assert second.from_cache and second.cache_path == first.cache_path
    assert second.content_hash == first.content_hash and sequences(second) == sequences(first)
    assert second.seqs.titles == first.seqs.titles

    other = prepare("ml-1m", PrepConfig(min_user_interactions=2), source=str(mirror))
    assert not other.from_cache and other.cache_path != first.cache_path
    assert other.stats["users"] == 2

    ratings.write_text(ML1M_RATINGS + "4::10::3::400\n")
    changed = prepare("ml-1m", PrepConfig(), source=str(mirror))
    assert not changed.from_cache and changed.cache_path != first.cache_path
    assert changed.stats["interactions"] == 8
    ratings.write_text(ML1M_RATINGS.replace("2::30::1::60", "2::30::1::61"))  # same size, other bytes
    edited = prepare("ml-1m", PrepConfig(), source=str(mirror))
    assert not edited.from_cache and edited.cache_path not in (first.cache_path, changed.cache_path)


def test_unreadable_cache_is_rebuilt(mirror):
    write(mirror / "ml-1m" / "ratings.dat", ML1M_RATINGS)
    first = prepare("ml-1m", PrepConfig(), source=str(mirror))
    first.cache_path.write_bytes(b"not an npz")
    again = prepare("ml-1m", PrepConfig(), source=str(mirror))
    assert not again.from_cache and sequences(again) == sequences(first)
    assert prepare("ml-1m", PrepConfig(), source=str(mirror)).from_cache


BAD_INPUTS = {
    # name: (dataset, relative path, content or None for "missing", expected line or None)
    "missing": ("ml-1m", "ratings.dat", None, None),
    "empty": ("ml-1m", "ratings.dat", "", 1),
    "too few columns": ("ml-1m", "ratings.dat", "1::10::5::300\n1::20::3::100\n1::30::4\n1::40::4::5\n", 3),
    "too many columns": ("ml-1m", "ratings.dat", "1::10::5::300\n1::20::3::100\n1::30::4::5::6\n", 3),
    "non-integer user": ("ml-1m", "ratings.dat", "1::10::5::300\nabc::20::3::100\n1::30::4::5\n", 2),
    "non-numeric rating": ("ml-1m", "ratings.dat", "1::10::5::300\n1::20::x::100\n", 2),
    "blank line": ("ml-100k", "u.data", "1\t10\t5\t300\n\n1\t20\t3\t100\n", 2),
    "csv columns": ("ml-20m", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,5\n1,3,3.5\n", 3),
    "csv user": ("ml-20m", "ratings.csv", "userId,movieId,rating,timestamp\nu1,2,3.5,5\n", 2),
    "10m columns": ("ml-10m", "ml-10M100K/ratings.dat", "1::2::3.5::4\n1::2::3.5::4\n1::2\n", 3),
    "steam date": (
        "steam",
        "steam_reviews.json.gz",
        "{'username': 'a', 'product_id': '1', 'date': '2017-12-17'}\n"
        "{'username': 'a', 'product_id': '2', 'date': 'December 17'}\n",
        2,
    ),
    "steam keys": (
        "steam",
        "steam_reviews.json.gz",
        "{'username': 'a', 'product_id': '1', 'date': '2017-12-17'}\n"
        "{'username': 'a', 'product_id': '2', 'date': '2017-12-17'}\n{'user': 'b'}\n",
        3,
    ),
    "steam literal": ("steam", "steam_reviews.json.gz", "{'username': 'a', 'product_id': \n", 1),
    "steam empty": ("steam", "steam_reviews.json.gz", "", 1),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_file_and_line(mirror, cache, case):
    name, rel, content, line = BAD_INPUTS[case]
    path = mirror / name / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is not None:
        write(path, gzip.compress(content.encode()) if rel.endswith(".gz") else content)
    with pytest.raises(DataError) as err:
        prepare(name, PrepConfig(), source=str(mirror))
    message = str(err.value)
    assert str(path) in message
    if line is not None:
        assert f"line {line}" in message
    assert "\n" not in message  # one paragraph
    assert not (cache / "processed").exists() or not any((cache / "processed").iterdir())


def test_missing_dataset_folder_and_unknown_name(mirror, cache):
    with pytest.raises(DataError, match="no folder ml-1m/"):
        prepare("ml-1m", PrepConfig(), source=str(mirror))
    with pytest.raises(ConfigError, match="ml-5m"):
        prepare("ml-5m", PrepConfig(), source=str(mirror))
    assert not (cache / "processed").exists()


def test_real_ml100k_from_mirror(shared_data, monkeypatch):
    monkeypatch.setenv("XLREC_DATA_MIRROR", str(shared_data))
    ds = prepare("ml-100k", PrepConfig())
    st = ds.stats
    assert (st["users"], st["items"], st["interactions"]) == (943, 1682, 100000)
    assert round(st["avg_len"], 2) == 106.04
    assert round(st["sparsity"], 5) == 0.93695
    assert ds.seqs.titles[1] == "Toy Story (1995)"  # raw item 1
    check_invariants(ds)
    assert prepare("ml-100k", PrepConfig()).from_cache


def genres_of(ds) -> dict:
    return dict(zip(ds.seqs.item_ids[1:].tolist(), ds.seqs.genres[1:]))


def test_movielens_genres_are_read_per_format_and_survive_the_cache(mirror):
    """Item genres (the report's genre colouring and the genre cold-start fallback): ML-100K's u.item
    flags named by u.genre, ML-1M/10M's `::` field, ML-20M's csv column; 'unknown' and
    '(no genres listed)' mean none; a second prepare reads them back from the cache."""
    write(mirror / "ml-100k" / "u.data", "1\t10\t5\t300\n1\t20\t3\t100\n2\t10\t4\t50\n")
    write(mirror / "ml-100k" / "u.genre", "unknown|0\nAction|1\nComedy|2\n\n")
    flags = {10: "0|1|1", 20: "1|0|0"}
    write(
        mirror / "ml-100k" / "u.item",
        "".join(f"{i}|Film {i} (1995)|01-Jan-1995||http://x|{f}\n" for i, f in flags.items()),
        encoding="latin-1",
    )
    for _ in range(2):  # built, then from the cache
        assert genres_of(prepare("ml-100k", PrepConfig(), source=str(mirror))) == {10: "Action|Comedy", 20: ""}
    write(mirror / "ml-1m" / "ratings.dat", ML1M_RATINGS)
    write(mirror / "ml-1m" / "movies.dat", ML1M_MOVIES.replace("::Crime", "::Crime|Thriller"), encoding="latin-1")
    assert genres_of(prepare("ml-1m", PrepConfig(), source=str(mirror))) == {
        10: "Animation",
        20: "Action",
        30: "Drama",
        40: "Crime|Thriller",
    }
    write(mirror / "ml-1m" / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\nbad line\n")
    ds = prepare("ml-1m", PrepConfig(), source=str(mirror))  # users.dat is part of the cache key
    assert dict(zip(ds.seqs.user_ids.tolist(), ds.seqs.groups)) == {1: "F|1|10", 2: "M|56|16", 3: ""}
    write(mirror / "ml-20m" / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,5\n1,3,3,6\n")
    write(
        mirror / "ml-20m" / "movies.csv", "movieId,title,genres\n2,A (1995),Drama|War\n3,B (1996),(no genres listed)\n"
    )
    assert genres_of(prepare("ml-20m", PrepConfig(), source=str(mirror))) == {2: "Drama|War", 3: ""}
    write(mirror / "ml-10m" / "ratings.dat", "5::1::4.5::20\n5::2::3.5::10\n")  # no movies.dat: no genres at all
    assert prepare("ml-10m", PrepConfig(), source=str(mirror)).seqs.genres == []


def test_cold_start_users_get_the_genre_and_demographic_fallbacks_beside_popularity(mirror):
    """Cold users (women, 25-34, writers) who saw one film of a genre few watch: the popularity
    fallback ranks other films first and misses their next film; the genre profile ranks it first;
    the demographic fallback ranks it third, after the two films their group watched as often and
    the whole audience more."""
    from xlrec.experiment import assemble

    a, b = range(1, 16), range(16, 31)  # genre A (rarely watched), genre B (the hits)
    rows, users = [], []
    for u in range(1, 11):  # the cold users' group: film 2 and films 16-17 in training (18, 19: val, test)
        rows += [(u, i, t) for t, i in enumerate([3 + u % 13, 2, 16, 17, 18, 19])]
        users.append(f"{u}|{25 + u % 5}|F|writer|00000")
    for u in range(11, 21):  # another group: every B film
        rows += [(u, i, t) for t, i in enumerate([3 + u % 13, *b])]
        users.append(f"{u}|{50 + u % 5}|M|other|00000")
    rows += [(100 + u, i, t) for u in range(3) for t, i in enumerate([1, 2])]  # cold: saw 1, next is 2
    users += [f"{100 + u}|30|F|writer|00000" for u in range(3)]
    write(mirror / "ml-100k" / "u.data", "".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in rows))
    write(mirror / "ml-100k" / "u.user", "\n".join(users) + "\n")
    write(mirror / "ml-100k" / "u.genre", "unknown|0\nA|1\nB|2\n")
    flags = {i: "0|1|0" for i in a} | {i: "0|0|1" for i in b}
    write(mirror / "ml-100k" / "u.item", "".join(f"{i}|Film {i}|||x|{f}\n" for i, f in flags.items()))
    cfg = resolve_config("pop", "ml-100k", overrides={"source": str(mirror), "cold_start_threshold": 3})
    data = prepare("ml-100k", cfg.prep, cfg.source)
    assert data.seqs.groups[data.seqs.user_ids.tolist().index(100)] == "F|25|writer"  # age 30: group 25-34
    cold = assemble(cfg, data).cold_start_metrics()
    assert cold["users"] == 3
    assert cold["pop"]["recall@10"] == 0.0 and cold["model"] == cold["pop"]  # film 2 ties at rank 14
    assert cold["genre"] == {"recall@10": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0}
    assert cold["demographic"] == pytest.approx({"recall@10": 1.0, "mrr@10": 1 / 3, "ndcg@10": 0.5})
