"""Time-budgeted training: the learning-rate schedule as a function of progress through ``--max-time``.

With a budget ``B`` (s) the schedule of an ``--epochs E`` run is stretched onto
the budget: training progress p ∈ [0, 1] replaces ``epoch / E``, and

    constant, plateau:  lr(p) = lr
    exponential:        lr(p) = lr · decay_rate^(p · E / decay_epochs)
    cosine:             lr(p) = lr · p / w                                   p < w = warmup_epochs / E
                        lr(p) = lr_end + (lr − lr_end) · (1 + cos(π (p − w) / (1 − w))) / 2   otherwise
                        (lr_end = final_lr_factor · lr)

Progress is planned per epoch from the elapsed training time ``T`` (s, summed over
epochs and over resumed invocations) and the estimated duration ``D`` (s) of one
epoch (training, validation and checkpoint, re-measured every epoch)::

    R = ⌊(B − T) / D⌋              epochs that still fit in the budget (0 → stop)
    B_eff = T + R · D              end of the last epoch that fits
    p_k = (T + k / n · D) / B_eff  after step k of the n steps of this epoch

so the last step of the last epoch that fits has p = 1 (the schedule's end value)
whatever the estimate's error. p never decreases (a faster estimate cannot raise
the learning rate again) and is at most 1.

T counts neither compilation nor the float64 force check (a correctness check at
best checkpoints, milliseconds once compiled). The first epoch of every invocation
compiles the training step, validation and the force check: it counts towards T as
n · s only, s the step time measured on its steps (blocked, the first step's compile
time excluded), and sets D only on a fresh run, to n · s (an underestimate,
corrected by the next epoch, keeps p from running ahead). An epoch of a single step
cannot be split so: it counts 0, and D comes from the next epoch (p, and with a
warm-up the learning rate, stay 0 until then).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

_FIT_TOLERANCE = 1e-9
"""Relative slack so that an epoch ending exactly at the budget counts as fitting."""


def progress_factor(config, progress: float) -> float:
    """lr(p) / learning_rate for ``config.schedule`` at training progress p ∈ [0, 1] (formulas above)."""
    p = min(max(progress, 0.0), 1.0)
    if config.schedule in ("constant", "plateau"):
        return 1.0
    if config.schedule == "exponential":
        return config.decay_rate ** (p * config.epochs / config.decay_epochs)
    warmup = min(config.warmup_epochs / config.epochs, 1.0)
    if p < warmup or warmup == 1.0:
        return p / warmup
    end = config.final_lr_factor
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * (p - warmup) / (1.0 - warmup)))


@dataclasses.dataclass
class TimeBudget:
    """Host-side plan of a run with a time budget (seconds); saved in checkpoints for resume.

    elapsed: training time T spent so far; epoch_seconds: the current estimate D of one
    epoch (None before the first epoch); progress: the last step's p; best_elapsed: T
    when the best checkpoint was saved (early stopping in time).
    """

    budget: float
    elapsed: float = 0.0
    epoch_seconds: Optional[float] = None
    progress: float = 0.0
    best_elapsed: float = 0.0

    def epochs_left(self, epoch_seconds: Optional[float] = None) -> int:
        """R = ⌊(B − T) / D⌋ (0 when no complete epoch fits)."""
        duration = epoch_seconds or self.epoch_seconds
        if duration is None:
            return 1
        return max(0, math.floor((self.budget - self.elapsed) / duration + _FIT_TOLERANCE))

    def step_progress(self, step: int, steps_per_epoch: int, epoch_seconds: Optional[float] = None) -> float:
        """p after step ``step`` (1-based) of the current epoch; ``epoch_seconds`` overrides D (first epoch).

        At least one epoch is planned: a run whose budget is shorter than one epoch
        decays over that epoch.
        """
        duration = epoch_seconds or self.epoch_seconds
        if duration is None:
            return self.progress
        end = self.elapsed + max(1, self.epochs_left(duration)) * duration
        planned = (self.elapsed + step / steps_per_epoch * duration) / end
        self.progress = min(1.0, max(self.progress, planned))
        return self.progress

    def finish_epoch(self, duration: Optional[float], first_of_invocation: bool = False) -> None:
        """Add an epoch's training time (s, compilation and force check left out) to T; make it the estimate D.

        The first epoch of an invocation (``duration`` = n · s) keeps the saved estimate D,
        or sets it on a fresh run. ``duration`` None (a first epoch of one step, all of it
        compilation as far as can be told) adds nothing and leaves D to the next epoch.
        """
        if duration is None:
            return
        self.elapsed += duration
        if not first_of_invocation or self.epoch_seconds is None:
            self.epoch_seconds = duration

    def state(self) -> dict:
        return dataclasses.asdict(self)
