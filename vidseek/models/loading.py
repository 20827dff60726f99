"""How an archive prepares its models: the grounder's fit to the archive's encoder, and the
CPU-only int8 options.

int8 inference is a CPU option: on a GPU the models already run in half precision, so the
options are skipped there with a warning (a service configured once may run on either).
"""

from __future__ import annotations

import logging
import os

from ..errors import ModelError
from .adapter import adapter_config_for
from .encoder import FrameEncoder
from .grounder import Grounder

__all__ = ["prepare_encoder", "load_grounder", "check_grounder_fits"]

logger = logging.getLogger(__name__)


def prepare_encoder(encoder: FrameEncoder, *, int8_text: bool = False) -> FrameEncoder:
    """Apply the encoder options (in place) and return the encoder."""
    if int8_text and not encoder.text_int8:
        if encoder.device == "cpu":
            encoder.quantize_text()
        else:
            logger.warning("int8_text ignored: the encoder runs on %s, not cpu", encoder.device)
    return encoder


def check_grounder_fits(grounder: Grounder, encoder_info: dict) -> Grounder:
    """ModelError unless the grounder's adapter takes this encoder's embeddings and cells."""
    want = adapter_config_for(encoder_info)
    have = grounder.config.adapter
    if (have.embed_dim, have.cells, have.cell_width) != (want.embed_dim, want.cells, want.cell_width):
        raise ModelError(
            f"grounding checkpoint expects {have.embed_dim}-d embeddings and {have.cells} "
            f"cells of {have.cell_width} channels; this archive's encoder gives "
            f"{want.embed_dim}, {want.cells} and {want.cell_width}")
    return grounder


def load_grounder(path: str | os.PathLike, *, device: str | None, encoder_info: dict | None,
                  int8_llm: bool = False) -> Grounder:
    """Load a grounding checkpoint for an archive built with ``encoder_info`` (its manifest's
    encoder entry; None skips the check) and apply the int8 LM option."""
    grounder = Grounder.load(path, device=device)
    if encoder_info is not None:
        check_grounder_fits(grounder, encoder_info)
    if int8_llm and not grounder.llm_int8:
        if grounder.device.type == "cpu":
            grounder.quantize_llm()
        else:
            logger.warning("int8_llm ignored: the grounder runs on %s, not cpu", grounder.device)
    return grounder
