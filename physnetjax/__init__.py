"""physnetjax: PhysNet in JAX/Flax/e3x with an energy/force path that is right by construction."""

from physnetjax.checkpoint import CheckpointError, load_checkpoint, load_train_state, save_checkpoint
from physnetjax.model import EF, PhysNet
from physnetjax.neighbors import Batch, apply_batch, batch_molecules
from physnetjax.predict import init_params, predict

__version__ = "0.1.0"

__all__ = [
    "EF",
    "Batch",
    "CheckpointError",
    "PhysNet",
    "__version__",
    "apply_batch",
    "batch_molecules",
    "init_params",
    "load_checkpoint",
    "load_train_state",
    "predict",
    "save_checkpoint",
]
