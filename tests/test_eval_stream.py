"""The held-out evaluation streams its images (decoded, preprocessed and encoded per batch) and
gives the numbers of the stacked version; the ImageNet subset; SalUn's MIA-efficacy."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.concept import Concept
from pipeline.datasets import celeba
from pipeline.datasets.shards import write_tar
from pipeline.errors import DataError, ParamsError
from pipeline.evaluate import stream, zeroshot
from pipeline.evaluate.mia import mia_efficacy
from pipeline.evaluate.sets import EvalSet, subsample
from pipeline.evaluate.unlearning import EvalInputs, cosine_matrix, eval_inputs, evaluate
from pipeline.sets.build import load_split
from tests.helpers import make_params

IDS = ["Elon Musk", "Ann Lee", "Bob Ray"]
OBJS = ["bar", "ring", "star", "heart"]


def _jpeg(rng, size=40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _pairs_tar(path, rng, n, word, corrupt=()):
    samples = []
    for i in range(n):
        img = b"\xff\xd8 not a jpeg" if i in corrupt else _jpeg(rng, 36 + i % 7)
        samples.append((f"{i:05d}", {"jpg": img, "txt": f"a photo of {word} {i}".encode()}))
    write_tar(path, samples)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A CelebA folder (3 people x 5 images), 4 object classes x 3 images, and the forget-test
    (one corrupt image), retain and non-member tars."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    assignments, id_paths, id_targets = [], [], []
    for n in range(15):
        image_id = f"{n + 1:06d}.jpg"
        (root / "celeba" / celeba.IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        (root / "celeba" / celeba.IMAGES_DIR / image_id).write_bytes(_jpeg(rng, 30 + n % 5))
        assignments.append((image_id, IDS[n % 3]))
    celeba.write_lists(root / "celeba", assignments, IDS)
    ids = celeba.CelebA(root / "celeba").identities()
    for i, name in enumerate(IDS):
        id_paths += ids[name]
        id_targets += [i] * len(ids[name])
    obj_paths, obj_targets = [], []
    for c, o in enumerate(OBJS):
        (root / "objects" / o).mkdir(parents=True)
        for k in range(3):
            p = root / "objects" / o / f"{k}.JPEG"
            p.write_bytes(_jpeg(rng))
            obj_paths.append(p)
            obj_targets.append(c)
    sets_dir = root / "sets"
    _pairs_tar(sets_dir / "forget_test.tar", rng, 9, "Elon Musk", corrupt={4})
    _pairs_tar(sets_dir / "retain.tar", rng, 12, "a thing")
    _pairs_tar(sets_dir / "nonmembers.tar", rng, 10, "another thing")
    sets = {"identity": EvalSet("identities", IDS, id_paths, torch.tensor(id_targets),
                                ["a photo of {}."]),
            "object": EvalSet("objects", OBJS, obj_paths, torch.tensor(obj_targets),
                              ["a photo of a {}.", "a {}."])}
    return root, sets


@pytest.fixture(scope="module")
def bundle():
    from pipeline.models.factory import build

    torch.manual_seed(0)
    return build("tiny-clip", None, False, "fp32", "cpu")


CONCEPT = Concept("elon_musk", "Elon Musk", "identity", 0)


def _streamed(world, bundle, batch_size, **kw):
    root, sets = world
    return eval_inputs(sets, bundle, CONCEPT, str(root / "sets"), True, str(root / "celeba"), 3,
                       batch_size=batch_size, **kw)


def _stacked(world, bundle):
    """The evaluation inputs as they were before streaming: stacked tensors and ``PairData``."""
    root, sets = world
    pre, tok = bundle.preprocess, bundle.tokenizer
    return EvalInputs(sets, {k: zeroshot.load_images(s.paths, pre) for k, s in sets.items()},
                      CONCEPT, load_split(root / "sets", "forget_test", pre, tok),
                      load_split(root / "sets", "nonmembers", pre, tok), IDS,
                      load_split(root / "sets", "retain", pre, tok))


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_streamed_evaluation_equals_the_stacked_one(world, bundle):
    model, tok = bundle.model, bundle.tokenizer
    stacked = _flat(evaluate(model, tok, _stacked(world, bundle), mia_seeds=2))
    assert "mia.mean" in stacked and "mia_efficacy" in stacked
    # the same batches as the stacked tensor's: the same numbers, bit for bit
    assert _flat(evaluate(model, tok, _streamed(world, bundle, 512), mia_seeds=2)) == stacked
    # many small batches: equal up to float rounding
    x = _streamed(world, bundle, 4)
    small = _flat(evaluate(model, tok, x, mia_seeds=2))
    assert small.keys() == stacked.keys()
    for k, v in stacked.items():
        assert small[k] == pytest.approx(v, abs=1e-6), k
    # the corrupt forget-test image is skipped and counted, as load_pairs does
    assert (x.forget_test.report.samples, x.forget_test.report.corrupt_images) == (8, 1)


def test_pairs_stop_at_a_limit(world, bundle):
    root, _ = world
    src = stream.TarPairs(root / "sets" / "retain.tar", bundle.preprocess)
    assert [len(c) for _, c in src.batches(4, limit=7)] == [4, 3]
    assert [len(c) for _, c in src.batches(5)] == [5, 5, 2]
    data = load_split(root / "sets", "retain", bundle.preprocess, bundle.tokenizer)
    assert [len(c) for _, c in stream.TensorPairs(data).batches(4, limit=7)] == [4, 3]


def test_streamed_features_and_cosine_matrix(world, bundle):
    _, sets = world
    model, pre = bundle.model, bundle.preprocess
    paths = sets["identity"].paths
    ref = zeroshot.encode_images(model, zeroshot.load_images(paths, pre))
    src = stream.FileImages(paths, pre)
    assert torch.equal(stream.encode_images(model, src, 512), ref)
    assert torch.allclose(stream.encode_images(model, src, 2), ref, atol=1e-6)
    stacked = zeroshot.load_images(paths, pre)
    m_ref, rows_ref = cosine_matrix(model, bundle.tokenizer, sets["identity"], stacked, 2)
    m, rows = cosine_matrix(model, bundle.tokenizer, sets["identity"], src, 2, batch_size=3)
    assert rows == rows_ref and torch.allclose(m, m_ref, atol=1e-6)


def test_a_corrupt_or_missing_evaluation_image_is_a_data_error(world, bundle, tmp_path):
    _, sets = world
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(_jpeg(np.random.default_rng(1))[:60])  # truncated
    src = stream.file_images([*sets["object"].paths, bad], bundle.preprocess, "objects")
    with pytest.raises(DataError, match="bad.jpg cannot be decoded"):
        stream.encode_images(bundle.model, src, 4)
    with pytest.raises(DataError, match=r"missing.jpg of the objects set is missing \(1 of"):
        stream.file_images([*sets["object"].paths, tmp_path / "missing.jpg"], bundle.preprocess,
                           "objects")
    with pytest.raises(DataError, match="no evaluation images in the objects set"):
        stream.file_images([], bundle.preprocess, "objects")


def test_missing_split_is_a_data_error(world, bundle, tmp_path):
    root, sets = world
    with pytest.raises(DataError, match="forget_test.tar is missing"):
        eval_inputs(sets, bundle, CONCEPT, str(tmp_path), True, str(root / "celeba"), 3)


def test_imagenet_subset_is_seeded_and_keeps_the_concept(world, bundle):
    _, sets = world
    s = sets["object"]
    assert subsample(s, None, 0) is s and subsample(s, 100, 0) is s
    a, b = subsample(s, 5, 7), subsample(s, 5, 7)
    assert a.paths == b.paths and len(a.paths) == 5 and a.classnames == s.classnames
    assert a.paths == sorted(a.paths, key=s.paths.index)  # in the set's order
    assert any(subsample(s, 5, seed).paths != a.paths for seed in range(8, 12))
    idx = [s.paths.index(p) for p in a.paths]
    assert a.targets.tolist() == s.targets[idx].tolist()
    kept = subsample(s, 4, 7, keep=2)  # the concept's 3 images, besides 4 others
    assert len(kept.paths) == 7 and int((kept.targets == 2).sum()) == 3
    x = _streamed(world, bundle, 512, imagenet_images=5, seed=7)
    assert x.sets["object"].paths == a.paths and len(x.images["object"]) == 5
    assert x.sets["identity"] is sets["identity"]


def test_mia_efficacy_direction():
    rng = np.random.default_rng(0)
    members = rng.uniform(0.7, 0.9, 200)  # retain pairs: trained on, well matched
    nonmembers = rng.uniform(0.1, 0.3, 100)  # never seen
    # forget pairs still matched like training data: judged members -> efficacy 0
    assert mia_efficacy(members, nonmembers, rng.uniform(0.75, 0.85, 50)) == 0.0
    # forget pairs pushed down to the unseen level: judged non-members -> efficacy 1
    assert mia_efficacy(members, nonmembers, rng.uniform(0.15, 0.25, 50)) == 1.0
    half = np.r_[rng.uniform(0.75, 0.85, 30), rng.uniform(0.15, 0.25, 10)]
    assert mia_efficacy(members, nonmembers, half) == pytest.approx(0.25)
    # the direction comes from the data, not from "high cosine = member"
    assert mia_efficacy(-members, -nonmembers, -rng.uniform(0.75, 0.85, 50)) == 0.0
    with pytest.raises(ValueError, match="at least 5 members"):
        mia_efficacy(members[:4], nonmembers, members)


@pytest.mark.parametrize("value,ok", [(None, True), (2500, True), (1, True), (0, False),
                                      (-3, False), (2.5, False), (True, False), ("all", False)])
def test_imagenet_images_param(value, ok):
    over = {"evaluate": {"imagenet_images": value}}
    if ok:
        assert make_params(over).evaluate.imagenet_images == value
    else:
        with pytest.raises(ParamsError, match="evaluate.imagenet_images"):
            make_params(over)


def test_batch_size_param():
    assert make_params().evaluate.batch_size >= 1
    with pytest.raises(ParamsError, match="evaluate.batch_size must be >= 1"):
        make_params({"evaluate": {"batch_size": 0}})
