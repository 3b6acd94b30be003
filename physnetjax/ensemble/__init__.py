"""Ensembles of PhysNet models: stacked members evaluated by one compiled call, their spread and its calibration.

* :mod:`physnetjax.ensemble.model`: :class:`PhysNetEnsemble` (mean outputs + spreads).
* :mod:`physnetjax.ensemble.calibration`: the spread's scale fitted on validation data,
  and the rank correlation between spread and error.
* :mod:`physnetjax.ensemble.combine`: several single-model checkpoints → one ensemble
  checkpoint (``python -m physnetjax.ensemble combine CKPT... --out DIR``).
* :mod:`physnetjax.ensemble.calibrate_checkpoint`: the scale of an ensemble checkpoint
  fitted on held-out frames (``python -m physnetjax.ensemble calibrate CKPT --data FILE... --out DIR``).

Only the model and the calibration functions are imported here; the two checkpoint
tools sit above the checkpoint package and are imported from their modules.
"""

from physnetjax.ensemble.calibration import fit_calibration_scale, gaussian_nll, spearman_rank_correlation
from physnetjax.ensemble.model import (
    PhysNetEnsemble,
    ensemble_statistics,
    is_ensemble,
    map_members,
    member_count_mismatch,
    member_params,
    stack_members,
)

__all__ = [
    "PhysNetEnsemble",
    "ensemble_statistics",
    "fit_calibration_scale",
    "gaussian_nll",
    "is_ensemble",
    "map_members",
    "member_count_mismatch",
    "member_params",
    "spearman_rank_correlation",
    "stack_members",
]
