"""Stage concept_grads@<concept> (``concepts``): one concept's forget gradient at the base weights
(``L_f`` over its forget-search pairs), for the joint strategy of ``multi_unlearn``; DVC caches it
per concept, so a concept already computed costs nothing in the next request."""

from __future__ import annotations

import argparse
import sys

import torch

from pipeline.entry import run
from pipeline.models.factory import from_params
from pipeline.params import Params
from pipeline.sets.build import load_split
from pipeline.sets.many import concept_dir
from pipeline.unlearn import multi as M


def main(p: Params) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("concept", help="an item of `concepts`")
    name = ap.parse_args(sys.argv[1:]).concept
    torch.manual_seed(p.seed)
    b = from_params(p.model, p.device)
    forget = load_split(concept_dir(p.multi.sets, name), "forget_search", b.preprocess,
                        b.tokenizer)
    g = p.gradients
    loss = M.save_forget_grad(M.grads_dir(p.multi.grads, name), b.model, forget, g.batch_size,
                              g.max_forget, name)
    print(f"concept_grads: {name}: L_f {loss:.4f} over {len(forget.images)} pairs")


if __name__ == "__main__":
    run(main)
