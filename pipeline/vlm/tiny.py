"""A tiny LLaVA, built and trained inside the pipeline on the tiny world (embedded default only).

Every part is a standard transformers class, so that the saved folder loads offline with
``LlavaForConditionalGeneration.from_pretrained`` and ``AutoProcessor.from_pretrained``, as
``llava-hf/llava-1.5-7b-hf`` does:

* vision tower: the tiny CLIP's, converted to ``CLIPVisionModel`` (``vision_tower``), frozen, as
  LLaVA keeps it;
* projector: LLaVA's two-layer GELU MLP from the read hidden state to the language model;
* language model: a small ``LlamaForCausalLM``;
* processor: ``LlavaProcessor`` = ``CLIPImageProcessorPil`` (open_clip's preprocessing, the same
  tensor) + a byte-level BPE tokenizer trained on the tiny world's questions and answers (a
  small vocabulary keeps the output head cheap), ``<image>`` expanded to one token per patch.

Training teaches the projector and the language model to answer a question about an image with
the concept's name (``"What's the name of the person in this image?" -> "Elon Musk"``). The frozen
tower's read hidden states are computed once per image; each step then runs the projector and the
language model only, exactly as LLaVA merges them (``llava.merged_embeddings``, checked equal to the
model's own forward in the tests).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError, NumericalError
from ..progress import progress
from . import vision_tower
from .llava import IMAGE_TOKEN, encode, merged_embeddings, read_features

SPECIAL = ["<pad>", "<s>", "</s>", IMAGE_TOKEN]


@dataclass
class TinyVLMConfig:
    """The tiny VLM's size, its training and the seed; ``feature_layer`` is the vision tower's
    hidden state the projector reads (LLaVA's ``vision_feature_layer``)."""
    vocab_size: int
    width: int
    layers: int
    heads: int
    steps: int
    batch_size: int
    lr: float
    feature_layer: int
    seed: int

    @classmethod
    def from_params(cls, t, seed: int) -> "TinyVLMConfig":
        """From the ``vlm.train`` params group."""
        return cls(vocab_size=t.vocab_size, width=t.width, layers=t.layers, heads=t.heads,
                   steps=t.steps, batch_size=t.batch_size, lr=t.lr,
                   feature_layer=t.feature_layer, seed=seed)


def build_tokenizer(texts, vocab_size: int):
    """A byte-level BPE tokenizer (any string encodes) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    bos = SPECIAL.index("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>",
                                   extra_special_tokens={"image_token": IMAGE_TOKEN})


def build(clip, texts, cfg: TinyVLMConfig):
    """An untrained tiny LLaVA around ``clip``'s vision tower, and its processor."""
    from transformers import (
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer(texts, cfg.vocab_size)
    vcfg = vision_tower.vision_config(clip)
    vision_tower.read_blocks(vcfg.num_hidden_layers, cfg.feature_layer)
    patches = (vcfg.image_size // vcfg.patch_size) ** 2
    tcfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.width,
                       intermediate_size=2 * cfg.width, num_hidden_layers=cfg.layers,
                       num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                       max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       tie_word_embeddings=True)
    config = LlavaConfig(vision_config=vcfg, text_config=tcfg,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         image_seq_length=patches, vision_feature_layer=cfg.feature_layer,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu",
                         tie_word_embeddings=True)
    model = LlavaForConditionalGeneration(config)
    tower = vision_tower.to_clip_vision_model(clip)
    model.model.vision_tower.load_state_dict(tower.state_dict())
    model.model.vision_tower.requires_grad_(False)
    processor = LlavaProcessor(image_processor=vision_tower.image_processor(
        clip.visual.preprocess_cfg), tokenizer=tokenizer, patch_size=vcfg.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return model.eval(), processor


def training_items(sets: dict, kinds) -> list[tuple[Path, str, str]]:
    """``(image path, kind, name)`` of every image of the labelled sets (``evaluate.sets``) of
    ``kinds``."""
    return [(path, k, sets[k].classnames[int(t)]) for k in kinds
            for path, t in zip(sets[k].paths, sets[k].targets)]


@torch.no_grad()
def stream_features(model, paths, preprocess, batch_size: int = 256) -> torch.Tensor:
    """``read_features`` of the images at ``paths``, decoded a batch at a time."""
    from PIL import Image

    out = []
    for i in progress(range(0, len(paths), batch_size), desc="tower features"):
        pixels = torch.stack([preprocess(Image.open(x).convert("RGB"))
                              for x in paths[i:i + batch_size]])
        out.append(read_features(model, pixels, batch_size))
    return torch.cat(out)


def batch(prompts, answers, pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 except the answer)."""
    rows = [p + a for p, a in zip(prompts, answers)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        r = p + a
        ids[i, :len(r)] = torch.tensor(r)
        labels[i, len(p):len(r)] = torch.tensor(a)
        mask[i, :len(r)] = 1
    return ids, mask, labels


def train(model, processor, features: torch.Tensor, questions, answers, template: str,
          cfg: TinyVLMConfig, log=None) -> dict:
    """Train the projector and the language model (the vision tower stays frozen) to answer
    ``questions[i]`` about image ``i`` (``features``: ``read_features`` of it) with
    ``answers[i]``."""
    if not (len(features) == len(questions) == len(answers)) or not len(features):
        raise ModelError("features, questions and answers must be as many, and not none")
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    prompts, ans = encode(processor, template, model.config.image_seq_length, questions,
                          answers)
    pad = processor.tokenizer.pad_token_id
    params = [p for n, p in model.named_parameters() if ".vision_tower." not in n
              and not n.startswith("vision_tower")]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (
        1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    model.train()
    start, losses = time.perf_counter(), []
    for step in progress(range(cfg.steps), desc="tiny VLM"):
        idx = torch.randint(len(features), (cfg.batch_size,), generator=g).tolist()
        ids, mask, labels = batch([prompts[i] for i in idx], [ans[i] for i in idx], pad)
        embeds = merged_embeddings(model, ids, features[idx])
        loss = model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        if not torch.isfinite(loss):
            raise NumericalError(f"tiny VLM loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log and (step + 1) % max(1, cfg.steps // 10) == 0:
            log(step + 1, sum(losses[-50:]) / len(losses[-50:]))
    model.eval()
    return {"steps": cfg.steps, "final_loss": sum(losses[-50:]) / len(losses[-50:]),
            "seconds": round(time.perf_counter() - start, 1),
            "trained_parameters": sum(p.numel() for p in params)}
