"""The micro repository of the end-to-end tests: this repository's own dvc.yaml files and code on a
micro world, in a throw-away git repository, reproduced once per test session (``conftest``).

The micro world's tiny CLIP must *know* the concept before unlearning, or every method would
"forget" at once: its world is character-heavy and it is pretrained long enough that the
characters' evaluation images are named correctly (measured: Iron Man and every other character
1.00 after 150 steps of batch 64 on 2 x 600 samples, 27 s, against 0.00 for Elon Musk among the
24 identities; 500 steps on 2 x 1,000 identity-mixed samples were needed for Elon Musk)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pipeline.io import write_json

from .helpers import write_params

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

STYLES, OBJECTS = ["Pop_Art", "Van_Gogh"], ["Circle", "Heart"]
BUILD_TIMEOUT = 1500  # the build shares the machine with the unit tests
MICRO_PARAMS = {
    "concept": "Iron Man",
    "tinyworld": {"n_shards": 2, "samples_per_shard": 600, "celeba_per_identity": 2,
                  "imagenet_per_class": 2, "characters_per_class": 10, "canvas_per_pair": 1,
                  "holdout_samples": 60, "workers": 1,
                  "mix": {"identity": 0.2, "character": 0.3, "object": 0.32, "style": 0.22,
                          "distractor": 0.02}},
    "pretrain": {"steps": 150, "batch_size": 64, "eval_every": 150, "warmup": 10},
    "sets": {"n_retain": 60, "n_retain_val": 30, "n_nonmembers": 20},
    "pool": {"n": 60},
    "unlearn": {"max_evals": 8},
    "evaluate": {"mia_seeds": 2},
    "baselines": {"epochs": 1, "ssd": {"max_evals": 3}},
    "oracle": {"concepts": ["Iron Man"]},  # the retrain oracle: one more 150-step pretraining
    "sd": {"train": {"vae_steps": 3, "unet_steps": 3, "batch_size": 8},
           "search": {"target_images": 4, "images_per_prompt": 1, "retained_per_kind": 1},
           "evaluate": {"images_per_prompt": 2, "steps": 2, "retained_per_kind": 1,
                        "grid_images": 2}},
    "vlm": {"batch_size": 32, "grid_images": 2, "search": {"target_images": 4},
            "sets": {"retained_per_kind": 1, "search_images": 1, "eval_images": 2},
            "train": {"steps": 400, "width": 64, "lr": 3.0e-3, "batch_size": 32}},
    "canvas": {"styles": STYLES, "objects": OBJECTS,
               "methods": ["none"],  # the sweep's faithful rows; the selective step: run by hand
               "train": {"epochs": 1, "width": 8}, "finetune": {"steps": 3, "batch_size": 8},
               "search": {"images_per_prompt": 1, "retained_prompts": 3, "max_evals": 2,
                          "target": 1.0},  # untrained micro models: any step passes
               "evaluate": {"images_per_prompt": 1, "steps": 2}},
}


def sh(*cmd, cwd, timeout=600, **env_over):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", **env_over}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def make_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for item in ("dvc.yaml", "pipeline", "stages", "slug_cli", ".dvc/config", ".dvc/plots",
                 ".dvcignore", ".gitignore", "benchmarks", "tiny", "data/refs", "recipes",
                 "data/multi/concepts/.gitkeep", "data/multi/grads/.gitkeep"):
        src = ROOT / item
        if src.is_dir():
            # not this repository's locks and tables: the micro run writes its own (a copied
            # 450 KB sweep lock, parsed by every dvc command, cost the e2e tests about a minute)
            shutil.copytree(src, repo / item, ignore=shutil.ignore_patterns(
                "__pycache__", "dvc.lock", "metrics.json"))
        elif src.exists():
            (repo / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, repo / item)
    write_params(repo / "params.yaml", MICRO_PARAMS)
    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "micro", cwd=repo)
    return repo


def reproduced(tmp_path) -> Path:
    """A micro repository after one ``dvc repro`` of the main pipeline, committed (the baseline
    that experiments and reviews compare with)."""
    repo = make_repo(tmp_path)
    # the embedded default's training stages (which no test reruns) on every core; the rest as
    # the tests run stages: one thread (conftest), so a rerun in a test compares like with like
    cores = str(min(4, os.cpu_count() or 1))
    sh("dvc", "repro", "tiny/dvc.yaml", cwd=repo, timeout=BUILD_TIMEOUT, OMP_NUM_THREADS=cores)
    sh("dvc", "repro", cwd=repo, timeout=BUILD_TIMEOUT)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "dvc repro", cwd=repo)
    return repo


class Build:
    """The micro repository built once per test session in a background process, while the unit
    tests run (``conftest``). Under pytest-xdist every worker shares one ``folder``: the first to
    claim it starts the build, the others wait for its ``status.json``."""

    def __init__(self, folder: Path):
        self.folder, self.proc = folder, None
        self.status, self.log = folder / "status.json", folder / "build.log"

    def start(self) -> None:
        try:
            self.folder.mkdir(parents=True)  # the claim: atomic, one winner
        except FileExistsError:
            return
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.micro", str(self.folder)],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def repo(self) -> Path:
        """The built repository, once the build has finished; its log's tail if it failed."""
        deadline = time.monotonic() + BUILD_TIMEOUT + 120
        while not self.status.exists():
            if self.proc is not None and self.proc.poll() is not None and not self.status.exists():
                raise RuntimeError(f"the micro build died (rc {self.proc.returncode}):\n"
                                   f"{self.log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no micro build after {BUILD_TIMEOUT + 120} s: {self.folder}")
            time.sleep(1)
        status = json.loads(self.status.read_text())
        if status["error"]:
            raise RuntimeError(f"the micro build failed:\n{status['error'][-4000:]}")
        return Path(status["repo"])

    def finish(self) -> None:
        """The process that started the build waits for it (another worker may be waiting too);
        an interrupted session stops it."""
        if self.proc is not None:
            try:
                self.proc.wait()
            except KeyboardInterrupt:
                self.proc.terminate()
                raise


if __name__ == "__main__":  # python -m tests.micro FOLDER: Build's background process
    folder = Path(sys.argv[1])
    try:
        status = {"repo": str(reproduced(folder)), "error": ""}
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the waiting tests
        status = {"repo": "", "error": f"{type(exc).__name__}: {exc}"}
    write_json(folder / "status.json", status)  # atomic: the waiting tests see all or nothing
