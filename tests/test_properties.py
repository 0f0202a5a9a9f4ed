"""Property-based tests (hypothesis): any input is either accepted or refused with our error type.

The config loader turns any YAML document or key-value map into a valid TrainConfig (every field
of its annotated type) or a ConfigError; the dataset readers turn any file into prepared data or
a DataError, and a failed prepare leaves no processed cache entry behind. Examples are bounded
(max_examples, small sizes) so the file runs in seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import math
import os
import tempfile
import typing
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlrec.catalog.models import BUILTIN, settings_class
from xlrec.config import resolve_config, setting_names
from xlrec.data_prep.dataset import prepare
from xlrec.errors import ConfigError, DataError
from xlrec.settings import PREP_HINTS, PrepConfig, TrainConfig

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRAIN_KEYS = sorted(setting_names() - set(PREP_HINTS))  # the run's and every model family's, and `prep`
PREP_KEYS = sorted(PREP_HINTS)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-3, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.text(max_size=20),
    st.sampled_from(["true", "no", "1e-3", "nan", "64", "cosine", "window", "cpu", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from(TRAIN_KEYS + PREP_KEYS), st.text(max_size=12))
override_maps = st.dictionaries(keys, values, max_size=6) | st.fixed_dictionaries(
    {}, optional={"prep": st.dictionaries(st.sampled_from(PREP_KEYS) | st.text(max_size=6), values, max_size=3)}
)


def _check_types(cfg: TrainConfig) -> None:
    """Every field holds exactly its annotated type (a bool is not an int, a float is finite)."""
    assert isinstance(cfg.prep, PrepConfig) and type(cfg.arch) is settings_class(cfg.model)
    for obj in (cfg, cfg.prep, cfg.arch):
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            if f.name in ("prep", "arch"):
                continue
            value, hint = getattr(obj, f.name), hints[f.name]
            union = type(None) in typing.get_args(hint)
            options = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
            if value is None:
                assert type(None) in typing.get_args(hint), f.name
                continue
            if typing.get_origin(options[0]) is list:
                assert isinstance(value, list) and all(type(v) is int for v in value), f.name
            else:
                assert type(value) in options, (f.name, value)
                if type(value) is float:
                    assert math.isfinite(value), f.name


def _resolve(model, dataset, config_file=None, overrides=None):
    try:
        cfg = resolve_config(model, dataset, config_file, overrides)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)  # one paragraph
        return None
    _check_types(cfg)
    return cfg


@SETTINGS
@given(
    model=st.sampled_from(list(BUILTIN)) | st.text(max_size=6),
    dataset=st.sampled_from(["ml-100k", "ml-1m", "synthetic", "steam"]),
    overrides=override_maps,
)
def test_any_override_map_gives_a_valid_config_or_a_config_error(model, dataset, overrides):
    _resolve(model, dataset, overrides=overrides)


yaml_docs = st.one_of(
    st.dictionaries(keys, values, max_size=6).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    override_maps.map(lambda d: yaml.safe_dump(d)),
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "epochs: ",
                "lr: ",
                "prep:\n  ",
                "- ",
                "[",
                "{",
                "}",
                ": ",
                "!!python/object ",
                "&a ",
                "*a ",
                "'",
                '"',
                "\n",
                "  ",
                "1e-3",
                ".nan",
                "yes",
                "~",
                "\t",
                "#",
            ]
        ),
        max_size=25,
    ).map("".join),
).map(lambda s: s.encode("utf-8")) | st.binary(max_size=200)


@SETTINGS
@given(doc=yaml_docs, model=st.sampled_from(["gru4rec", "sasrec"]))
def test_any_yaml_document_gives_a_valid_config_or_a_config_error(doc, model):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(doc)
        _resolve(model, None, path)


# --- dataset readers -------------------------------------------------------------------------------

ids = st.integers(min_value=1, max_value=30).map(str)
good_row = st.tuples(ids, ids, st.sampled_from(["1", "3", "4.5", "5"]), st.integers(0, 10**9).map(str))
bad_field = st.one_of(
    st.just(""),
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.just("x" * 5000),
    st.just("\x00"),
    st.sampled_from(["１", "²", "٣", "nan", "inf", "-0", "1e3", " 7", "7 "]),
)
row = st.one_of(good_row.map(list), good_row.map(list), st.lists(st.one_of(ids, bad_field), min_size=0, max_size=6))


@st.composite
def ratings_files(draw, sep: str) -> bytes:
    rows = draw(st.lists(row, max_size=40))
    if rows and draw(st.booleans()):  # duplicate events (same user, item and time)
        rows += draw(st.lists(st.sampled_from(rows), max_size=5))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = ending.join(sep.join(r) for r in rows) + draw(st.sampled_from(["", ending, ending * 2]))
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        data = draw(st.binary(max_size=300))
    return data


@contextlib.contextmanager
def _scratch():
    """A fresh mirror and XLREC_DATA_DIR per example (hypothesis reruns one test function many times)."""
    old = os.environ.get("XLREC_DATA_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XLREC_DATA_DIR"] = str(Path(tmp) / "cache")
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("XLREC_DATA_DIR", None)
            else:
                os.environ["XLREC_DATA_DIR"] = old


def _prepare_or_data_error(name: str, root: Path, prep: PrepConfig | None = None) -> None:
    cache = Path(os.environ["XLREC_DATA_DIR"]) / "processed"
    try:
        ds = prepare(name, prep or PrepConfig(), source=str(root))
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert not cache.exists() or not any(cache.iterdir()), "a failed prepare left a processed entry"
        return
    s = ds.seqs
    assert s.offsets[0] == 0 and s.offsets[-1] == len(s.items) and np.all(np.diff(s.offsets) > 0)
    assert sorted(set(s.items.tolist())) == list(range(1, s.num_items + 1))
    assert len(s.titles) == s.num_items + 1
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # exactly the one finished entry


@SETTINGS
@given(
    data=ratings_files("\t"),
    items=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    min_rating=st.none() | st.floats(0, 6),
)
def test_ml100k_reader_parses_or_raises_data_error(data, items, min_rating):
    with _scratch() as tmp:
        root = tmp / "mirror" / "ml-100k"
        root.mkdir(parents=True)
        (root / "u.data").write_bytes(data)
        (root / "u.item").write_text(items.replace("\t", "|"), encoding="latin-1", errors="replace")
        _prepare_or_data_error("ml-100k", root.parent, PrepConfig(min_rating=min_rating))


@SETTINGS
@given(data=ratings_files("::"))
def test_ml1m_reader_parses_or_raises_data_error(data):
    with _scratch() as tmp:
        root = tmp / "mirror" / "ml-1m"
        root.mkdir(parents=True)
        (root / "ratings.dat").write_bytes(data)
        _prepare_or_data_error("ml-1m", root.parent)


@SETTINGS
@given(
    data=ratings_files(","),
    header=st.sampled_from([b"userId,movieId,rating,timestamp\n", b"", b"a,b\n"]),
    movies=st.binary(max_size=200) | st.text(max_size=120).map(lambda t: ("movieId,title\n" + t).encode()),
)
def test_ml20m_reader_parses_or_raises_data_error(data, header, movies):
    with _scratch() as tmp:
        root = tmp / "mirror" / "ml-20m"
        root.mkdir(parents=True)
        (root / "ratings.csv").write_bytes(header + data)
        (root / "movies.csv").write_bytes(movies)
        _prepare_or_data_error("ml-20m", root.parent)


review = st.fixed_dictionaries(
    {
        "username": st.text(max_size=8) | st.integers(),
        "product_id": ids | bad_field,
        "date": st.sampled_from(["2017-01-02", "2018-12-31"]) | st.text(max_size=10),
    }
)
steam_line = st.one_of(
    review.map(repr),
    review.map(repr),
    st.text(max_size=40),
    st.sampled_from(["{[1]: 2}", "{'a': {1, [2]}}", "[" * 200, "{'username': 1}", "1e999"]),
)


@SETTINGS
@given(
    lines=st.lists(steam_line, max_size=20),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
    compress=st.integers(0, 9),
    games=st.lists(steam_line, max_size=5),
)
def test_steam_reader_parses_or_raises_data_error(lines, encoding, compress, games):
    with _scratch() as tmp:
        root = tmp / "mirror" / "steam"
        root.mkdir(parents=True)
        body = "\n".join(lines).encode(encoding, errors="replace")
        (root / "steam_reviews.json.gz").write_bytes(gzip.compress(body) if compress else body)
        games_body = "\n".join(games).encode(encoding, errors="replace")
        (root / "steam_games.json.gz").write_bytes(gzip.compress(games_body) if compress != 1 else games_body[:50])
        _prepare_or_data_error("steam", root.parent)
