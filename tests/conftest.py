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


def _shared_build(base: Path):
    """The session's one build, in the run's base folder (a worker's base is inside it)."""
    from .micro import Build

    return Build((base.parent if WORKER else base) / "micro-build")


@pytest.hookimpl(trylast=True)  # after pytest's own configure made the run's temporary folder
def pytest_configure(config):
    """The whole suite (no paths, -k or -m given) starts the micro build before the workers
    exist; the workers then run below it in priority (nice 19), since the end-to-end tests wait
    for it. A selection starts the build only when one of its tests needs it (below)."""
    if WORKER:
        os.nice(19)
        return
    whole = (config.args_source == pytest.Config.ArgsSource.TESTPATHS
             and not config.option.keyword and not config.option.markexpr)
    if whole:
        config.micro_build = _shared_build(config._tmp_path_factory.getbasetemp())
        config.micro_build.start()


def pytest_unconfigure(config):
    if build := getattr(config, "micro_build", None):
        build.finish()


@pytest.fixture(scope="session", autouse=True)
def micro_build(request, tmp_path_factory):
    """The micro repository's build (``tests/micro.py``), started here in the background when a
    selected test needs it and the whole-suite start above did not: one build for the session,
    shared by every pytest-xdist worker."""
    build = _shared_build(tmp_path_factory.getbasetemp())
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

