"""Stage vlm_train (embedded default only): a tiny LLaVA around the tiny CLIP's vision tower
(frozen), its projector and language model trained to name the identity, character or object in
the tiny world's labelled images, saved as a transformers folder that loads offline as
``llava-hf/llava-1.5-7b-hf`` does."""

from __future__ import annotations

import torch

from pipeline.entry import metrics_path, run
from pipeline.evaluate.sets import standard_sets
from pipeline.io import atomic_dir, write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import VLM_KINDS, Params
from pipeline.vlm import tiny
from pipeline.vlm.llava import preprocess, prompt


def main(p: Params) -> None:
    v, t, d = p.vlm, p.vlm.train, p.data
    torch.manual_seed(p.seed)
    bundle = from_params(p.model, "cpu", "fp32")
    sets = standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas, p.eval.templates)
    items = tiny.training_items(sets, VLM_KINDS)
    asked = {k: getattr(v.questions, k) for k in VLM_KINDS}
    texts = [prompt(v.template, q) for q in asked.values()] + \
        [n for k in VLM_KINDS for n in sets[k].classnames]
    cfg = tiny.TinyVLMConfig.from_params(t, p.seed)
    model, processor = tiny.build(bundle.model, texts, cfg)
    feats = tiny.stream_features(model, [x[0] for x in items], preprocess(processor),
                                  v.batch_size)
    info = tiny.train(model, processor, feats, [asked[k] for _, k, _ in items],
                      [n for *_, n in items], v.template, cfg,
                      log=lambda s, loss: print(f"  step {s}: loss {loss:.4f}", flush=True))
    with atomic_dir(t.out) as tmp:  # never a half-written model folder
        model.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
    write_json(metrics_path("vlm_train"), {
        **info, "images": {k: sum(1 for _, x, _ in items if x == k) for k in VLM_KINDS},
        "vocab_size": len(processor.tokenizer), "feature_layer": t.feature_layer,
        "parameters": sum(x.numel() for x in model.parameters()),
        "vision_tower_from": bundle.describe(), "clip_sha256": state_dict_hash(bundle.model),
        "seed": p.seed})
    print(f"vlm_train: {len(items)} images, {info['steps']} steps, final loss "
          f"{info['final_loss']:.4f} ({info['seconds']:.0f}s)")


if __name__ == "__main__":
    run(main, embedded=True)
