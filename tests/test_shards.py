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
    data = shard.tar.read_bytes()
    shard.tar.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        list(iter_samples([shard], ReadReport()))


def test_corrupt_jpeg_is_skipped_and_counted(world_copy):
    import tarfile

    shard = list_shards(world_copy / "laion")[0]
    with tarfile.open(shard.tar) as tf:
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
    write_tar(shard.tar, ((k, samples[k]) for k in order))
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
