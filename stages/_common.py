"""What every stage entry point shares: params loading and turning expected errors into one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from pipeline import params as params_mod
from pipeline.errors import SlugError


def run(main: Callable[[params_mod.Params], None]) -> None:
    """Load and validate params.yaml, call ``main``; expected errors exit 1 with one line."""
    name = Path(sys.modules[main.__module__].__file__).stem
    try:
        p = params_mod.load(os.environ.get("SLUG_PARAMS", "params.yaml"))
        main(p)
    except SlugError as exc:
        print(f"error: {name}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted", file=sys.stderr)
        sys.exit(130)


def eval_inputs(p: params_mod.Params, bundle):
    """The held-out evaluation data (every kind's images, the forget test split, non-members,
    the frequent CelebA names) with the concept's kind, as ``evaluate`` and ``compare`` read it."""
    from pipeline.datasets.celeba import CelebA
    from pipeline.datasets.pairs import load_pairs
    from pipeline.datasets.shards import Shard
    from pipeline.evaluate import sets as evalsets
    from pipeline.evaluate.unlearning import EvalInputs

    d = p.data
    sets = evalsets.standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                  p.eval.templates)
    kind = evalsets.concept_kind(p.concept, sets, p.concept_kind)
    images = evalsets.load(list(sets.values()), bundle.preprocess)
    images = {k: images[s.name] for k, s in sets.items()}
    sdir = Path(p.sets.out)
    forget_test = load_pairs([Shard(sdir / "forget_test.tar")], bundle.preprocess, bundle.tokenizer)
    nonmembers = load_pairs([Shard(sdir / "nonmembers.tar")], bundle.preprocess, bundle.tokenizer) \
        if p.sets.n_nonmembers else None
    frequent = CelebA(Path(d.celeba)).frequent()[: p.evaluate.frequent]
    return EvalInputs(sets, images, kind, p.concept, forget_test, nonmembers, frequent)


def kinds_and_target(p: params_mod.Params):
    """Class names and templates of every kind, the concept's kind and its index there."""
    from pipeline.evaluate.sets import concept_kind, standard_sets

    d = p.data
    sets = standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas, p.eval.templates)
    kind = concept_kind(p.concept, sets, p.concept_kind)
    names = [n.lower() for n in sets[kind].classnames]
    kinds = {k: (s.classnames, s.templates) for k, s in sets.items()}
    return kinds, kind, names.index(p.concept.replace("_", " ").lower())
