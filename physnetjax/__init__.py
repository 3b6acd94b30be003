"""physnetjax: PhysNet in JAX/Flax/e3x with an energy/force path that is right by construction.

The public names below other than the exceptions are imported on first use (PEP 562):
``import physnetjax`` and the light modules beneath it (the command lines' parsers,
``physnetjax.errors``) do not import JAX, so a tool's ``--help`` and its argument errors
answer without the seconds JAX and Flax take to import.
"""

from __future__ import annotations

import importlib
import sys
import types

from physnetjax.errors import (
    CloseContactWarning,
    LengthUnitWarning,
    OutputPathError,
    PhysNetInputError,
    PhysNetInputWarning,
    RunStoppedError,
)

__version__ = "0.1.0"

_LAZY = {
    "physnetjax.checkpoint": ("CheckpointError", "load_checkpoint", "load_train_state", "save_checkpoint"),
    "physnetjax.model": ("EF", "PhysNet"),
    "physnetjax.ensemble": ("PhysNetEnsemble",),
    "physnetjax.model_dispersion": ("with_dispersion",),
    "physnetjax.neighbors": ("Batch", "MoleculeBatcher", "apply_batch", "batch_from_neighbors", "batch_molecules",
                             "batch_periodic", "neighbor_list"),
    "physnetjax.predict": ("init_params", "jitted_apply", "predict", "predict_periodic"),
    "physnetjax.calculator": ("PhysNetCalculator",),
    "physnetjax.training_record": ("TrainingRecord",),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}
"""Public name → the module that defines it, imported when the name is first asked for."""


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'physnetjax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted({*globals(), *_MODULE_OF})


class _Package(types.ModuleType):
    """The package module: importing the submodule ``physnetjax.predict`` binds the package attribute ``predict``,
    which here stays the function :func:`physnetjax.predict.predict` (as an eager ``from ... import predict`` left
    it), never the module."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _MODULE_OF.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "EF",
    "Batch",
    "MoleculeBatcher",
    "CheckpointError",
    "CloseContactWarning",
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
