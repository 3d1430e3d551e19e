"""LAION shards as img2dataset writes them in its webdataset output mode.

A shard ``NNNNN`` is three files side by side:

* ``NNNNN.tar``: for each downloaded sample ``KEY.jpg`` (the image), ``KEY.txt`` (the caption) and
  ``KEY.json`` (the metadata row);
* ``NNNNN.parquet``: one row per URL of the shard, downloaded or not (``key``, ``caption``, ``url``,
  ``status``, ``error_message``, ``width``, ``height``, ..., plus pass-through columns such as
  ``similarity``);
* ``NNNNN_stats.json``: counts (``count``, ``successes``, ``failed_to_download``, ...).

Reading is streaming and strict: a truncated tar is an error (it would silently shorten a forget
set) unless the caller records damaged shards instead (``data.on_damaged_shard: skip``); a
sample whose image does not decode is skipped and counted.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image

from ..errors import DataError
from ..io import atomic_path, write_json

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
SHARD_RE = re.compile(r"^\d+$")
# Fixed tar header fields, so that the same samples always give the same bytes.
TAR_MTIME = 1_700_000_000


@dataclass(frozen=True)
class Shard:
    """The three files of one shard (the parquet and stats files may be missing)."""

    tar: Path

    @property
    def name(self) -> str:
        return self.tar.stem

    @property
    def parquet(self) -> Path:
        return self.tar.with_name(f"{self.name}.parquet")

    @property
    def stats(self) -> Path:
        # The reference cut the path at the first "." (bug B6); take the stem instead.
        return self.tar.with_name(f"{self.name}_stats.json")


@dataclass
class ReadReport:
    """What a pass over shards saw: how many samples were used, and what was skipped and why."""

    samples: int = 0
    corrupt_images: int = 0
    incomplete: int = 0
    corrupt_keys: list[str] = field(default_factory=list)

    def add(self, other: "ReadReport") -> None:
        self.samples += other.samples
        self.corrupt_images += other.corrupt_images
        self.incomplete += other.incomplete
        self.corrupt_keys += other.corrupt_keys

    def as_dict(self) -> dict:
        return {"samples": self.samples, "skipped_corrupt_images": self.corrupt_images,
                "skipped_incomplete": self.incomplete, "corrupt_keys": self.corrupt_keys[:20]}


def list_shards(root: str | Path) -> list[Shard]:
    """All ``NNNNN.tar`` shards under ``root`` (sorted). No shard at all is an error."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"shard folder {root} does not exist; check the data path in params.yaml")
    shards = [Shard(p) for p in sorted(root.glob("*.tar")) if SHARD_RE.match(p.stem)]
    if not shards:
        raise DataError(f"no NNNNN.tar shards in {root}; img2dataset's webdataset output expected")
    return shards


# --------------------------------------------------------------------------------------------
# metadata


BAD_CAPTIONS = "bad_captions"  # read_metadata's attrs: rows skipped for a null or non-string caption


def read_metadata(shard: Shard, columns: Iterable[str] = ("key", "caption")):
    """The shard's parquet as a pandas DataFrame with (at least) ``columns``. Rows whose caption
    is null or not a string are dropped and counted (``df.attrs[BAD_CAPTIONS]``).

    A missing file or column is a DataError that names the file, the missing column and the
    columns that are present.
    """
    import pyarrow.parquet as pq

    columns = list(columns)
    if not shard.parquet.exists():
        raise DataError(f"{shard.parquet} is missing; every shard needs its img2dataset parquet")
    try:
        names = pq.read_schema(shard.parquet).names
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{shard.parquet} is not a readable parquet file ({exc})") from None
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{shard.parquet} has no column {', '.join(map(repr, missing))} "
                        f"(columns: {', '.join(names)})")
    extra = [c for c in ("status",) if c in names and c not in columns]
    try:  # a damaged row group or text that is not UTF-8 fails past a readable schema
        df = pq.read_table(shard.parquet, columns=columns + extra).to_pandas()
        if "status" in df.columns:  # only downloaded samples are in the tar
            df = df[df["status"] == "success"]
            if "status" not in columns:
                df = df.drop(columns="status")
        bad = 0
        if "caption" in df.columns:  # real LAION metadata has null captions: skipped, counted
            ok = df["caption"].map(lambda c: isinstance(c, str)).astype(bool)
            bad = int((~ok).sum())
            df = df[ok]
    except Exception as exc:  # pyarrow and pandas raise many types on damaged data
        raise DataError(f"{shard.parquet} is not a readable parquet file ({exc})") from None
    df = df.reset_index(drop=True)
    df.attrs[BAD_CAPTIONS] = bad
    return df


def count_samples(shard: Shard) -> int:
    """Successful samples in the shard: from ``_stats.json``, else by counting the tar."""
    n = _stats_successes(shard)
    return sum(1 for _ in iter_raw(shard)) if n is None else n


# --------------------------------------------------------------------------------------------
# samples


def _split_member(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is everything before the first dot of the base name."""
    base = name.rsplit("/", 1)[-1]
    prefix = name[: len(name) - len(base)]
    key, _, ext = base.partition(".")
    return prefix + key, ext.lower()


def _stats_successes(shard: Shard) -> int | None:
    """``successes`` in the shard's ``_stats.json``, or None without one."""
    if not shard.stats.exists():
        return None
    try:
        return int(json.loads(shard.stats.read_text())["successes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{shard.stats} has no integer 'successes' ({exc})") from None


def iter_raw(shard: Shard, keys: set[str] | None = None, damaged: dict | None = None
             ) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {ext: bytes})`` for each sample in tar order, optionally only ``keys``.

    Consecutive members with the same key form a sample (as webdataset groups them). A damaged
    shard (the tar breaks off, or it holds fewer samples than its ``_stats.json`` counts: a cut
    on a member boundary reads as a clean end) is an error; with ``damaged`` given, the readable
    samples are yielded and the shard is recorded there instead (name -> what was wrong).
    """
    if not shard.tar.exists():
        raise DataError(f"shard {shard.tar} does not exist")
    current, files, n = None, {}, 0  # n: samples in the tar so far, wanted or not
    try:
        with tarfile.open(shard.tar, mode="r|*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                key, ext = _split_member(member.name)
                if key != current:
                    if current is not None:
                        n += 1
                        if keys is None or current in keys:
                            yield current, files
                    current, files = key, {}
                if keys is None or key in keys:
                    files[ext] = tf.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        what = f"truncated or corrupt after {n} samples ({exc})"
        if damaged is None:
            raise DataError(f"shard {shard.tar} is {what}; re-download or regenerate it, or set "
                            f"data.on_damaged_shard: skip") from None
        damaged[shard.name] = what  # the sample being read when it broke is dropped
        return
    if current is not None:
        n += 1
        if keys is None or current in keys:
            yield current, files
    expected = _stats_successes(shard)
    if expected is not None and n < expected:
        what = f"{n} samples where its _stats.json counts {expected} (cut short)"
        if damaged is None:
            raise DataError(f"shard {shard.tar} holds {what}; re-download or regenerate it, or "
                            f"set data.on_damaged_shard: skip")
        damaged[shard.name] = what


def check_damage(damaged: dict, n_shards: int, max_share: float) -> None:
    """Fail when more than ``max_share`` of the ``n_shards`` read were damaged."""
    if n_shards and len(damaged) / n_shards > max_share:
        first = next(iter(damaged.items()))
        raise DataError(f"{len(damaged)} of {n_shards} shard(s) read are damaged, more than "
                        f"data.max_damaged_share={max_share}; first: {first[0]}: {first[1]}")


def decode_image(data: bytes) -> Image.Image:
    """Decode fully (``load``), so a truncated JPEG fails here and not later in a batch."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def iter_samples(shards: Iterable[Shard], report: ReadReport, keys: set[str] | None = None
                 ) -> Iterator[tuple[str, Image.Image, str]]:
    """Yield ``(key, image, caption)``; skip and count samples whose image is corrupt or missing."""
    for shard in shards:
        for key, files in iter_raw(shard, keys):
            img_ext = next((e for e in IMAGE_EXTS if e in files), None)
            if img_ext is None or "txt" not in files:
                report.incomplete += 1
                continue
            try:
                img = decode_image(files[img_ext])
            except Exception:  # PIL raises many types on bad data
                report.corrupt_images += 1
                report.corrupt_keys.append(key)
                continue
            report.samples += 1
            yield key, img, files["txt"].decode("utf-8", errors="replace").strip()


# --------------------------------------------------------------------------------------------
# writing (the tiny world writes real-format shards)


def _add_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = TAR_MTIME
    info.mode = 0o444
    info.uname = info.gname = "bigdata"  # as webdataset's TarWriter writes
    tf.addfile(info, io.BytesIO(data))


def write_tar(path: Path, samples: Iterable[tuple[str, dict[str, bytes]]]) -> None:
    """Write ``(key, {ext: bytes})`` samples as a plain POSIX webdataset tar, atomically."""
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for key, files in samples:
                for ext, data in files.items():
                    _add_member(tf, f"{key}.{ext}", data)


def write_shard(root: Path, index: int, rows: list[dict], images: dict[str, bytes]) -> Shard:
    """Write one img2dataset-style shard.

    ``rows`` are the parquet rows (every URL, including failed ones); ``images`` maps the key of
    each successful row to its encoded JPEG.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = Shard(Path(root) / f"{index:05d}.tar")
    ok = [r for r in rows if r["status"] == "success"]

    def tar_samples():
        for r in ok:
            meta = json.dumps(r, sort_keys=True).encode()
            yield r["key"], {"jpg": images[r["key"]], "txt": r["caption"].encode(), "json": meta}

    write_tar(shard.tar, tar_samples())
    with atomic_path(shard.parquet) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    status: dict[str, int] = {}
    for r in rows:
        k = "success" if r["status"] == "success" else r["error_message"]
        status[k] = status.get(k, 0) + 1
    write_json(shard.stats, {
        "count": len(rows), "successes": len(ok),
        "failed_to_download": sum(r["status"] == "failed_to_download" for r in rows),
        "failed_to_resize": sum(r["status"] == "failed_to_resize" for r in rows),
        "status_dict": status,
    })
    return shard
