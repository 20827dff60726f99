"""Tiny CLIP checkpoints built offline from a config.

The model hub is unreachable on many machines (CI, air-gapped archives), yet the loading
path must be the real one. :func:`build_tiny_clip` writes a complete checkpoint directory
(weights, character-level tokenizer, image processor) that ``FrameEncoder.load`` reads like
any hub model. Its random weights are only good for plumbing; train it
(:mod:`vidseek.train.encoder`) before ranking anything with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["build_tiny_clip", "write_char_tokenizer"]


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP byte-level BPE uses for bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_char_tokenizer(out_dir: str | Path, max_length: int = 77,
                         words: list[str] | None = None) -> None:
    """Write a CLIP tokenizer whose vocabulary is single characters, plus one token per word
    of ``words`` (byte-pair merges spelling each out): text made of those words is tokenized
    about as short as CLIP's own BPE tokenizes common English."""
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab_list = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in sorted(set(words or [])):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        for i in range(1, len(pieces)):
            left, right = "".join(pieces[:i]), pieces[i]
            if f"{left} {right}" not in merges:
                merges.append(f"{left} {right}")
                vocab_list.append(left + right)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    (out / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges))
    tok = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), model_max_length=max_length)
    tok.save_pretrained(str(out))


def build_tiny_clip(
    out_dir: str | Path,
    image_size: int = 64,
    patch_size: int = 8,
    width: int = 64,
    layers: int = 2,
    embed_dim: int = 64,
    max_text_tokens: int = 64,
    seed: int = 0,
    text_width: int | None = None,
    words: list[str] | None = None,
) -> Path:
    """Build a randomly initialised CLIP and save it as a loadable checkpoint directory.

    ``text_width`` sets the text tower apart from the vision tower (CLIP ViT-B/32: 512 and
    768); ``words`` become single tokens (see :func:`write_char_tokenizer`).
    """
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    heads = max(1, width // 32)
    text_width = text_width or width
    out = Path(out_dir)
    write_char_tokenizer(out, max_length=max_text_tokens, words=words)
    vocab_size = len(json.loads((out / "vocab.json").read_text()))
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=text_width,
                         intermediate_size=text_width * 4, num_hidden_layers=layers,
                         num_attention_heads=heads if text_width == width else max(1, text_width // 64),
                         max_position_embeddings=max_text_tokens, bos_token_id=vocab_size - 2,
                         eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1),
        vision_config=dict(image_size=image_size, patch_size=patch_size, hidden_size=width,
                           intermediate_size=width * 4, num_hidden_layers=layers,
                           num_attention_heads=heads),
        projection_dim=embed_dim,
    )
    CLIPModel(config).save_pretrained(str(out))
    # Written by hand: CLIPImageProcessor.save_pretrained wants torchvision for nothing here.
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True,
        "size": {"shortest_edge": image_size}, "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size}, "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_rescale": True,
        "rescale_factor": 1 / 255, "resample": 3,
    }, indent=2))
    return out
