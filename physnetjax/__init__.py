"""physnetjax: PhysNet in JAX/Flax/e3x with an energy/force path that is right by construction."""

from physnetjax.model import EF, PhysNet
from physnetjax.neighbors import Batch, apply_batch, batch_molecules
from physnetjax.predict import init_params, predict

__version__ = "0.1.0"

__all__ = ["EF", "Batch", "PhysNet", "__version__", "apply_batch", "batch_molecules", "init_params", "predict"]
