"""Training offline: a tiny CLIP-style encoder on the procedural world (and footage), and the
grounder's stages (ReVisionLLM's 1A, 1B, 2) from an archive and annotations.

``import vidseek.train`` (``import vidseek`` does not load it).
"""

from ..models.grounder import STAGES as GROUNDING_STAGES
from .calibration import CalibrationReport, fit_presence_calibration
from .dense_probe import DenseProbeReport, probe_dense_level
from .grounding import GroundingTrainConfig, StageReport, TrainProgress, train_grounder_from_archive
from .world_encoder import WorldEncoderReport, train_world_encoder

__all__ = ["GROUNDING_STAGES", "CalibrationReport", "fit_presence_calibration", "DenseProbeReport",
           "probe_dense_level", "GroundingTrainConfig", "StageReport", "TrainProgress",
           "train_grounder_from_archive", "WorldEncoderReport", "train_world_encoder"]
