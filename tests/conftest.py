import shutil
from pathlib import Path

import pytest
import torch

from pipeline.tinyworld.generate import generate

from .helpers import world_config

MICRO = world_config(seed=7, n_shards=2, samples_per_shard=80, celeba_per_identity=2,
                     holdout_samples=40, imagenet_per_class=2, characters_per_class=2,
                     canvas_per_pair=1, workers=1)


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory) -> Path:
    """A micro tiny world (2 shards x 80 samples, a few eval images per class), made once."""
    root = tmp_path_factory.mktemp("micro") / "tiny"
    generate(MICRO, root)
    return root


@pytest.fixture
def world_copy(micro_world, tmp_path) -> Path:
    """A private copy of the micro world that a test may damage."""
    dst = tmp_path / "tiny"
    shutil.copytree(micro_world, dst)
    return dst


@pytest.fixture(scope="session")
def micro_repo(tmp_path_factory) -> Path:
    """The micro repository (``tests/micro.py``) after one ``dvc repro``, committed; made once
    for every end-to-end test."""
    from .micro import reproduced

    return reproduced(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def tiny():
    """The untrained tiny CLIP (seed 0), one per test module."""
    from pipeline.models.factory import build

    torch.manual_seed(0)
    return build("tiny-clip")

