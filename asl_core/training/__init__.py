"""Training: the configuration, the one loop every objective runs through, and the CLI."""

from asl_core.objectives import method_names
from asl_core.training.config import TrainConfig
from asl_core.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "method_names", "train"]
