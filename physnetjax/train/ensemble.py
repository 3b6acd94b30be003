"""Training K ensemble members as one compiled program (``python -m physnetjax.train --ensemble K``).

Every leaf of the train state (raw and EMA parameters, optimiser state, step
count) carries a leading member axis of length K, and one compiled
``jax.vmap`` of the single-model step over that axis updates all members at once:
one compilation, one dispatch per step, each member with its own optimiser state
and EMA. The training step is vmapped (with the library's YNNPACK-free compilation,
:mod:`physnetjax.compilation`, K = 4 steps cost 3.4x one model's wall time on 2
idle CPU cores, against 3.9x with the members mapped one after another); the
evaluation runs the members one after another (:func:`physnetjax.ensemble.map_members`,
cheaper for inference; benchmarks/README.md, "Ensemble cost").

Members differ by their initial weights and by the order (or, with
``bootstrap``, the multiset) of the training frames they see. Member k uses the
seed ``seed + k`` for both::

    initial weights:  init_params(model, seed + k)
    epoch e shuffle:  numpy.random.default_rng([seed + k, e]).permutation(frames_k)
    frames_k:         the training split, or with bootstrap its resample with replacement
                      numpy.random.default_rng([seed + k, BOOTSTRAP_STREAM]).choice(train, len(train))

so member 0 is exactly the single model of ``--seed seed`` and member k the single
model of ``--seed seed+k`` trained on the same split (the split and the element
energies E0 come from ``seed`` and the whole training split, shared by all members).

Batches: with independent shuffles each member sees different molecules at a
step, so the K per-member batches are stacked along a leading member axis
(shape (K, D, ...), D devices). They share one padded shape (capacities come from
the densest frame of the dataset, :func:`physnetjax.train.batching.batch_shapes`),
so the step still compiles once. Sharing one batch across members would save the
host-side packing of K − 1 batches but make the members' gradients correlated;
the packing is cheap next to the K forward/backward passes.

Validation and test frames are the same for every member: one batch, all members
evaluated by one compiled call. Metrics are reported per member and for the
ensemble prediction (the member mean), which selects the best checkpoint.
"""

from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.checkpoint import load_checkpoint
from physnetjax.ensemble import PhysNetEnsemble, ensemble_statistics, is_ensemble, map_members, stack_members
from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors import apply_batch
from physnetjax.predict import init_params
from physnetjax.train.batching import iterate_batches
from physnetjax import compilation
from physnetjax.train.loss import PREDICTIONS, TERMS, loss_from_sums, sums_from_outputs
from physnetjax.train.optim import step_functions

BOOTSTRAP_STREAM = 104729
"""Second word of the bootstrap resampling seed ``[seed + k, BOOTSTRAP_STREAM]`` (apart from epoch numbers)."""

MEMBER_METRICS = (["train_loss", "grad_norm", "valid_loss"]
                  + [f"valid_{m}_{s}" for m in ("energy", "energy_per_atom", "forces", "dipole", "charge")
                     for s in ("mae", "rmse")])
"""Per-member columns of metrics.csv, ``member{k}_{name}`` (the ensemble-mean columns keep the single-model names)."""

OUTPUT_KEYS = ("energy", "forces", "dipoles", "sum_charges", "stress")


def member_seeds(seed: int, size: int) -> list[int]:
    """Seeds of the K members: ``seed + k`` (member 0 is the single model of ``seed``)."""
    if size < 1:
        raise ValueError(f"ensemble size must be >= 1, received {size}")
    return [seed + k for k in range(size)]


def member_columns(size: int) -> list[str]:
    """``member{k}_{metric}`` column names for k < ``size`` (none for a single model)."""
    if size == 1:
        return []
    return [f"member{k}_{name}" for k in range(size) for name in MEMBER_METRICS]


def init_member_params(model, seeds: list[int]):
    """Stacked fresh variables of ``model`` (K ≥ 2 members): member k initialised with ``seeds[k]``."""
    return stack_members([init_params(model, s) for s in seeds])


def initial_weights(path, size: int) -> tuple:
    """(architecture without element energies, variables, metadata) to start training from checkpoint ``path``.

    A single-model checkpoint starts a single model; an ensemble checkpoint of K members
    starts an ensemble of K members (member k from member k, stacked variables).

    Raises:
      PhysNetInputError: the checkpoint's member count differs from ``size`` (a single
        model counts as 1).
    """
    loaded, params, metadata = load_checkpoint(path, with_metadata=True)
    found = loaded.size if is_ensemble(loaded) else 1
    if found != size:
        kind = f"an ensemble of {found} members" if found > 1 else "a single model"
        hint = (f"pass --ensemble {found}" if found > 1 else
                "combine single checkpoints into one ensemble with python -m physnetjax.ensemble combine")
        raise PhysNetInputError(f"--init-from {path} holds {kind} but --ensemble is {size}; {hint}")
    member = loaded.member if is_ensemble(loaded) else loaded
    return member.clone(element_energies=None), jax.tree_util.tree_map(jnp.asarray, params), metadata


def check_init_architecture(path, given: dict) -> None:
    """Refuse architecture settings ``given`` beside ``--init-from path`` that differ from the checkpoint's.

    A run started from a checkpoint has the checkpoint's architecture, so an option such
    as ``--features 64`` or ``--cutoff 4`` given with it would otherwise be ignored without
    a word. ``given`` maps names of :data:`physnetjax.train.config.ARCHITECTURE_SETTINGS`
    to the values asked for (cutoffs in Å); a ``message_degree`` of None means ``max_degree``.

    Raises:
      PhysNetInputError: naming every differing setting with the value given and the checkpoint's.
    """
    loaded, _ = load_checkpoint(path)
    member = loaded.member if is_ensemble(loaded) else loaded

    def normal(name, value):
        return member.max_degree if name == "message_degree" and value is None else value

    differ = [f"--{name.replace('_', '-')} {value} (the checkpoint has {getattr(member, name)})"
              for name, value in given.items() if normal(name, value) != normal(name, getattr(member, name))]
    if differ:
        raise PhysNetInputError(
            f"--init-from {path} fixes the architecture, but the settings ask for {', '.join(differ)}; drop "
            "them to fine-tune that checkpoint, or train a new model without --init-from")


def saved_model(member, size: int, calibration_scale: float = 1.0):
    """What a checkpoint stores: the member itself for one model, else a :class:`PhysNetEnsemble` of it."""
    if size == 1:
        return member
    return PhysNetEnsemble(member=member, size=size, calibration_scale=calibration_scale)


def bootstrap_frames(train_indices: np.ndarray, seeds: list[int]) -> list[np.ndarray]:
    """Per member, ``len(train_indices)`` training frames drawn with replacement (seeded, see module docstring)."""
    return [np.random.default_rng([s, BOOTSTRAP_STREAM]).choice(train_indices, size=len(train_indices))
            for s in seeds]


def member_batches(dataset, member_frames: list[np.ndarray], seeds: list[int], epoch: int, energies, model,
                   batch_size: int, shapes, dtype=np.float32) -> Iterator[tuple]:
    """Yield ``(batch, labels)`` with leaves of shape (K, D, ...): member k's batch of epoch ``epoch``.

    Member k visits ``member_frames[k]`` shuffled with ``[seeds[k], epoch]``, as a single
    run of seed ``seeds[k]`` does (:func:`physnetjax.train.batching.iterate_batches`).
    """
    sizes = {len(frames) for frames in member_frames}
    if len(sizes) != 1:
        raise ValueError(f"every member needs the same number of training frames, received {sorted(sizes)}")
    streams = [iterate_batches(dataset, frames, energies, model, batch_size, shapes, seed=[s, epoch], dtype=dtype)
               for frames, s in zip(member_frames, seeds)]
    for parts in zip(*streams):
        yield jax.tree_util.tree_map(lambda *xs: np.stack(xs), *parts)


def make_ensemble_steps(model, optimizer, weights: dict, loss_kind: str, ema_decay: float):
    """(train_step, eval_step) of :func:`ensemble_step_functions`, jitted (the state donated)."""
    train_step, eval_step = ensemble_step_functions(model, optimizer, weights, loss_kind, ema_decay)
    return compilation.jit(train_step, donate_argnums=0), compilation.jit(eval_step)


def ensemble_step_functions(model, optimizer, weights: dict, loss_kind: str, ema_decay: float):
    """(train_step, eval_step), un-jitted, over a member axis K.

    train_step(state, batch, labels, lr_scale) → (state, loss (K,), grad_norm (K,)): the
    single-model step of :func:`physnetjax.train.optim.make_steps` vmapped over the
    stacked state and the stacked (K, D, ...) batches; ``lr_scale`` is shared.

    eval_step(params, batch, labels) on one (D, ...) batch shared by all members →
    (member_loss (K,), member_sums {term: 3 × (K,)}, mean_loss, mean_sums {term: 3 scalars},
    predictions) where "mean" is the ensemble prediction ȳ = (1/K) Σ_k y_k. predictions hold
    E (D, B), F (D, N, 3) and, for a charge model, D (D, B, 3) of ȳ, the uncalibrated spreads of
    :func:`physnetjax.ensemble.ensemble_statistics` E_std (D, B) eV and F_std (D, N) eV/Å,
    and per molecule slot over its force-labelled atoms i: F_var_sum = Σ_i F_std_i²,
    F_err_sum = Σ_i |F̄_i − F_ref,i|² (D, B) and F_atoms (D, B) their count.
    """
    train_step, _, _ = step_functions(model, optimizer, weights, loss_kind, ema_decay)

    def device_eval(params, batch, labels):
        outs = map_members(lambda p: apply_batch(model, p, batch), params)
        outs = {key: outs[key] for key in OUTPUT_KEYS if outs.get(key) is not None}
        member = jax.vmap(lambda out: sums_from_outputs(out, labels, model.charges))(outs)
        statistics = ensemble_statistics(outs)
        mean = sums_from_outputs({key: statistics[key] for key in outs}, labels, model.charges)
        f_mask = labels["F_mask"]
        f_err = jnp.sum((statistics["forces"] - labels["F"]) ** 2, axis=-1)

        def per_molecule(values):
            return jax.ops.segment_sum(jnp.where(f_mask, values, 0.0), batch.atom_segments,
                                       num_segments=batch.num_molecules)

        spread = {"E_std": statistics["energy_std"], "F_std": statistics["forces_std"],
                  "F_var_sum": per_molecule(statistics["forces_std"] ** 2), "F_err_sum": per_molecule(f_err),
                  "F_atoms": per_molecule(jnp.ones_like(f_err))}
        return member, mean, spread

    def eval_step(params, batch, labels):
        member, mean, spread = jax.vmap(lambda b, l: device_eval(params, b, l))(batch, labels)
        member_sums = {t: tuple(jnp.sum(x, axis=0) for x in member[t]) for t in TERMS}
        mean_sums = {t: tuple(jnp.sum(x) for x in mean[t]) for t in TERMS}
        member_loss = jax.vmap(lambda sums: loss_from_sums(sums, weights, loss_kind))(member_sums)
        mean_loss = loss_from_sums(mean_sums, weights, loss_kind)
        predictions = {**{key[len("pred_"):]: mean[key] for key in PREDICTIONS if key in mean}, **spread}
        return member_loss, member_sums, mean_loss, mean_sums, predictions

    return jax.vmap(train_step, in_axes=(0, 0, 0, None)), eval_step
