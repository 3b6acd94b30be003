"""Jitted train and validation steps on device-resident frames (:mod:`physnetjax.train.device_batches`).

``train_step(state, frames, rows, lr_scale)`` gathers the batch of ``rows`` (D, b)
— for an ensemble (K, D, b), member k's batch — inside the jitted program and takes
one optimiser step of :func:`physnetjax.train.optim.step_functions` (or its member-mapped
ensemble form): the host sends only a few integers per step.

``evaluate_rows(params, frames, rows)`` gathers the batch of ``rows`` (D, b) and
returns the evaluation step's outputs with the gathered labels; the trainer
dispatches it for every batch of a split and copies all results to the host at
once (one synchronisation per validation). One compiled program serves the
validation and test splits.
"""

from __future__ import annotations

import jax

from physnetjax.train.device_batches import gather_batch
from physnetjax import compilation


def make_device_steps(train_step, eval_step, shapes, ensemble: bool) -> tuple:
    """(train_step, validate), jitted, from the un-jitted steps.

    Args:
      train_step: ``(state, batch, labels, lr_scale) → (state, loss, grad_norm)`` (for an
        ensemble mapped over members: batch and labels carry a leading member axis).
      eval_step: ``(params, batch, labels)`` → the single-model tuple (loss, sums, predictions)
        or the ensemble tuple (member_loss, member_sums, mean_loss, mean_sums, predictions).
      shapes: the :class:`~physnetjax.train.batching.BatchShapes` of one device's batch.
      ensemble: whether the steps are the ensemble's.

    Returns:
      train_step(state, frames, rows, lr_scale) with the state donated, and
      evaluate_rows(params, frames, rows) → (eval_step outputs, labels).
    """

    def gather(frames, rows):
        return gather_batch(frames, rows, shapes)

    def indexed_train_step(state, frames, rows, lr_scale):
        if ensemble:
            batch, labels = jax.vmap(lambda member_rows: gather(frames, member_rows))(rows)
        else:
            batch, labels = gather(frames, rows)
        batch, labels = jax.lax.optimization_barrier((batch, labels))
        return train_step(state, batch, labels, lr_scale)

    def evaluate_rows(params, frames, rows):
        batch, labels = gather(frames, rows)
        return eval_step(params, batch, labels), labels

    return compilation.jit(indexed_train_step, donate_argnums=0), compilation.jit(evaluate_rows)
