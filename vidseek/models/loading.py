"""How an archive prepares its models: the grounder's fit to the archive's encoder, and the
CPU-only int8 options.

int8 inference is a CPU option: on a GPU the models already run in half precision, so the
options are skipped there with a warning (a service configured once may run on either).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

from ..errors import ModelError
from .adapter import adapter_config_for
from .encoder import FrameEncoder
from .grounder import Grounder

__all__ = ["prepare_encoder", "load_grounder", "check_grounder_fits", "GrounderSlot"]

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


class GrounderSlot:
    """An archive's grounding checkpoint: loaded once, on first use (server threads share
    it, so loading is locked), fitted to the archive's encoder, with the int8 LM option.

    ``recorded`` returns the checkpoint path the archive names (None: no checkpoint);
    ``encoder_info`` the archive's encoder entry (None while the archive is new).
    """

    def __init__(self, recorded: Callable[[], str | None], encoder_info: Callable[[], dict | None],
                 device: str | None, int8_llm: bool) -> None:
        self._recorded = recorded
        self._encoder_info = encoder_info
        self._device = device
        self._int8_llm = int8_llm
        self._grounder: Grounder | None = None
        self._lock = threading.Lock()

    def get(self) -> Grounder | None:
        with self._lock:
            if self._grounder is None:
                path = self._recorded()
                if path is not None:
                    self._grounder = self.load(path)
        return self._grounder

    def load(self, path: str | os.PathLike) -> Grounder:
        """A checkpoint loaded for this archive (not yet its own: see :meth:`adopt`)."""
        return load_grounder(path, device=self._device, encoder_info=self._encoder_info(),
                             int8_llm=self._int8_llm)

    def adopt(self, grounder: Grounder) -> None:
        with self._lock:
            self._grounder = grounder
