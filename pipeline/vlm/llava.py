"""What any LLaVA (the tiny one, or ``llava-hf/llava-1.5-7b-hf``) is asked and how it answers:
the prompt, ``<image>`` expanded as ``LlavaProcessor`` expands it, the features its projector
reads, and greedy answers through the model's own ``generate``."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from ..errors import ModelError, not_weights_only
from ..names import key

IMAGE_TOKEN = "<image>"
_PUNCT = re.compile(r"[^\w\s\-]")


def prompt(template: str, question: str) -> str:
    """The text a VLM is asked with (``template`` holds ``{question}`` and ``<image>``)."""
    if IMAGE_TOKEN not in template or "{question}" not in template:
        raise ModelError(f"the prompt template must hold {IMAGE_TOKEN} and {{question}}: "
                         f"{template!r}")
    return template.format(question=question)


@torch.no_grad()
def read_features(model, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """What the language model's projector reads of each image: the vision tower's hidden state
    at ``vision_feature_layer``, without the class token (the ``default`` strategy)."""
    cfg = model.config
    if cfg.vision_feature_select_strategy != "default":
        raise ModelError("only vision_feature_select_strategy 'default' is supported")
    out = []
    for i in range(0, len(pixels), batch_size):
        hs = model.model.vision_tower(pixels[i:i + batch_size],
                                      output_hidden_states=True).hidden_states
        out.append(hs[cfg.vision_feature_layer][:, 1:])
    return torch.cat(out)


def merged_embeddings(model, input_ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The language model's input: token embeddings with each ``<image>`` position replaced by
    the projected image feature, in order (what LLaVA's forward does with ``pixel_values``)."""
    embeds = model.get_input_embeddings()(input_ids)
    projected = model.model.multi_modal_projector(features).to(embeds.dtype)
    mask = (input_ids == model.config.image_token_index).unsqueeze(-1)
    return embeds.masked_scatter(mask, projected)


def encode(processor, template: str, image_tokens: int, questions, answers=None):
    """Prompt ids (``<image>`` expanded to ``image_tokens``, as ``LlavaProcessor`` expands it)
    and, with ``answers``, the answer ids ending in ``</s>``."""
    tok = processor.tokenizer
    texts = [prompt(template, q).replace(IMAGE_TOKEN, IMAGE_TOKEN * image_tokens)
             for q in questions]
    ids = [tok(t).input_ids for t in texts]
    if answers is None:
        return ids
    ans = [tok(" " + a, add_special_tokens=False).input_ids + [tok.eos_token_id]
           for a in answers]
    return ids, ans


@torch.no_grad()
def answer(model, processor, pixels: torch.Tensor, questions, template: str,
           max_new_tokens: int = 8) -> list[str]:
    """Greedy answers, through the model's own ``generate`` with ``pixel_values`` (what a user of
    the saved folder runs). Prompts of one batch must be as long (one question per call is)."""
    ids = encode(processor, template, model.config.image_seq_length, questions)
    if len({len(i) for i in ids}) != 1:
        raise ModelError("one batch of questions must encode to prompts of one length")
    input_ids = torch.tensor(ids)
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                         pixel_values=pixels.to(model.dtype), max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    return [s.strip() for s in processor.tokenizer.batch_decode(
        out[:, input_ids.shape[1]:], skip_special_tokens=True)]


def answers(model, processor, pixels: torch.Tensor, questions, template: str,
            batch_size: int = 64, max_new_tokens: int = 8) -> list[str]:
    """``answer`` for any mix of questions: grouped by question, batched, in input order."""
    out: list[str | None] = [None] * len(questions)
    for q in dict.fromkeys(questions):
        idx = [i for i, x in enumerate(questions) if x == q]
        for j in range(0, len(idx), batch_size):
            part = idx[j:j + batch_size]
            for i, a in zip(part, answer(model, processor, pixels[part], [q] * len(part),
                                         template, max_new_tokens)):
                out[i] = a
    return out


def names_it(text: str, names) -> bool:
    """Whether ``text`` names the concept: one of its ``names`` (a name and its aliases) appears in
    it as whole words, compared by the one name rule (``pipeline.names.key``), punctuation
    ignored (the reference: the name as a case-insensitive substring of the answer)."""
    said = f" {key(_PUNCT.sub(' ', text))} "
    return any(f" {key(_PUNCT.sub(' ', n))} " in said for n in names if key(n))


def preprocess(processor):
    """The VLM's own image preprocessing as a callable ``PIL image -> [3, H, W]`` tensor."""
    return lambda img: processor.image_processor(images=img, return_tensors="pt")[
        "pixel_values"][0]


def load(folder: str, device: str | torch.device = "cpu"):
    """A LLaVA folder (``LlavaForConditionalGeneration`` + its processor), offline; the image
    processor's PIL backend, which gives open_clip's preprocessing exactly (transformers'
    default torchvision backend differs by up to 0.015 after a bicubic downscale, measured)."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = Path(folder)
    if not (path / "config.json").exists():
        raise ModelError(f"{path} is not a transformers model folder (no config.json)")
    try:
        model = LlavaForConditionalGeneration.from_pretrained(str(path), local_files_only=True)
        processor = AutoProcessor.from_pretrained(str(path), local_files_only=True,
                                                  backend="pil")
    except pickle.UnpicklingError:
        raise not_weights_only(folder) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the VLM {folder!r}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), processor
