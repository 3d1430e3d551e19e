"""LAION shards as img2dataset writes them in its webdataset output mode, read and written
through ``webdataset``.

A shard ``NNNNN`` is three files side by side:

* ``NNNNN.tar``: for each downloaded sample ``KEY.jpg`` (the image), ``KEY.txt`` (the caption) and
  ``KEY.json`` (the metadata row);
* ``NNNNN.parquet``: one row per URL of the shard, downloaded or not (``key``, ``caption``, ``url``,
  ``status``, ``error_message``, ``width``, ``height``, ..., plus pass-through columns such as
  ``similarity``);
* ``NNNNN_stats.json``: counts (``count``, ``successes``, ``failed_to_download``, ...).

``data.shards`` is a local folder of such shards. At real scale the tars may live elsewhere:
``data.shard_urls`` is then a webdataset URL pattern (``/data/laion/{00000..41455}.tar``,
``pipe:`` commands, ``http(s)://`` URLs) and ``data.shards`` holds only the parquet and stats
files, the local manifest DVC tracks; the tars are streamed and never hashed.

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
from ..io import atomic_path, sha256_file, write_json
from ..params import DataParams

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
SHARD_RE = re.compile(r"^\d+$")
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # pipe:, http://, s3://; not a local path
NAME_RE = re.compile(r"([^/\s]+)\.tar\b")
# Fixed tar header fields, so that the same samples always give the same bytes.
TAR_MTIME = 1_700_000_000


@dataclass(frozen=True)
class Shard:
    """One shard: its tar (a local path or a webdataset URL) and its parquet and stats files,
    beside a local tar or in the local ``index`` folder."""

    url: str
    index: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "url", str(self.url))

    @property
    def local(self) -> Path | None:
        """The tar's path when it is a local file, else None."""
        return None if URL_RE.match(self.url) else Path(self.url)

    @property
    def name(self) -> str:
        found = NAME_RE.findall(self.url)
        return found[-1] if found else self.url

    def _beside(self, suffix: str) -> Path:
        folder = self.index if self.index is not None else (
            self.local.parent if self.local is not None else None)
        if folder is None:
            raise DataError(f"shard {self.url} is a URL: its parquet and stats files are read "
                            f"from a local folder (data.shards)")
        return folder / f"{self.name}{suffix}"

    @property
    def parquet(self) -> Path:
        return self._beside(".parquet")

    @property
    def stats(self) -> Path:
        # The reference cut the path at the first "." (bug B6); take the name instead.
        return self._beside("_stats.json")

    def fingerprint(self) -> str:
        """SHA-256 of a tar in ``data.shards``; of a tar given by ``data.shard_urls``, that of its
        parquet and stats files (such tars are streamed, never hashed: one pass over the data)."""
        if self.index is None:
            return sha256_file(self.url)
        return "index:" + "+".join(sha256_file(p) if p.exists() else "missing"
                                   for p in (self.parquet, self.stats))


def fingerprints(shards: Iterable[Shard]) -> dict[str, str]:
    """``{NNNNN.tar: fingerprint}``: what a set's manifest records of the shards it read."""
    return {f"{s.name}.tar": s.fingerprint() for s in shards}


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


def list_shards(folder: str | Path, urls: str = "") -> list[Shard]:
    """The shards of ``folder``: every ``NNNNN.tar`` in it (sorted); or, with ``urls`` (a
    webdataset pattern: braces, ``::``-separated lists, ``pipe:`` commands, ``http(s)://``), the
    tars it expands to, in order, each read with its parquet and stats files from ``folder``.
    No shard, a missing folder or local tar, or a name twice is an error."""
    from webdataset.shardlists import expand_urls

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"shard folder {folder} does not exist; check the data path in params.yaml")
    if not urls:
        shards = [Shard(p) for p in sorted(folder.glob("*.tar")) if SHARD_RE.match(p.stem)]
        if not shards:
            raise DataError(f"no NNNNN.tar shards in {folder}; img2dataset's webdataset output "
                            f"expected")
        return shards
    shards = [Shard(u, folder) for u in expand_urls(urls)]
    missing = [s.url for s in shards if s.local is not None and not s.local.is_file()]
    if missing:
        raise DataError(f"{len(missing)} of the {len(shards)} shard(s) {urls} names do not "
                        f"exist, first {missing[0]}")
    names = [s.name for s in shards]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{urls} names shard {twice[0]} more than once; each shard's name "
                        f"(NNNNN) must be unique")
    return shards


def data_shards(data: DataParams) -> list[Shard]:
    """The shards ``data.shards`` (with ``data.shard_urls``) names."""
    return list_shards(data.shards, data.shard_urls)


def nonmember_shards(data: DataParams) -> list[Shard]:
    """The non-member shards ``data.nonmembers`` (with ``data.nonmember_urls``) names."""
    return list_shards(data.nonmembers, data.nonmember_urls)


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


def _stats_successes(shard: Shard) -> int | None:
    """``successes`` in the shard's ``_stats.json``, or None without one."""
    if (shard.local is None and shard.index is None) or not shard.stats.exists():
        return None
    try:
        return int(json.loads(shard.stats.read_text())["successes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{shard.stats} has no integer 'successes' ({exc})") from None


def _webdataset(url: str) -> Iterator[dict]:
    """webdataset's samples of one tar, in tar order, raw bytes (no decoding, no splitting)."""
    import webdataset as wds

    return iter(wds.WebDataset(url, shardshuffle=False, nodesplitter=None, workersplitter=None,
                               empty_check=False))


def iter_raw(shard: Shard, keys: set[str] | None = None, damaged: dict | None = None
             ) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {ext: bytes})`` for each sample in tar order, optionally only ``keys``.

    webdataset groups consecutive members with the same key into a sample. A damaged shard (the
    tar breaks off, or it holds fewer samples than its ``_stats.json`` counts: a cut on a member
    boundary reads as a clean end) is an error; with ``damaged`` given, the readable samples are
    yielded and the shard is recorded there instead (name -> what was wrong).
    """
    if shard.local is not None and not shard.local.is_file():
        raise DataError(f"shard {shard.url} does not exist")
    n = 0  # samples in the tar so far, wanted or not
    try:
        for sample in _webdataset(shard.url):
            n += 1
            key = sample["__key__"]
            if keys is None or key in keys:
                yield key, {k: v for k, v in sample.items() if not k.startswith("__")}
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        what = f"truncated or corrupt after {n} samples ({exc.args[0] if exc.args else exc})"
        if damaged is None:
            raise DataError(f"shard {shard.url} is {what}; re-download or regenerate it, or set "
                            f"data.on_damaged_shard: skip") from None
        damaged[shard.name] = what  # the sample being read when it broke is dropped
        return
    expected = _stats_successes(shard)
    if expected is not None and n < expected:
        what = f"{n} samples where its _stats.json counts {expected} (cut short)"
        if damaged is None:
            raise DataError(f"shard {shard.url} holds {what}; re-download or regenerate it, or "
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


def write_tar(path: Path, samples: Iterable[tuple[str, dict[str, bytes]]]) -> None:
    """Write ``(key, {ext: bytes})`` samples with webdataset's ``TarWriter``, atomically: a
    POSIX tar, members of a sample in sorted order, fixed times and owners, so the same samples
    always give the same bytes."""
    from webdataset import TarWriter

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        with TarWriter(f, encoder=False, mtime=TAR_MTIME) as tw:
            for key, files in samples:
                tw.write({"__key__": key, **files})


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

    write_tar(shard.local, tar_samples())
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
