"""The one way tests get params: the repository's params.yaml with a test's overrides on top (no
second copy of the defaults)."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline import params as params_mod

ROOT = Path(__file__).resolve().parents[1]


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def params_dict(over: dict | None = None) -> dict:
    """params.yaml as a dict, with ``over`` merged in (nested mappings merge, the rest replaces)."""
    return merge(yaml.safe_load((ROOT / "params.yaml").read_text()), over or {})


def make_params(over: dict | None = None) -> params_mod.Params:
    return params_mod.from_dict(params_dict(over))


def write_params(path: Path, over: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(params_dict(over), sort_keys=False))
    return path


def world_config(seed: int = 0, **tinyworld):
    """A ``WorldConfig`` from params.yaml's ``tinyworld`` group with ``tinyworld`` overrides."""
    from pipeline.tinyworld.generate import WorldConfig

    return WorldConfig.from_params(make_params({"tinyworld": tinyworld}).tinyworld, seed)


class Ran:
    """What a command run in this process left: exit code, stdout, stderr."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_module(module: str, *args: str, env: dict | None = None, cwd: Path | None = None) -> Ran:
    """``python -m module args...`` inside this process (the libraries are imported once for the
    whole test session instead of once per command); exit code and output as a subprocess would
    give them. An exception the command does not turn into an exit code propagates: a traceback
    is a test failure either way."""
    import contextlib
    import io
    import os
    import runpy
    import sys

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_env, old_cwd = sys.argv, dict(os.environ), os.getcwd()
    code = 0
    try:
        sys.argv = [module, *args]
        os.environ.update(env or {})
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exc:
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                    code = 1
                else:
                    code = exc.code or 0
    finally:
        sys.argv = old_argv
        os.environ.clear()
        os.environ.update(old_env)
        os.chdir(old_cwd)
    return Ran(code, out.getvalue(), err.getvalue())


def random_pairs(n: int, caption: str, seed: int):
    """``n`` image-caption pairs of random 32-px images (seeded) and ``caption.format(i)``."""
    import open_clip
    import torch

    from pipeline.datasets.pairs import PairData
    from pipeline.datasets.shards import ReadReport

    g = torch.Generator().manual_seed(seed)
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=32)
    caps = [caption.format(i) for i in range(n)]
    return PairData(torch.randn(n, 3, 32, 32, generator=g), tok(caps), caps, ReadReport())
