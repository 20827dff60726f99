"""The models vidseek runs: the CLIP/SigLIP frame encoder and the grounder (adapter,
projector, LLM + LoRA)."""

from .encoder import DEFAULT_MODEL, IMAGE_PRECISIONS, EncoderInfo, FrameEncoder
from .grounder import Grounder, GrounderConfig, WindowConfig

__all__ = ["FrameEncoder", "EncoderInfo", "DEFAULT_MODEL", "IMAGE_PRECISIONS", "Grounder", "GrounderConfig", "WindowConfig"]
