"""Training PhysNet models: ``python -m physnetjax.train`` (see :mod:`physnetjax.train.loop`)."""

from physnetjax.train.config import TrainConfig
from physnetjax.train.forcecheck import ForceCheckError, finite_difference_force_error
from physnetjax.train.loop import Trainer, resume, train

__all__ = ["ForceCheckError", "TrainConfig", "Trainer", "finite_difference_force_error", "resume", "train"]
