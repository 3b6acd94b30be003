"""Optimisers, learning-rate schedules, reduce-on-plateau, EMA and the jitted train/eval steps.

Update of one step (all inside one ``jax.jit``)::

    g = ∇_θ L(θ; batch)                        (global batch, any number of devices)
    u, opt = optimizer(clip_by_global_norm(g))  (learning rate from the schedule)
    θ ← θ + s · u                               (s: host-side reduce-on-plateau scale)
    θ_ema ← d_t θ_ema + (1 − d_t) θ,  d_t = min(decay, (1 + t) / (10 + t))

The EMA warm-up d_t keeps the average from being dominated by the random
initial weights in short runs; the EMA weights are validated and saved.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from physnetjax import compilation
from physnetjax.train.loss import PREDICTIONS, global_error_sums, loss_from_sums


@flax.struct.dataclass
class TrainState:
    """Device-side state: step count, raw and EMA parameters, optimiser state."""

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any


def make_schedule(config, steps_per_epoch: int):
    """Learning rate per step (an optax schedule) from a :class:`TrainConfig`.

    constant / plateau: ``learning_rate``; exponential: lr · decay_rate^(step / (decay_epochs ·
    steps_per_epoch)); cosine: linear warm-up over ``warmup_epochs`` then cosine decay to
    ``final_lr_factor`` · lr at the last epoch.
    """
    lr = config.learning_rate
    if config.schedule in ("constant", "plateau"):
        return optax.constant_schedule(lr)
    if config.schedule == "exponential":
        return optax.exponential_decay(lr, transition_steps=max(1, int(config.decay_epochs * steps_per_epoch)),
                                       decay_rate=config.decay_rate)
    total = max(2, config.epochs * steps_per_epoch)
    # The warm-up starts at 0: it must leave at least one step at a learning rate > 0 (a run of one step).
    warmup = min(config.epochs * steps_per_epoch - 1, int(config.warmup_epochs * steps_per_epoch))
    return optax.warmup_cosine_decay_schedule(init_value=0.0 if warmup else lr, peak_value=lr,
                                              warmup_steps=warmup, decay_steps=total,
                                              end_value=lr * config.final_lr_factor)


def make_optimizer(config, schedule) -> optax.GradientTransformation:
    """Global-norm clipping followed by AMSGrad (β1 0.9, β2 0.99, ε 1e-3), Adam or AdamW."""
    if config.optimizer == "amsgrad":
        opt = optax.amsgrad(schedule, b1=0.9, b2=0.99, eps=1e-3)
    elif config.optimizer == "adam":
        opt = optax.adam(schedule)
    else:
        opt = optax.adamw(schedule, weight_decay=config.weight_decay)
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), opt)


@dataclasses.dataclass
class Plateau:
    """Host-side reduce-on-plateau: multiply the learning rate by ``factor`` after
    ``patience`` epochs without improvement of the monitored validation metric."""

    factor: float
    patience: int
    enabled: bool
    scale: float = 1.0
    best: float = float("inf")
    bad_epochs: int = 0

    def update(self, metric: float) -> None:
        if metric < self.best:
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.enabled and self.bad_epochs > self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0

    def state(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}


def make_steps(model, optimizer, weights: dict, loss_kind: str, ema_decay: float):
    """(train_step, eval_step, loss_and_grads), jitted.

    train_step(state, batch, labels, lr_scale) → (state, loss, grad_norm);
    eval_step(params, batch, labels) → (loss, error sums, predictions: E (D, B), F (D, N, 3), D (D, B, 3) for a
    charge model);
    loss_and_grads(params, batch, labels) → (loss, grads) (for checks and tests).
    """
    train_step, eval_step, loss_and_grads = step_functions(model, optimizer, weights, loss_kind, ema_decay)
    return compilation.jit(train_step, donate_argnums=0), compilation.jit(eval_step), compilation.jit(loss_and_grads)


def step_functions(model, optimizer, weights: dict, loss_kind: str, ema_decay: float):
    """The un-jitted (train_step, eval_step, loss_and_grads) of :func:`make_steps` (to vmap over ensemble members)."""

    def loss_fn(params, batch, labels):
        sums = global_error_sums(model, params, batch, labels)
        return loss_from_sums(sums, weights, loss_kind), sums

    def train_step(state: TrainState, batch, labels, lr_scale):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, labels)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        updates = jax.tree_util.tree_map(lambda u: u * lr_scale.astype(u.dtype), updates)
        params = optax.apply_updates(state.params, updates)

        def ema_update(e, p):
            t = state.step.astype(e.dtype)
            decay = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))
            return decay * e + (1.0 - decay) * p

        ema = jax.tree_util.tree_map(ema_update, state.ema_params, params)
        new_state = TrainState(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state)
        return new_state, loss, optax.tree.norm(grads)

    def eval_step(params, batch, labels):
        loss, sums = loss_fn(params, batch, labels)
        predictions = {key[len("pred_"):]: sums.pop(key) for key in PREDICTIONS if key in sums}
        return loss, sums, predictions

    def loss_and_grads(params, batch, labels):
        return jax.value_and_grad(lambda p: loss_fn(p, batch, labels)[0])(params)

    return train_step, eval_step, loss_and_grads


def init_state(params, optimizer) -> TrainState:
    """Step 0 state: EMA initialised to the starting parameters."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      ema_params=jax.tree_util.tree_map(jnp.array, params), opt_state=optimizer.init(params))
