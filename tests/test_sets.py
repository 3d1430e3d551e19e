"""Filtering shards for a concept and building the forget / retain sets."""

import tarfile

import pytest

from pipeline.datasets.shards import list_shards, read_metadata
from pipeline.errors import DataError
from pipeline.sets.build import SetsConfig, build_sets
from pipeline.sets.filter import filter_shards
from pipeline.sets.match import ConceptMatcher

from .helpers import make_params


def _keys(path):
    with tarfile.open(path) as tf:
        return {n.split(".", 1)[0] for n in tf.getnames()}


def test_filter_finds_every_mention_and_caps(micro_world):
    shards = list_shards(micro_world / "laion")
    m = ConceptMatcher("Elon Musk")
    full = filter_shards(shards, m, 10_000)
    expected = sum(m(c) for s in shards for c in read_metadata(s)["caption"])
    assert len(full.rows) == expected == sum(full.per_shard.values()) > 0
    capped = filter_shards(shards, m, 2)
    assert len(capped.rows) == 2 and capped.capped and capped.per_shard == full.per_shard


def test_filter_with_zero_matches_is_a_clear_error(micro_world):
    with pytest.raises(DataError, match=r"no caption mentions 'Nobody Known'.*00000, 00001"):
        filter_shards(list_shards(micro_world / "laion"), ConceptMatcher("Nobody Known"), 10)


def test_build_sets_splits_and_excludes(micro_world, tmp_path):
    shards = list_shards(micro_world / "laion")
    m = ConceptMatcher("Elon Musk", ["Taylor Swift"])  # enough matches in a micro world
    rows = filter_shards(shards, m, 10_000).rows
    cfg = SetsConfig(seed=0, test_fraction=0.5, n_retain=20, n_retain_val=10, n_nonmembers=8)
    man = build_sets(shards, rows, m, cfg, tmp_path, list_shards(micro_world / "holdout"))
    search, test = _keys(tmp_path / "forget_search.tar"), _keys(tmp_path / "forget_test.tar")
    retain, val = _keys(tmp_path / "retain.tar"), _keys(tmp_path / "retain_val.tar")
    assert search and test and not search & test
    assert search | test == {r["key"] for r in rows}
    assert len(retain) == 20 and len(val) == 10 and not retain & val
    captions = {k: c for s in shards for k, c in zip(read_metadata(s)["key"], read_metadata(s)["caption"])}
    assert not any(m(captions[k]) for k in retain | val)  # no mention of the concept leaks in
    assert man["splits"]["nonmembers"]["n"] == 8
    assert set(man["inputs"]) >= {"00000.tar", "00001.tar"}
    again = build_sets(shards, rows, m, cfg, tmp_path / "again", list_shards(micro_world / "holdout"))
    assert again["splits"] == man["splits"]  # seeded


def test_build_sets_needs_two_forget_samples(micro_world, tmp_path):
    shards = list_shards(micro_world / "laion")
    rows = filter_shards(shards, ConceptMatcher("Elon Musk"), 1).rows
    with pytest.raises(DataError, match="cannot be split"):
        build_sets(shards, rows, ConceptMatcher("Elon Musk"),
                   SetsConfig.from_params(make_params().sets, 0, make_params().data), tmp_path)


def test_build_many_gives_each_concept_its_lone_split_and_a_retain_that_names_none(micro_world,
                                                                                     tmp_path):
    from pipeline.sets.many import build_many, concept_dir

    shards = list_shards(micro_world / "laion")
    cfg = SetsConfig(seed=0, test_fraction=0.5, n_retain=20, n_retain_val=10, n_nonmembers=0)
    names = ["Elon Musk", "Taylor Swift"]
    rows = {n: filter_shards(shards, ConceptMatcher(n), 10_000).rows for n in names}
    anyone = ConceptMatcher(names[0], names[1:])
    man = build_many(shards, rows, anyone, cfg, tmp_path / "many" / "concepts", tmp_path / "many")
    captions = {k: c for s in shards for k, c in zip(read_metadata(s)["key"], read_metadata(s)["caption"])}
    for n in names:  # the same splits the concept gets when built alone
        alone = tmp_path / n
        build_sets(shards, rows[n], ConceptMatcher(n), cfg, alone)
        for split in ("forget_search", "forget_test"):
            assert _keys(concept_dir(tmp_path / "many" / "concepts", n) / f"{split}.tar") == \
                _keys(alone / f"{split}.tar")
        assert man["concepts"][n]["forget_test"]["n"] == len(_keys(alone / "forget_test.tar"))
    retain = _keys(tmp_path / "many" / "retain.tar") | _keys(tmp_path / "many" / "retain_val.tar")
    assert len(retain) == 30 and not any(anyone(captions[k]) for k in retain)


def test_worker_processes_give_the_same_index_sets_and_bytes(micro_world, tmp_path):
    """``data.workers``: the shard scans over 2 processes give the serial run's index rows,
    split tars and manifest, byte for byte; a worker's error reaches the caller as itself."""
    import dataclasses
    import json

    from pipeline.sets.build import collect

    shards = list_shards(micro_world / "laion")
    holdout = list_shards(micro_world / "holdout")
    m = ConceptMatcher("Elon Musk", ["Taylor Swift"])
    cfg = SetsConfig(seed=0, test_fraction=0.5, n_retain=20, n_retain_val=10, n_nonmembers=8)
    out = {}
    for workers in (1, 2):
        rows = filter_shards(shards, m, 10_000, workers=workers)
        man = build_sets(shards, rows.rows, m, dataclasses.replace(cfg, workers=workers),
                         tmp_path / str(workers), holdout)
        tars = {p.name: p.read_bytes() for p in sorted((tmp_path / str(workers)).glob("*.tar"))}
        out[workers] = (rows, json.dumps(man, sort_keys=True), tars)
    assert out[1] == out[2] and len(out[1][2]) == 5
    wanted = {(s.name, "no-such-key"): "x" for s in shards}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "00000.tar").write_bytes(b"not a tar" * 100)
    bad = list_shards(tmp_path / "bad")
    with pytest.raises(DataError, match="truncated or corrupt"):
        collect([*bad, *shards], {**wanted, ("00000", "k"): "x"}, {}, workers=2)
