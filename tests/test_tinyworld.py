import json
import tarfile
from collections import Counter

import pyarrow.parquet as pq

from pipeline.datasets import celeba, imagefolder, unlearncanvas
from pipeline.io import sha256_tree
from pipeline.tinyworld import concepts
from pipeline.tinyworld.generate import WorldConfig, generate, laion_sample

from .conftest import MICRO
from .helpers import world_config


def test_same_seed_gives_byte_identical_world(micro_world, tmp_path):
    again = tmp_path / "again"
    generate(MICRO, again)
    assert sha256_tree(again) == sha256_tree(micro_world)


def test_worker_count_does_not_change_the_output(micro_world, tmp_path):
    cfg = WorldConfig(**{**MICRO.__dict__, "workers": 2})
    generate(cfg, tmp_path / "w2")
    assert sha256_tree(tmp_path / "w2") == sha256_tree(micro_world)


def test_other_seed_gives_other_shards(micro_world, tmp_path):
    cfg = WorldConfig(**{**MICRO.__dict__, "seed": MICRO.seed + 1, "n_shards": 1})
    generate(cfg, tmp_path / "other")
    a = (micro_world / "laion" / "00000.tar").read_bytes()
    b = (tmp_path / "other" / "laion" / "00000.tar").read_bytes()
    assert a != b


def test_shards_are_in_img2dataset_webdataset_format(micro_world):
    laion = micro_world / "laion"
    for s in range(MICRO.n_shards):
        name = f"{s:05d}"
        table = pq.read_table(laion / f"{name}.parquet").to_pandas()
        for col in ("key", "caption", "url", "status", "width", "height", "similarity"):
            assert col in table.columns
        stats = json.loads((laion / f"{name}_stats.json").read_text())
        ok = table[table.status == "success"]
        assert stats["count"] == len(table) == MICRO.samples_per_shard
        assert stats["successes"] == len(ok)
        assert stats["successes"] + stats["failed_to_download"] == stats["count"]
        with tarfile.open(laion / f"{name}.tar") as tf:
            names = tf.getnames()
        exts = Counter(n.split(".", 1)[1] for n in names)
        assert exts == {"jpg": len(ok), "txt": len(ok), "json": len(ok)}
        keys = {n.split(".", 1)[0] for n in names}
        assert keys == set(ok.key)  # failed downloads are in the parquet only
        assert all(k.startswith(name) for k in keys)


def test_eval_sets_are_in_the_real_layouts(micro_world):
    ids = celeba.CelebA(micro_world / "celeba").identities()
    assert len(ids) == len(concepts.IDENTITY_NAMES)
    assert all(len(v) == MICRO.celeba_per_identity and all(p.exists() for p in v)
               for v in ids.values())
    lines = (micro_world / "celeba" / "list_identity_celeba.txt").read_text().splitlines()
    assert lines[1].split() == ["image_id", "identity_name"]
    assert lines[2].split()[0].endswith(".jpg") and "_" in lines[2].split()[1]
    assert set(celeba.CelebA(micro_world / "celeba").frequent()) == set(ids)

    names = imagefolder.read_classnames(micro_world / "imagenet" / "LOC_synset_mapping.txt")
    classes, items = imagefolder.read_folder(micro_world / "imagenet" / "val", names)
    assert sorted(classes) == sorted(concepts.OBJECT_NAMES)
    assert all(p.suffix == ".JPEG" and p.parent.name.startswith("n") for p, _ in items)

    styles, objects, items = unlearncanvas.read_canvas(micro_world / "unlearncanvas")
    assert len(styles) == len(concepts.STYLE_NAMES) and len(objects) == len(concepts.OBJECT_NAMES)
    assert len(items) == len(styles) * len(objects) * MICRO.canvas_per_pair


def test_world_has_the_required_concepts():
    names = {i.name for i in concepts.identities()}
    assert len(names) >= 20
    assert {"Elon Musk", "Taylor Swift", "Jeff Bezos", "Mark Zuckerberg", "Kim Kardashian"} <= names
    assert {"Iron Man", "Mickey Mouse"} <= set(concepts.CHARACTER_NAMES)
    assert len(concepts.OBJECT_NAMES) >= 10 and len(concepts.STYLE_NAMES) >= 6
    signatures = {(i.hair, i.shirt) for i in concepts.identities()}
    assert len(signatures) == len(names)  # every identity has its own visual signature


def test_captions_name_concepts_and_include_distractors():
    cfg = world_config(seed=3)
    samples = [laion_sample(cfg, i, draw_image=False) for i in range(3000)]
    kinds = Counter(s[0] for s in samples)
    assert set(kinds) == {"identity", "character", "object", "style", "distractor"}
    named = [s for s in samples if s[0] == "identity" and s[1]]
    assert sum(s[1].lower() in s[2].lower() for s in named) == len(named)
    distractors = [s for s in samples if s[0] == "distractor"]
    people = [i.name for i in concepts.identities()] + list(concepts.CHARACTER_NAMES)
    assert distractors and all(any(p in s[2] for p in people) for s in distractors)
    assert len({s[2] for s in samples}) > 0.5 * len(samples)  # varied, not one template


def test_eval_images_never_repeat_a_shard_image(micro_world):
    shard_images = set()
    for tar in sorted((micro_world / "laion").glob("*.tar")):
        with tarfile.open(tar) as tf:
            shard_images |= {tf.extractfile(m).read() for m in tf if m.name.endswith(".jpg")}
    eval_files = [p for d in ("celeba", "imagenet", "characters", "unlearncanvas")
                  for p in (micro_world / d).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
    assert eval_files
    assert not any(p.read_bytes() in shard_images for p in eval_files)
