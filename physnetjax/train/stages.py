"""Training stages: the final stage, where the loss weighs energies more.

A run of T optimiser steps (or, with ``--max-time``, a budget B laid out by
:mod:`physnetjax.train.timebudget`) has progress p_t after step t (1-based)::

    p_t = t / T                      epoch-based runs (T = epochs · steps per epoch)
    p_t = planned budget progress    time-budgeted runs (TimeBudget.step_progress)

Step t belongs to the final stage when p_t > 1 − f (f = ``final_stage``), so the
last ⌈f · T⌉ steps of an epoch-based run (the last fraction f of the budget of a
timed one) minimise

    L = w_E,final · S_E / n_E + w_F · S_F / n_F + …      (w_E,final = ``final_energy_weight``)

instead of the first-stage loss with ``energy_weight`` (:mod:`physnetjax.train.loss`).
As in MACE's second (SWA) stage, forces are learned first and the energy is
refined at the end, when the learning rate has decayed. The stage is a function of
progress only, so a resumed run continues it exactly. Its step is compiled at first
use; in a time-budgeted run that compilation counts as training time of the epoch in
which the stage begins (seconds, once per invocation that reaches the stage).
"""

from __future__ import annotations

_BOUNDARY_TOLERANCE = 1e-9
"""A step that ends exactly at p = 1 − f (up to rounding) still belongs to the first stage."""


def in_final_stage(progress: float, final_stage: float) -> bool:
    """Whether the step that ends at training progress ``progress`` ∈ [0, 1] is in the final stage of fraction f."""
    return final_stage > 0.0 and progress > 1.0 - final_stage + _BOUNDARY_TOLERANCE


def epoch_run_progress(step: int, epochs: int, steps_per_epoch: int) -> float:
    """p_t = t / (epochs · steps_per_epoch) after step ``step`` (1-based) of an epoch-based run."""
    return step / (epochs * steps_per_epoch)
