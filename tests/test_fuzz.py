"""Fuzzed readers: random truncations, bit flips, spliced bytes and wrong column types fed to the
public interface of the shard reader (``iter_raw``, ``iter_samples``, strict and under
``data.on_damaged_shard: skip``), the parquet reader (``read_metadata``, ``filter_shards``) and
the patch loader (``patch.load``). Every outcome must be a clean result, a counted skip, or a
``SlugError``: never another exception type. Seeded (``derandomize``) and bounded, so the same
cases run every time."""

from __future__ import annotations

import functools
import io
import json
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.datasets.shards import (
    ReadReport,
    Shard,
    iter_raw,
    iter_samples,
    read_metadata,
    write_shard,
)
from pipeline.errors import SlugError
from pipeline.sets.filter import filter_shards
from pipeline.sets.match import ConceptMatcher
from pipeline.unlearn import patch as P

CASES = {"tar": 900, "parquet": 400, "columns": 300, "patch": 600}  # 2,200 in all


def _fuzz(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (40 * i % 256, 90, 200)).save(buf, "JPEG")
    return buf.getvalue()


@functools.cache
def _clean() -> dict[str, bytes]:
    """One small shard (6 samples, one failed download) and one patch, as bytes."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-clean-"))
    rows = [{"key": f"{i:09d}", "caption": "a photo of Elon Musk" if i % 2 else f"thing {i}",
             "status": "success" if i != 3 else "failed_to_download",
             "error_message": None if i != 3 else "404"} for i in range(7)]
    s = write_shard(root, 0, rows, {r["key"]: _jpeg(i) for i, r in enumerate(rows)})
    P.save(P.Patch({"visual.proj": torch.arange(12.0).reshape(3, 4),
                    "text_projection": torch.ones(2, 2, dtype=torch.float16)},
                   {"concept": "Elon Musk", "lambda": 0.5, "layers": ["visual.proj"]}),
           root / "patch")
    out = {"tar": s.local.read_bytes(), "parquet": s.parquet.read_bytes(),
           "stats": s.stats.read_bytes(), "patch": (root / "patch" / P.TENSORS).read_bytes(),
           "manifest": (root / "patch" / P.MANIFEST).read_bytes()}
    shutil.rmtree(root)
    return out


# a damage: cut at a share of the length, flip bits, splice random bytes, or zero a range
DAMAGE = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                        min_size=1, max_size=8)),
    st.tuples(st.just("splice"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("zero"), st.floats(0, 1), st.integers(1, 2048)))


def _damage(data: bytes, how) -> bytes:
    at = lambda x: min(int(x * len(data)), max(len(data) - 1, 0))  # noqa: E731
    if how[0] == "cut":
        return data[:at(how[1])]
    b = bytearray(data)
    if how[0] == "flip":
        for x, bit in how[1]:
            b[at(x)] ^= 1 << bit
    elif how[0] == "splice":
        b[at(how[1]):at(how[1])] = how[2]
    else:
        i = at(how[1])
        b[i:i + how[2]] = bytes(len(b[i:i + how[2]]))
    return bytes(b)


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz-"))


@_fuzz(CASES["tar"])
@given(how=DAMAGE, skip=st.booleans(), only=st.booleans())
def test_a_damaged_tar_is_read_skipped_or_refused(how, skip, only):
    clean, d = _clean(), _folder()
    try:
        for ext, data in (("tar", _damage(clean["tar"], how)), ("parquet", clean["parquet"])):
            (d / f"00000.{ext}").write_bytes(data)
        (d / "00000_stats.json").write_bytes(clean["stats"])
        shard, report, damaged = Shard(d / "00000.tar"), ReadReport(), {} if skip else None
        keys = {"000000001", "000000004"} if only else None
        try:
            got = list(iter_raw(shard, keys, damaged))
            assert all(isinstance(k, str) and isinstance(f, dict) for k, f in got)
            assert skip or len(got) == (2 if only else 6)  # strict: all of it or an error
            samples = list(iter_samples([shard], report))
            assert report.samples == len(samples) <= 6
        except SlugError:
            assert not skip or damaged is not None
    finally:
        shutil.rmtree(d)


@_fuzz(CASES["parquet"])
@given(how=DAMAGE)
def test_a_damaged_parquet_is_read_or_refused(how):
    clean, d = _clean(), _folder()
    try:
        (d / "00000.parquet").write_bytes(_damage(clean["parquet"], how))
        (d / "00000.tar").write_bytes(clean["tar"])
        try:
            meta = read_metadata(Shard(d / "00000.tar"))
            assert all(isinstance(c, str) for c in meta["caption"])
        except SlugError:
            pass
    finally:
        shutil.rmtree(d)


COLUMN = st.sampled_from([
    (pa.string(), st.one_of(st.none(), st.text(max_size=20))),
    (pa.large_string(), st.one_of(st.none(), st.just("Elon Musk"), st.text(max_size=8))),
    (pa.int64(), st.one_of(st.none(), st.integers(-5, 5))),
    (pa.float64(), st.one_of(st.none(), st.floats(allow_nan=True))),
    (pa.binary(), st.one_of(st.none(), st.binary(max_size=8))),
    (pa.list_(pa.string()), st.one_of(st.none(), st.lists(st.text(max_size=4), max_size=3))),
    (pa.bool_(), st.one_of(st.none(), st.booleans()))])


@_fuzz(CASES["columns"])
@given(data=st.data(), drop=st.sampled_from([None, "key", "caption", "status"]))
def test_wrong_column_types_are_skipped_counted_or_refused(data, drop):
    n = data.draw(st.integers(0, 6))
    cols = {}
    for name in ("key", "caption", "status"):
        if name == drop:
            continue
        typ, values = data.draw(COLUMN)
        cols[name] = pa.array(data.draw(st.lists(values, min_size=n, max_size=n)), type=typ)
    clean, d = _clean(), _folder()
    try:
        pq.write_table(pa.table(cols) if cols else pa.table({"x": pa.array([], pa.int8())}),
                       d / "00000.parquet")
        (d / "00000.tar").write_bytes(clean["tar"])
        try:
            res = filter_shards([Shard(d / "00000.tar")], ConceptMatcher("Elon Musk"), 100)
            assert res.rows and all(isinstance(r["caption"], str) for r in res.rows)
            assert res.scanned + sum(res.bad_captions.values()) <= n
        except SlugError:
            pass
    finally:
        shutil.rmtree(d)


@_fuzz(CASES["patch"])
@given(how=DAMAGE, which=st.sampled_from(["patch", "manifest"]))
def test_a_damaged_patch_loads_as_made_or_is_refused(how, which):
    clean, d = _clean(), _folder()
    try:
        files = {P.TENSORS: clean["patch"], P.MANIFEST: clean["manifest"]}
        name = P.TENSORS if which == "patch" else P.MANIFEST
        files[name] = _damage(files[name], how)
        for f, data in files.items():
            (d / f).write_bytes(data)
        try:
            loaded = P.load(d)
        except SlugError:
            return
        # accepted: then it is the patch that was made, bit for bit
        assert torch.equal(loaded.tensors["visual.proj"], torch.arange(12.0).reshape(3, 4))
        assert loaded.manifest["lambda"] == 0.5
        assert json.loads(clean["manifest"])["integrity"] == loaded.manifest["integrity"]
    finally:
        shutil.rmtree(d)
