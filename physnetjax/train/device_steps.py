"""Jitted train and validation steps on device-resident frames (:mod:`physnetjax.train.device_batches`).

``train_step(state, frames, rows, lr_scale)`` gathers the batch of ``rows`` (D, b)
— for an ensemble (K, D, b), member k's batch — inside the jitted program and takes
one optimiser step of :func:`physnetjax.train.optim.step_functions` (or its vmapped
ensemble form): the host sends only a few integers per step.

``validate(params, frames, rows)`` runs the evaluation over all S batches of a
fixed validation set ``rows`` (S, D, b) as one ``lax.scan`` and returns the error
sums totalled over the batches (the loss and metrics follow on the host from
these sums, :mod:`physnetjax.train.loss`): one dispatch and one device→host copy
per validation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from physnetjax.train.device_batches import gather_batch


def make_device_steps(train_step, eval_step, shapes, ensemble: bool) -> tuple:
    """(train_step, validate), jitted, from the un-jitted steps.

    Args:
      train_step: ``(state, batch, labels, lr_scale) → (state, loss, grad_norm)`` (for an
        ensemble vmapped over members: batch and labels carry a leading member axis).
      eval_step: ``(params, batch, labels)`` → the single-model tuple (loss, sums, predictions)
        or the ensemble tuple (member_loss, member_sums, mean_loss, mean_sums, predictions).
      shapes: the :class:`~physnetjax.train.batching.BatchShapes` of one device's batch.
      ensemble: whether the steps are the ensemble's.

    Returns:
      train_step(state, frames, rows, lr_scale) with the state donated, and
      validate(params, frames, rows) → sums {term: (abs, sq, count)} (single model) or
      (member_sums, mean_sums) (ensemble), each summed over the S batches.
    """

    def gather(frames, rows):
        return gather_batch(frames, rows, shapes)

    def indexed_train_step(state, frames, rows, lr_scale):
        if ensemble:
            batch, labels = jax.vmap(lambda member_rows: gather(frames, member_rows))(rows)
        else:
            batch, labels = gather(frames, rows)
        return train_step(state, batch, labels, lr_scale)

    def validate(params, frames, rows):
        def one_batch(_, batch_rows):
            out = eval_step(params, *gather(frames, batch_rows))
            return None, (out[1], out[3]) if ensemble else out[1]

        _, sums = jax.lax.scan(one_batch, None, rows)
        return jax.tree_util.tree_map(lambda x: jnp.sum(x, axis=0), sums)

    return jax.jit(indexed_train_step, donate_argnums=0), jax.jit(validate)
