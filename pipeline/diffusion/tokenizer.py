"""A transformers ``CLIPTokenizer`` built offline from open_clip's shipped BPE vocabulary.

Its ids equal open_clip's (``<|startoftext|>`` 49406, ``<|endoftext|>`` 49407, padding with id 0
as open_clip pads), so a diffusion pipeline's prompts reach the text encoder exactly as SLUG's
captions reached the open_clip text tower.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ..io import write_json, write_text


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_vocab(folder: str | Path) -> tuple[Path, Path]:
    """vocab.json and merges.txt in the layout ``CLIPTokenizer.from_pretrained`` reads."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    units = list(_bytes_to_unicode().values())
    vocab = units + [u + "</w>" for u in units] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder = Path(folder)
    write_json(folder / "vocab.json", {t: i for i, t in enumerate(vocab)})
    write_text(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder / "vocab.json", folder / "merges.txt"


def build_tokenizer(folder: str | Path, context_length: int):
    """Write the vocabulary into ``folder`` and return a ``CLIPTokenizer`` saved there too."""
    from transformers import CLIPTokenizer

    vocab, merges = write_vocab(folder)
    tok = CLIPTokenizer(str(vocab), str(merges), pad_token="!", model_max_length=context_length)
    tok.save_pretrained(str(folder))
    json.loads((Path(folder) / "tokenizer_config.json").read_text())  # written and readable
    return tok
