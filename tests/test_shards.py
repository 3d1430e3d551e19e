import json

import pyarrow.parquet as pq
import pytest

from pipeline.datasets.shards import (
    ReadReport,
    Shard,
    count_samples,
    iter_samples,
    list_shards,
    read_metadata,
)
from pipeline.errors import DataError


def test_reads_every_downloaded_sample_with_its_caption(micro_world):
    shards = list_shards(micro_world / "laion")
    assert [s.name for s in shards] == ["00000", "00001"]
    report = ReadReport()
    got = {k: c for k, _, c in iter_samples(shards, report)}
    meta = {r.key: r.caption for s in shards for r in read_metadata(s).itertuples()}
    assert got == meta
    assert report.samples == sum(count_samples(s) for s in shards)
    assert report.corrupt_images == report.incomplete == 0


def test_failed_downloads_are_dropped_from_metadata(micro_world):
    shard = list_shards(micro_world / "laion")[0]
    full = pq.read_table(shard.parquet).to_pandas()
    assert (full.status != "success").any()
    assert len(read_metadata(shard)) == (full.status == "success").sum()


def test_missing_caption_column_is_a_clear_error(world_copy):
    shard = list_shards(world_copy / "laion")[0]
    table = pq.read_table(shard.parquet)
    pq.write_table(table.drop_columns(["caption"]), shard.parquet)
    with pytest.raises(DataError, match=r"00000\.parquet has no column 'caption'.*columns: key"):
        read_metadata(shard)


def test_truncated_tar_is_a_clear_error(world_copy):
    shard = list_shards(world_copy / "laion")[0]
    data = shard.local.read_bytes()
    shard.local.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        list(iter_samples([shard], ReadReport()))


def test_corrupt_jpeg_is_skipped_and_counted(world_copy):
    import tarfile

    shard = list_shards(world_copy / "laion")[0]
    with tarfile.open(shard.local) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf]
    victim = next(m.name for m, _ in members if m.name.endswith(".jpg"))
    from pipeline.datasets.shards import write_tar

    samples, order = {}, []
    for m, data in members:
        key, ext = m.name.split(".", 1)
        if key not in samples:
            samples[key] = {}
            order.append(key)
        samples[key][ext] = data[:40] if m.name == victim else data
    write_tar(shard.local, ((k, samples[k]) for k in order))
    report = ReadReport()
    keys = [k for k, _, _ in iter_samples([shard], report)]
    assert report.corrupt_images == 1 and report.corrupt_keys == [victim.split(".")[0]]
    assert len(keys) == count_samples(shard) - 1


def test_missing_stats_falls_back_to_counting_the_tar(world_copy):
    shard = list_shards(world_copy / "laion")[0]
    expected = json.loads(shard.stats.read_text())["successes"]
    shard.stats.unlink()
    assert count_samples(shard) == expected


def test_stats_path_uses_the_stem_not_the_first_dot(tmp_path):
    shard = Shard(tmp_path / "data.v2" / "00003.tar")
    assert shard.stats == tmp_path / "data.v2" / "00003_stats.json"


def test_no_shards_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no NNNNN.tar shards"):
        list_shards(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        list_shards(tmp_path / "nope")


def test_null_and_non_string_captions_are_skipped_and_counted(world_copy):
    """Real LAION metadata has null captions; ``filter`` crashed on them (TypeError)."""
    import pyarrow as pa

    from pipeline.sets.filter import filter_shards
    from pipeline.sets.match import ConceptMatcher

    shards = list_shards(world_copy / "laion")
    df = pq.read_table(shards[0].parquet).to_pandas()
    ok = df.index[df.status == "success"]
    df["caption"] = df["caption"].astype(object)
    df.loc[ok[:3], "caption"] = None
    df.loc[ok[3], "caption"] = float("nan")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), shards[0].parquet)
    before = filter_shards(shards[1:], ConceptMatcher("Elon Musk"), 10_000)
    res = filter_shards(shards, ConceptMatcher("Elon Musk"), 10_000)
    assert res.bad_captions == {"00000": 4}
    assert read_metadata(shards[0]).attrs["bad_captions"] == 4
    assert len(read_metadata(shards[0])) == len(ok) - 4
    assert res.scanned == before.scanned + len(ok) - 4


def _samples(shard):
    from pipeline.datasets.shards import iter_raw

    return list(iter_raw(shard))


def test_a_damaged_shard_is_skipped_named_and_bounded_under_skip(world_copy):
    """``data.on_damaged_shard: skip``: the readable samples of a truncated shard are used, the
    shard is named in ``skipped``, and the run fails only past ``max_damaged_share``."""
    from pipeline.sets.build import collect

    shards = list_shards(world_copy / "laion")
    whole = _samples(shards[0])
    data = shards[0].local.read_bytes()
    shards[0].local.write_bytes(data[: len(data) // 2 + 100])
    wanted = {(s.name, str(k)): "x" for s in shards for k in read_metadata(s)["key"]}
    with pytest.raises(DataError, match="truncated or corrupt.*on_damaged_shard: skip"):
        collect(shards, wanted, {})
    skipped = {}
    got = collect(shards, wanted, skipped, "skip", 0.5)["x"]
    assert list(skipped["damaged_shards"]) == ["00000"]
    first = [k for k, _ in got if (shards[0].name, k) in wanted and k in dict(whole)]
    assert 0 < len(first) < len(whole)  # read up to the damage
    assert [k for k, _ in got][len(first):] == [k for k, _ in _samples(shards[1])]
    with pytest.raises(DataError, match="1 of 2 shard.*max_damaged_share=0.4"):
        collect(shards, wanted, {}, "skip", 0.4)


def test_a_cut_on_a_member_boundary_is_caught_by_the_stats_count(world_copy):
    """A tar cut exactly between samples reads as a clean end; ``_stats.json`` says more."""
    from pipeline.datasets.shards import write_tar

    shard = list_shards(world_copy / "laion")[0]
    whole = _samples(shard)
    write_tar(shard.local, whole[:-3])
    with pytest.raises(DataError, match=f"{len(whole) - 3} samples where its _stats.json "
                                        f"counts {len(whole)}"):
        _samples(shard)
    from pipeline.datasets.shards import iter_raw

    damaged = {}
    assert len(list(iter_raw(shard, None, damaged))) == len(whole) - 3
    assert "cut short" in damaged["00000"]


def _split_world(world, tmp_path):
    """The tars in one folder, their parquet and stats files (the local manifest) in another."""
    import shutil

    tars, index = tmp_path / "remote", tmp_path / "index"
    tars.mkdir()
    shutil.copytree(world / "laion", index)
    for t in sorted(index.glob("*.tar")):
        t.rename(tars / t.name)
    return tars, index


@pytest.mark.parametrize("how", ["braces", "pipe"])
def test_shards_given_as_urls_read_as_the_folder_does(micro_world, tmp_path, how):
    """``data.shard_urls``: a brace pattern or ``pipe:cat`` commands (``::``-separated) name the
    tars; their parquet and stats files come from the local folder."""
    from pipeline.sets.filter import filter_shards
    from pipeline.sets.match import ConceptMatcher

    tars, index = _split_world(micro_world, tmp_path)
    urls = (f"{tars}/{{00000..00001}}.tar" if how == "braces" else
            "::".join(f"pipe:cat {tars}/{n}.tar" for n in ("00000", "00001")))
    remote, local = list_shards(index, urls), list_shards(micro_world / "laion")
    assert [s.name for s in remote] == [s.name for s in local] == ["00000", "00001"]
    assert [s.parquet for s in remote] == [index / "00000.parquet", index / "00001.parquet"]
    want, got = ReadReport(), ReadReport()
    assert ([(k, c) for k, _, c in iter_samples(remote, got)] ==
            [(k, c) for k, _, c in iter_samples(local, want)])
    assert got.samples == want.samples > 0
    m = ConceptMatcher("Elon Musk")
    assert filter_shards(remote, m, 100).rows == filter_shards(local, m, 100).rows
    assert remote[0].fingerprint().startswith("index:")  # the tar behind a URL is never hashed


def test_a_damaged_tar_behind_a_pipe_is_caught(micro_world, tmp_path):
    tars, index = _split_world(micro_world, tmp_path)
    data = (tars / "00000.tar").read_bytes()
    (tars / "00000.tar").write_bytes(data[: len(data) // 2 + 100])
    shard = list_shards(index, f"pipe:cat {tars}/00000.tar")[0]
    with pytest.raises(DataError, match="truncated or corrupt"):
        list(iter_samples([shard], ReadReport()))


def test_url_lists_that_miss_a_tar_or_name_one_twice_are_refused(micro_world, tmp_path):
    tars, index = _split_world(micro_world, tmp_path)
    with pytest.raises(DataError, match=r"1 of the 3 shard\(s\).*first .*00002\.tar"):
        list_shards(index, f"{tars}/{{00000..00002}}.tar")
    with pytest.raises(DataError, match="names shard 00000 more than once"):
        list_shards(index, f"{tars}/00000.tar::pipe:cat {tars}/00000.tar")


def test_the_same_samples_give_the_same_tar_bytes(micro_world, tmp_path):
    from pipeline.datasets.shards import iter_raw, write_tar

    samples = list(iter_raw(list_shards(micro_world / "laion")[0]))
    write_tar(tmp_path / "a.tar", samples)
    write_tar(tmp_path / "b.tar", iter(samples))
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert list(iter_raw(Shard(tmp_path / "a.tar"))) == samples
