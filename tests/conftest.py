import os
import shutil
from pathlib import Path

# one thread per test process: under `python3 dev.py test` the micro build and the pytest-xdist
# workers share the machine's cores (set before torch starts its thread pool; the build and every
# stage the tests start inherit it, so reruns compare like with like)
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

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


def uses_micro_repo(item) -> bool:
    return "micro_repo" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    """The tests on the micro repository last: the unit tests run while it is built."""
    items.sort(key=uses_micro_repo)  # stable: each group keeps its order


WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... under pytest-xdist


@pytest.fixture(scope="session", autouse=True)
def micro_build(request, tmp_path_factory):
    """Starts the micro repository's build (``tests/micro.py``) in the background when a selected
    test needs it: one build for the session, shared by every pytest-xdist worker."""
    from .micro import Build

    base = tmp_path_factory.getbasetemp()
    build = Build((base.parent if WORKER else base) / "micro-build")
    if any(uses_micro_repo(i) for i in request.session.items):
        build.start()
    yield build
    build.finish()


@pytest.fixture(scope="session")
def micro_repo(micro_build, tmp_path_factory) -> Path:
    """The micro repository after one ``dvc repro``, committed; each worker gets its own copy
    (the tests change params, run experiments and reviews in it, one after another)."""
    built = micro_build.repo()
    if not WORKER:
        return built
    mine = tmp_path_factory.mktemp("e2e") / "repo"
    shutil.copytree(built, mine, symlinks=True)
    return mine


@pytest.fixture(scope="module")
def tiny():
    """The untrained tiny CLIP (seed 0), one per test module."""
    from pipeline.models.factory import build

    torch.manual_seed(0)
    return build("tiny-clip")

