"""physnetjax: PhysNet in JAX/Flax/e3x with an energy/force path that is right by construction."""

from physnetjax.errors import (
    LengthUnitWarning,
    OutputPathError,
    PhysNetInputError,
    PhysNetInputWarning,
    RunStoppedError,
)
from physnetjax.checkpoint import CheckpointError, load_checkpoint, load_train_state, save_checkpoint
from physnetjax.model import EF, PhysNet
from physnetjax.ensemble import PhysNetEnsemble
from physnetjax.model_dispersion import with_dispersion
from physnetjax.neighbors import (
    Batch,
    MoleculeBatcher,
    apply_batch,
    batch_from_neighbors,
    batch_molecules,
    batch_periodic,
    neighbor_list,
)
from physnetjax.predict import init_params, jitted_apply, predict, predict_periodic
from physnetjax.calculator import PhysNetCalculator
from physnetjax.training_record import TrainingRecord

__version__ = "0.1.0"

__all__ = [
    "EF",
    "Batch",
    "MoleculeBatcher",
    "CheckpointError",
    "LengthUnitWarning",
    "OutputPathError",
    "PhysNetInputError",
    "PhysNetInputWarning",
    "RunStoppedError",
    "TrainingRecord",
    "PhysNet",
    "PhysNetCalculator",
    "PhysNetEnsemble",
    "__version__",
    "apply_batch",
    "batch_from_neighbors",
    "batch_molecules",
    "batch_periodic",
    "init_params",
    "jitted_apply",
    "load_checkpoint",
    "load_train_state",
    "neighbor_list",
    "predict",
    "predict_periodic",
    "save_checkpoint",
    "with_dispersion",
]
