"""The grounder: hierarchical adapter + projector + a causal LM (with peft LoRA).

A *video input* is a sequence of adapter tokens with a kind (dense frames, fine or coarse
sparse windows) and a number of tokens per time index. Each token enters the LLM as
``projector(token) + kind embedding + embedding of its index's number`` (the embedding of
the text ``"12"``): with tied input/output embeddings the model can answer an index by
copying it, which is what ``From 12 to 15.`` asks for. The prompt follows the video tokens;
the answer follows the prompt and ends with the tokenizer's end-of-sequence token.

Batches are left-padded so every sequence ends at the same position: training reads the
logits of the last few positions only, and generation appends to a shared KV cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_replace_dir, atomic_write_text
from ..errors import ConfigError, ModelError
from .adapter import AdapterConfig, HierarchicalAdapter, Projector
from .answers import ParsedAnswer, confidence, mean_token_entropy, parse_answer
from .encoder import default_device
from .llm import load_causal_lm
from .presence import UNCALIBRATED, PresenceCalibration
from .quantize import check_quantizable, quantize_linear_layers
from .verifier import ClipVerifier, VerifierConfig

__all__ = ["WindowConfig", "GrounderConfig", "VideoTokens", "Generation", "Grounder",
           "CHECKPOINT_FORMAT", "STAGES"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vidseek-grounder/1"
# "verifier" last: it reads the LM's word embeddings, which stage 2 still changes when the
# whole LM is tuned
STAGES = ("1a", "1b", "2", "verifier")


class StoredGrids(Protocol):
    """A video's stored pooled patch grids (``vidseek.store``'s dense tokens)."""

    def grid(self, start: int = 0, stop: int | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class WindowConfig:
    """How a video is cut at each level (all in sampled frames)."""

    coarse: int = 60  # level-1 window, compressed at ingest (the paper: 2 min for 1 h videos)
    fine: int = 10  # level-2 window, compressed at query time from dense tokens
    dense: int = 32  # at most this many frames are shown one token per frame
    coarse_per_call: int = 8  # level-1 windows per LLM call (a segment)
    fine_per_call: int = 16  # level-2 windows per LLM call


@dataclass(frozen=True)
class GrounderConfig:
    llm: str  # hub id, local dir, GGUF file or "smollm2"
    adapter: AdapterConfig
    windows: WindowConfig = field(default_factory=WindowConfig)
    tuning: str = "lora"  # "lora": peft LoRA on a pretrained LM; "full": train every LM weight
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    # the level-1 clip verifier (:mod:`.verifier`); None in checkpoints made before it existed
    verifier: VerifierConfig | None = None

    def __post_init__(self) -> None:
        if self.tuning not in ("lora", "full"):
            raise ConfigError(f"tuning must be 'lora' or 'full', not {self.tuning!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "lora_targets": list(self.lora_targets)}

    @classmethod
    def from_dict(cls, data: dict) -> "GrounderConfig":
        return cls(llm=data["llm"], adapter=AdapterConfig(**data["adapter"]),
                   windows=WindowConfig(**data["windows"]), tuning=data["tuning"],
                   lora_rank=data["lora_rank"], lora_alpha=data["lora_alpha"],
                   lora_targets=tuple(data["lora_targets"]),
                   verifier=VerifierConfig(**data["verifier"]) if data.get("verifier") else None)


@dataclass
class VideoTokens:
    """Adapter tokens ``[N, hidden]`` of one LLM input; ``per_index`` tokens per time index;
    ``relevance`` ``[N / per_index, 3]`` the query-relevance features of each time index."""

    tokens: torch.Tensor
    kind: int
    per_index: int = 1
    relevance: torch.Tensor | None = None

    @property
    def n_indices(self) -> int:
        return self.tokens.shape[0] // self.per_index


@dataclass(frozen=True)
class Generation:
    text: str
    answer: ParsedAnswer
    mean_entropy: float
    confidence: float  # R = 1 / mean token entropy
    p_absent: float  # probability of starting "Not Present." at the first answer token
    forced: bool = False  # the answer was made to start "From" (see Grounder.generate)
    forced_from: str = ""  # then: the token the LM had chosen instead


def _file_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class Grounder(nn.Module):
    def __init__(self, config: GrounderConfig, llm: nn.Module, tokenizer, device: str | None = None) -> None:
        device = device or default_device()  # cuda when torch sees a GPU
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.llm = llm
        self.adapter = HierarchicalAdapter(config.adapter)
        hidden = llm.get_input_embeddings().weight.shape[1]
        self.projector = Projector(config.adapter.hidden, hidden)
        self.verifier = (ClipVerifier(config.verifier, hidden, config.adapter.hidden)
                         if config.verifier else None)
        self.device_name = device
        self._number_ids: list[list[int]] = []
        eos = tokenizer.eos_token_id
        self.eos_id = int(eos)
        absent = tokenizer(" Not Present.", add_special_tokens=False)["input_ids"]
        self._absent_first = int(absent[0])
        span = tokenizer(" From 1 to 2.", add_special_tokens=False)["input_ids"]
        # None when a tokenizer starts both answers alike (a bare space token): then no
        # answer can be told a span at its first token, and none is forced.
        self._span_first = int(span[0]) if int(span[0]) != self._absent_first else None
        self.to(device)
        self.llm_int8 = False  # see quantize_llm: then for queries only
        self.fingerprint = ""  # of the saved checkpoint; empty until saved or loaded
        self.adapter_fingerprint = ""  # of the adapter alone: what sparse tokens depend on
        self.manifest: dict = {}

    # -- construction -----------------------------------------------------------------
    @classmethod
    def create(cls, config: GrounderConfig, device: str | None = None, seed: int = 0) -> "Grounder":
        """A fresh grounder: the LLM's pretrained weights, new adapter, projector and LoRA."""
        llm, tokenizer = load_causal_lm(config.llm)
        torch.manual_seed(seed)
        if config.tuning == "lora":
            from peft import LoraConfig, get_peft_model

            llm = get_peft_model(llm, LoraConfig(
                r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                target_modules=list(config.lora_targets), bias="none"))
        return cls(config, llm, tokenizer, device)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> "Grounder":
        """Load a checkpoint written by :meth:`save`."""
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            raise ModelError(f"{path}: not a grounding checkpoint (no manifest.json)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != CHECKPOINT_FORMAT:
            raise ModelError(f"{path}: unsupported checkpoint format {manifest.get('format')!r}")
        config = GrounderConfig.from_dict(manifest["config"])
        if config.tuning == "full":
            llm, tokenizer = load_causal_lm(path / "llm")
        else:
            from peft import PeftModel

            llm, tokenizer = load_causal_lm(config.llm)
            llm = PeftModel.from_pretrained(llm, str(path / "lora"), is_trainable=True)
        grounder = cls(config, llm, tokenizer, device)
        from safetensors.torch import load_file

        state = load_file(str(path / "adapter.safetensors"), device=grounder.device_name)
        grounder.adapter.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("adapter.")})
        grounder.projector.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("projector.")})
        if grounder.verifier is not None:
            grounder.verifier.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("verifier.")})
        grounder.fingerprint = manifest["fingerprint"]
        grounder.adapter_fingerprint = manifest["adapter_fingerprint"]
        grounder.manifest = manifest
        grounder.eval()
        return grounder

    def quantize_llm(self) -> None:
        """Answer queries with an int8 LM from now on: LoRA merged into the base weights, then
        every linear layer of the LM (the output head included) quantised to int8
        (:mod:`vidseek.models.quantize`). On CPU a grounded query takes about half the time.
        The adapter, projector and clip verifier stay float32, so sparse tokens do not change. A quantised
        grounder answers queries only: it cannot be trained or saved. CPU and float32 only."""
        if self.llm_int8:
            return
        check_quantizable(self.llm, f"grounding LM {self.config.llm}")  # before changing it
        llm = self.llm
        if hasattr(llm, "merge_and_unload"):  # peft: fold the LoRA deltas into the weights
            llm = llm.merge_and_unload()
        quantize_linear_layers(llm, f"grounding LM {self.config.llm}")
        self.llm = llm
        self.llm_int8 = True
        for p in self.parameters():
            p.requires_grad_(False)
        logger.info("grounding LM %s quantised to int8", self.config.llm)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> dict:
        """Write adapter + projector + LoRA (peft format) or the tuned LLM, and a manifest.

        Written to a temporary directory and renamed over ``path``, so a reader never sees a
        half-written checkpoint. Returns the manifest.
        """
        if self.llm_int8:
            raise ModelError("an int8-quantised grounder answers queries only; save the original")
        from safetensors.torch import save as save_tensors
        from safetensors.torch import save_file

        path = Path(path)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        state = {f"adapter.{k}": v.detach().cpu().contiguous() for k, v in self.adapter.state_dict().items()}
        state.update({f"projector.{k}": v.detach().cpu().contiguous()
                      for k, v in self.projector.state_dict().items()})
        if self.verifier is not None:
            state.update({f"verifier.{k}": v.detach().cpu().contiguous()
                          for k, v in self.verifier.state_dict().items()})
        save_file(state, str(tmp / "adapter.safetensors"))
        # what sparse tokens depend on: the adapter alone, hashed as it would be saved
        adapter_fp = hashlib.sha256(save_tensors(
            {k: v for k, v in state.items() if k.startswith("adapter.")})).hexdigest()[:16]
        if self.config.tuning == "full":
            self.llm.save_pretrained(str(tmp / "llm"))
            self.tokenizer.save_pretrained(str(tmp / "llm"))
            weights = sorted((tmp / "llm").glob("*.safetensors"))
        else:
            self.llm.save_pretrained(str(tmp / "lora"))
            weights = sorted((tmp / "lora").glob("*.safetensors"))
        manifest = {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
            "fingerprint": _file_digest([tmp / "adapter.safetensors", *weights]),
            "adapter_fingerprint": adapter_fp, "saved": time.time(), **(extra or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        atomic_replace_dir(tmp, path)
        self.fingerprint, self.adapter_fingerprint = manifest["fingerprint"], adapter_fp
        self.manifest = manifest
        return manifest

    @property
    def presence_calibration(self) -> PresenceCalibration:
        """The level-1 presence model fitted for this checkpoint (:mod:`.presence`), or the
        uncalibrated fallback."""
        data = getattr(self, "manifest", {}).get("presence_calibration")
        return PresenceCalibration.from_dict(data) if data else UNCALIBRATED

    def record_presence_calibration(self, path: str | os.PathLike, calibration: PresenceCalibration) -> None:
        """Store ``calibration`` in the checkpoint at ``path`` (its manifest, rewritten
        atomically). Training the checkpoint further drops it: it was fitted to these weights."""
        manifest_path = Path(path) / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") != self.fingerprint:
            raise ModelError(f"{path}: the checkpoint there is not this grounder")
        manifest["presence_calibration"] = calibration.to_dict()
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
        self.manifest = manifest

    # -- parameter groups -----------------------------------------------------------
    def llm_trainable_parameters(self) -> list[nn.Parameter]:
        if self.config.tuning == "full":
            return list(self.llm.parameters())
        return [p for n, p in self.llm.named_parameters() if "lora_" in n]

    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """What a training stage updates (everything else is frozen by :meth:`freeze_for`).

        1a: adapter + projector + LoRA (or the LM); 1b: the sparse compressor only;
        2: LoRA (or the LM) only; verifier: the clip verifier only (:meth:`add_verifier`
        gives a checkpoint without one a new one).
        """
        if stage == "1a":
            return [*self.adapter.parameters(), *self.projector.parameters(),
                    *self.llm_trainable_parameters()]
        if stage == "1b":
            return self.adapter.compressor_parameters()
        if stage == "2":
            return self.llm_trainable_parameters()
        if stage == "verifier":
            if self.verifier is None:
                raise ConfigError("this grounder has no clip verifier (add_verifier first)")
            return list(self.verifier.parameters())
        raise ConfigError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")

    def add_verifier(self, config: VerifierConfig = VerifierConfig(), seed: int = 0) -> None:
        """Give the grounder a new, untrained clip verifier (a checkpoint made before the
        verifier existed gets one this way; its config is saved with the checkpoint)."""
        hidden = self.llm.get_input_embeddings().weight.shape[1]
        with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
            torch.manual_seed(seed)
            self.verifier = ClipVerifier(config, hidden, self.config.adapter.hidden).to(self.device)
        self.config = replace(self.config, verifier=config)

    def query_words(self, query: str) -> torch.Tensor:
        """``[L, llm_hidden]``: the LM's input embeddings of the query's tokens (the clip
        verifier reads the query through them; never trained through it)."""
        ids = torch.tensor(self._text_ids(query), device=self.device)
        return self.llm.get_input_embeddings()(ids).detach().float()

    def verify(self, query: str, frames: Sequence[torch.Tensor], similarity: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[clips]`` verifier logits: does ``query``'s event happen in each clip (its dense
        tokens ``[t, hidden]`` and frame–query cosines ``[t]``)?"""
        if self.verifier is None:
            raise ModelError("this grounder has no clip verifier")
        if not frames:
            return torch.zeros(0, device=self.device)
        words = self.query_words(query)
        return self.verifier([words] * len(frames), [f.float() for f in frames], [s.float() for s in similarity])

    def freeze_for(self, stage: str) -> list[nn.Parameter]:
        if self.llm_int8:
            raise ModelError("an int8-quantised grounder answers queries only; train the original")
        trainable = self.stage_parameters(stage)
        ids = {id(p) for p in trainable}
        for p in self.parameters():
            p.requires_grad_(id(p) in ids)
        return trainable

    # -- video tokens -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.adapter.parameters()).device

    def dense_tokens(self, embeddings: np.ndarray | torch.Tensor, grid: np.ndarray | torch.Tensor,
                     previous: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        """Frame embeddings ``[T, D]`` and pooled grids ``[T, h2, w2, C]`` (or ``[T, cells, C]``)
        → ``[T, hidden]``. ``previous``: the grid of the frame before the first, if any (the
        adapter's motion channel reads the change from it)."""
        emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32), device=self.device)
        grd = torch.as_tensor(np.asarray(grid, dtype=np.float32), device=self.device)
        prev = None
        if previous is not None:
            prev = torch.as_tensor(np.asarray(previous, dtype=np.float32), device=self.device)
            prev = prev.reshape(-1, grd.shape[-1])
        return self.adapter.dense(emb, grd.reshape(grd.shape[0], -1, grd.shape[-1]), prev)

    def video_dense_tokens(self, embeddings: np.ndarray, grids: StoredGrids, a: int, b: int) -> torch.Tensor:
        """``[b - a, hidden]`` dense tokens of frames ``[a, b)`` of a stored video (the grid of
        frame ``a - 1`` gives the first frame its motion)."""
        if a > 0 and self.config.adapter.motion:
            grid = grids.grid(a - 1, b)  # one read: each read rebuilds the carried-forward grid
            return self.dense_tokens(embeddings[a:b], grid[1:], grid[0])
        return self.dense_tokens(embeddings[a:b], grids.grid(a, b))

    def sparse_tokens(self, dense: torch.Tensor, window: int, kind: int) -> torch.Tensor:
        """Cut ``[T, hidden]`` dense tokens into windows of ``window`` frames (the last one may
        be shorter) and compress each: ``[ceil(T / window), n, hidden]``."""
        t, h = dense.shape
        n = -(-t // window)
        padded = torch.zeros(n * window, h, device=dense.device, dtype=dense.dtype)
        padded[:t] = dense
        mask = torch.zeros(n * window, dtype=torch.bool, device=dense.device)
        mask[:t] = True
        return self.adapter.compress(padded.view(n, window, h), mask.view(n, window), kind)

    # -- LLM inputs -------------------------------------------------------------------
    def _index_embeddings(self, count: int) -> torch.Tensor:
        """``[count, llm_hidden]``: the mean token embedding of the text of each index."""
        while len(self._number_ids) < count:
            i = len(self._number_ids)
            self._number_ids.append(self.tokenizer(str(i), add_special_tokens=False)["input_ids"])
        ids = self._number_ids[:count]
        width = max(len(x) for x in ids)
        table = torch.tensor([x + [x[-1]] * (width - len(x)) for x in ids], device=self.device)
        mask = torch.tensor([[1.0] * len(x) + [0.0] * (width - len(x)) for x in ids], device=self.device)
        emb = self.llm.get_input_embeddings()(table)
        return (emb * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    def video_embeddings(self, video: VideoTokens) -> torch.Tensor:
        relevance = None
        if video.relevance is not None:
            relevance = video.relevance.to(self.device).repeat_interleave(video.per_index, dim=0)
        projected = self.projector(video.tokens, video.kind, relevance)
        index = self._index_embeddings(video.n_indices).repeat_interleave(video.per_index, dim=0)
        return projected + index

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _batch(self, videos: Sequence[VideoTokens], prompts: Sequence[str],
               answers: Sequence[str] | None = None):
        """Left-padded ``(inputs_embeds, attention_mask, position_ids, targets)``."""
        embed = self.llm.get_input_embeddings()
        rows, answer_ids = [], []
        for n, (video, prompt) in enumerate(zip(videos, prompts)):
            ids = self._text_ids(prompt)
            if answers is not None:
                ans = self._text_ids(" " + answers[n]) + [self.eos_id]
                answer_ids.append(ans)
                ids = ids + ans
            text = embed(torch.tensor(ids, device=self.device))
            rows.append(torch.cat([self.video_embeddings(video), text]))
        length = max(r.shape[0] for r in rows)
        hidden = rows[0].shape[1]
        inputs = torch.zeros(len(rows), length, hidden, device=self.device, dtype=rows[0].dtype)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for n, row in enumerate(rows):
            inputs[n, length - row.shape[0]:] = row
            mask[n, length - row.shape[0]:] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        targets = None
        if answers is not None:
            width = max(len(a) for a in answer_ids)
            targets = torch.full((len(rows), width), -100, dtype=torch.long, device=self.device)
            for n, ans in enumerate(answer_ids):
                targets[n, width - len(ans):] = torch.tensor(ans, device=self.device)
        return inputs, mask, positions, targets

    def loss(self, videos: Sequence[VideoTokens], prompts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        """Mean cross-entropy of the answer tokens (the prompt and video are not scored)."""
        inputs, mask, positions, targets = self._batch(videos, prompts, answers)
        width = targets.shape[1]
        out = self.llm(inputs_embeds=inputs, attention_mask=mask, position_ids=positions,
                       logits_to_keep=width + 1, use_cache=False)
        logits = out.logits[:, :-1]  # position p predicts token p + 1
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                           targets.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def generate(self, videos: Sequence[VideoTokens], prompts: Sequence[str],
                 max_new_tokens: int = 12, force_spans: int = 0) -> list[Generation]:
        """Greedy answers for a batch, with their mean token entropy and R.

        ``force_spans``: when fewer than this many answers start "From" at the first token,
        the answers that abstained least surely (lowest P(Not)) are made to start "From"
        and go on in the same batch: one prefill, not a second call. Their entropy covers
        the tokens they generated after it; ``forced_from`` names the token they chose.
        """
        if not videos:
            return []
        inputs, mask, positions, _ = self._batch(videos, prompts)
        embed = self.llm.get_input_embeddings()
        out = self.llm(inputs_embeds=inputs, attention_mask=mask, position_ids=positions,
                       logits_to_keep=1, use_cache=True)
        batch = len(videos)
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        step_logits: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        first = torch.softmax(out.logits[:, -1].float(), -1)[:, self._absent_first]
        forced = [False] * batch
        forced_from = [""] * batch
        for step in range(max_new_tokens):
            logits = out.logits[:, -1]
            nxt = logits.argmax(-1)
            if step == 0 and force_spans:
                for b in self._rows_to_force(nxt, first, force_spans):
                    forced[b] = True
                    forced_from[b] = self.tokenizer.decode([int(nxt[b])])
                    nxt[b] = self._span_first
            for b in range(batch):
                if not done[b]:
                    tokens[b].append(int(nxt[b]))
                    if not (step == 0 and forced[b]):  # a forced token is not generated
                        step_logits[b].append(logits[b])
            done |= nxt == self.eos_id
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=self.device)], 1)
            positions = positions[:, -1:] + 1
            out = self.llm(inputs_embeds=embed(nxt)[:, None], attention_mask=mask,
                           position_ids=positions, past_key_values=out.past_key_values,
                           use_cache=True, logits_to_keep=1)
        results = []
        for b, video in enumerate(videos):
            ids = [t for t in tokens[b] if t != self.eos_id]
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            entropy = mean_token_entropy(torch.stack(step_logits[b])) if step_logits[b] else float("inf")
            results.append(Generation(text, parse_answer(text, video.n_indices), entropy,
                                      confidence(entropy), float(first[b]), forced[b], forced_from[b]))
        return results

    @torch.no_grad()
    def presence_logits(self, videos: Sequence[VideoTokens], prompts: Sequence[str],
                        batch_size: int = 128) -> torch.Tensor:
        """``[B]`` log P(yes) − log P(no) of each input's first answer token: its answer to a
        presence prompt (``Does the <event> happen?``), read from one prefill, no decoding."""
        yes, no = self._text_ids(" yes")[0], self._text_ids(" no")[0]
        out = []
        for first in range(0, len(videos), batch_size):
            inputs, mask, positions, _ = self._batch(videos[first:first + batch_size],
                                                     prompts[first:first + batch_size])
            logits = self.llm(inputs_embeds=inputs, attention_mask=mask, position_ids=positions,
                              logits_to_keep=1, use_cache=False).logits[:, -1].float()
            logp = torch.log_softmax(logits, -1)
            out.append(logp[:, yes] - logp[:, no])
        return torch.cat(out) if out else torch.zeros(0)

    def _rows_to_force(self, first_tokens: torch.Tensor, p_absent: torch.Tensor, wanted: int) -> list[int]:
        """The rows to force into a span: as many as ``wanted`` minus the rows that start one,
        taken from the others by increasing P(Not). A row counts as a span by its first token:
        one that starts "From" and then fails to parse is not replaced by another."""
        if self._span_first is None:
            return []
        starts = first_tokens == self._span_first
        missing = wanted - int(starts.sum())
        if missing <= 0:
            return []
        others = [b for b in range(len(first_tokens)) if not starts[b]]
        return sorted(others, key=lambda b: float(p_absent[b]))[:missing]

