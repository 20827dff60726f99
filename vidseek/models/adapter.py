"""The hierarchical adapter (ReVisionLLM) and the projector into the LLM.

- **Dense projection**: one token per frame from the frame's CLIP embedding and its pooled
  patch grid (each cell squeezed by a shared linear map, then the whole grid flattened, so
  *where* things are survives: direction of motion lives there). With ``motion`` the token
  also carries the grid's change since the previous frame, squeezed the same way: a tiny LM
  from scratch compares frames poorly (see ``vidseek.train.probe_dense_level``: it rarely
  rejects the reversed event), and the change makes motion a feature of each token, one the
  sparse compressor can also keep.
- **Sparse compressor**: a window of dense frame tokens → ``n`` sparse tokens by latent-query
  cross-attention followed by self-attention among the latents (Perceiver / Q-Former style).
  ReVisionLLM conditions this compression on the query, which cannot be precomputed; ours is
  query-independent so the sparse tokens are computed once at ingest, and the query meets
  the video inside the LLM. Each sparse *kind* (coarse level-1 windows, fine level-2
  windows) has its own latent queries.
- **Projector**: a two-layer MLP into the LLM's hidden size (VideoLLaMA3), plus a learned
  embedding per token kind so the LLM knows whether it reads frames or windows, plus a
  *relevance* channel: per time index, how similar its frames are to the query's CLIP text
  embedding (max, and max/mean relative to the rest of what is shown). ReVisionLLM conditions
  its adapter on the query; ours cannot (sparse tokens are cached before any query), so the
  query reaches the tokens here, at query time, at no cost: the frame embeddings are stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["AdapterConfig", "adapter_config_for", "HierarchicalAdapter", "Projector", "relevance_features",
           "DENSE", "FINE", "COARSE", "RELEVANCE_FEATURES"]

# Token kinds.
DENSE, FINE, COARSE = 0, 1, 2
RELEVANCE_FEATURES = 3


def relevance_features(similarity: torch.Tensor, unit: int) -> torch.Tensor:
    """``[T]`` frame–query cosine similarities → ``[ceil(T / unit), 3]`` per time index:
    the max similarity (×10), and the max and mean standardised over what is shown."""
    t = similarity.shape[0]
    n = -(-t // unit)
    padded = torch.full((n * unit,), float("nan"), device=similarity.device, dtype=similarity.dtype)
    padded[:t] = similarity
    chunks = padded.view(n, unit)
    peak = torch.nan_to_num(chunks, nan=-1.0).max(1).values
    mean = torch.nanmean(chunks, 1)

    def standardise(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean()) / (x.std(unbiased=False) + 1e-3)

    return torch.stack([10 * peak, standardise(peak), standardise(mean)], 1)


@dataclass(frozen=True)
class AdapterConfig:
    embed_dim: int  # CLIP embedding size D
    cells: int  # pooled patch-grid cells per frame (h2 * w2)
    cell_width: int  # channels of one pooled patch token
    hidden: int = 256  # adapter width
    cell_dim: int = 16  # each cell is squeezed to this before flattening the grid
    heads: int = 4
    fine_tokens: int = 2  # sparse tokens per fine (level-2) window
    coarse_tokens: int = 8  # sparse tokens per coarse (level-1) window
    max_window: int = 128  # longest window the compressor's position table covers
    # each dense token also sees its grid's change since the previous frame (False in
    # checkpoints made before the motion channel existed)
    motion: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def adapter_config_for(encoder_info: dict, hidden: int = 256) -> AdapterConfig:
    """Adapter dimensions matching an archive's encoder manifest."""
    side = encoder_info["image_size"] // encoder_info["patch_size"]
    pooled = -(-side // 2)
    return AdapterConfig(embed_dim=encoder_info["embed_dim"], cells=pooled * pooled,
                         cell_width=encoder_info["vision_width"], hidden=hidden, motion=True)


class HierarchicalAdapter(nn.Module):
    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        # Both inputs are normalised first: CLIP embeddings are unit vectors (entries ~0.1)
        # while patch tokens have entries ~1.5 and are alike across frames; unnormalised, the
        # grid drowns the embedding, which is the more telling of the two.
        self.embed_norm = nn.LayerNorm(config.embed_dim)
        self.cell_norm = nn.LayerNorm(config.cell_width)
        self.cell_proj = nn.Linear(config.cell_width, config.cell_dim)
        self.grid_proj = nn.Linear(config.cells * config.cell_dim, h)
        self.embed_proj = nn.Linear(config.embed_dim, h)
        self.dense_norm = nn.LayerNorm(h)
        if config.motion:
            self.motion_proj = nn.Linear(config.cell_width, config.cell_dim)
            self.motion_grid = nn.Linear(config.cells * config.cell_dim, h)
        # compressor: everything below is trained in stage 1B
        self.compressor = nn.ModuleDict({
            "positions": nn.Embedding(config.max_window, h),
            "latents": nn.ParameterList([
                nn.Parameter(torch.randn(config.fine_tokens, h) * 0.02),
                nn.Parameter(torch.randn(config.coarse_tokens, h) * 0.02)]),
            "cross": nn.MultiheadAttention(h, config.heads, batch_first=True),
            "cross_norm": nn.LayerNorm(h),
            "ffn": nn.Sequential(nn.Linear(h, 2 * h), nn.GELU(), nn.Linear(2 * h, h)),
            "ffn_norm": nn.LayerNorm(h),
            "self": nn.TransformerEncoderLayer(h, config.heads, 2 * h, dropout=0.0,
                                               batch_first=True, norm_first=True),
        })

    def dense(self, embeddings: torch.Tensor, grid: torch.Tensor,
              previous: torch.Tensor | None = None) -> torch.Tensor:
        """``[T, D]`` frame embeddings and ``[T, cells, C]`` grids → ``[T, hidden]``.
        ``previous`` ``[cells, C]`` is the grid of the frame before the first (None: the
        first frame is shown no change)."""
        normed = self.cell_norm(grid)
        cells = torch.nn.functional.gelu(self.cell_proj(normed)).flatten(-2)
        out = self.grid_proj(cells) + self.embed_proj(self.embed_norm(embeddings))
        if self.config.motion and normed.shape[0]:
            before = normed[:1] if previous is None else self.cell_norm(previous).unsqueeze(0)
            change = normed - torch.cat([before, normed[:-1]])
            out = out + self.motion_grid(torch.nn.functional.gelu(self.motion_proj(change)).flatten(-2))
        return self.dense_norm(out)

    def compress(self, frames: torch.Tensor, mask: torch.Tensor, kind: int) -> torch.Tensor:
        """``[B, T, hidden]`` dense tokens of ``B`` windows (``mask`` [B, T] marks real
        frames) → ``[B, n, hidden]`` sparse tokens of ``kind`` (FINE or COARSE)."""
        c = self.compressor
        t = frames.shape[1]
        if t > self.config.max_window:
            raise ValueError(f"a window of {t} frames exceeds the compressor's {self.config.max_window}")
        keys = frames + c["positions"].weight[:t]
        latents = c["latents"][kind - 1].unsqueeze(0).expand(frames.shape[0], -1, -1)
        attended, _ = c["cross"](latents, keys, keys, key_padding_mask=~mask, need_weights=False)
        x = c["cross_norm"](latents + attended)
        x = c["ffn_norm"](x + c["ffn"](x))
        return c["self"](x)

    def compressor_parameters(self) -> list[nn.Parameter]:
        return list(self.compressor.parameters())


class Projector(nn.Module):
    """Adapter tokens → LLM input embeddings, with a learned embedding per token kind."""

    def __init__(self, hidden: int, llm_hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden, llm_hidden), nn.GELU(),
                                 nn.Linear(llm_hidden, llm_hidden))
        self.kinds = nn.Embedding(3, llm_hidden)
        nn.init.normal_(self.kinds.weight, std=0.02)
        self.relevance = nn.Linear(RELEVANCE_FEATURES, llm_hidden)

    def forward(self, tokens: torch.Tensor, kind: int, relevance: torch.Tensor | None = None) -> torch.Tensor:
        """``relevance`` ``[N, 3]`` is per token (repeated over a window's tokens)."""
        out = self.mlp(tokens) + self.kinds.weight[kind]
        return out if relevance is None else out + self.relevance(relevance)
