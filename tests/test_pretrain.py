import torch

from pipeline.datasets.pairs import load_pairs
from pipeline.datasets.shards import list_shards
from pipeline.models.factory import build
from pipeline.models.structure import state_dict_hash
from pipeline.train.clip import TrainConfig, train

from .helpers import make_params


def _train(world, seed: int, steps: int, batch: int = 16):
    torch.manual_seed(seed)
    b = build("tiny-clip")
    data = load_pairs(list_shards(world / "laion"), b.preprocess, b.tokenizer)
    cfg = make_params({"pretrain": {"steps": steps, "batch_size": batch, "warmup": 5}}).pretrain
    history = train(b.model, data, TrainConfig.from_params(cfg, seed))
    return b.model, history


def test_same_seed_gives_identical_weights(micro_world):
    a, _ = _train(micro_world, seed=0, steps=12)
    b, _ = _train(micro_world, seed=0, steps=12)
    c, _ = _train(micro_world, seed=1, steps=12)
    assert state_dict_hash(a) == state_dict_hash(b)
    assert state_dict_hash(a) != state_dict_hash(c)


def test_training_lowers_the_clip_loss(micro_world):
    _, history = _train(micro_world, seed=0, steps=100, batch=32)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


def test_reader_report_reaches_the_trainer(micro_world):
    b = build("tiny-clip")
    data = load_pairs(list_shards(micro_world / "laion"), b.preprocess, b.tokenizer)
    assert data.report.samples == len(data.images) == len(data.captions) == len(data.tokens)
    assert data.images.shape[1:] == (3, b.image_size, b.image_size)
