"""Ensemble members stepped in concurrent groups (:mod:`physnetjax.train.member_groups`).

The grouped step must equal the one ensemble call over all members (float64, the same
steps on the same batches), and the trainer must give the same run whichever number
of groups the machine's cores choose.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physnetjax.train.loop as loop
from physnetjax.checkpoint import load_train_state
from physnetjax.data import load_dataset
from physnetjax.model import PhysNet
from physnetjax.predict import init_params
from physnetjax.train import TrainConfig, train
from physnetjax.train.batching import batch_shapes
from physnetjax.train.ensemble import make_ensemble_steps, member_batches, member_seeds
from physnetjax.train.loss import loss_weights
from physnetjax.train.member_groups import GroupedStep, concatenated, member_groups
from physnetjax.train.optim import init_state, make_optimizer, make_schedule

from test_train import DATA, leaves, read_rows
from test_train_ensemble import TINY


@pytest.mark.parametrize("size,backend,cores,expected", [
    (4, "cpu", 2, 2), (4, "cpu", 16, 4), (6, "cpu", 4, 3), (3, "cpu", 2, 1), (5, "cpu", 4, 1),
    (4, "cpu", 1, 1), (1, "cpu", 8, 1), (4, "gpu", 2, 1), (8, "tpu", 8, 1)])
def test_groups_are_the_largest_divisor_of_the_members_within_the_cores(size, backend, cores, expected):
    assert member_groups(size, backend, cores) == expected


def test_grouped_step_equals_one_call_over_all_members_float64():
    """Four members, four steps, each member its own batches: two groups of two against one call of four."""
    config = TrainConfig(**{**TINY, "data": [str(DATA)], "epochs": 2, "ensemble": 4})
    dataset = load_dataset([str(DATA)])
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=5.0,
                    max_atomic_number=8, param_dtype=jnp.float64)
    frames = np.arange(16)
    energies = dataset.E - dataset.E.mean()
    shapes = batch_shapes(dataset, model, config.batch_size)
    optimizer = make_optimizer(config, make_schedule(config, 2))
    seeds = member_seeds(config.seed, 4)
    step, _ = make_ensemble_steps(model, optimizer, loss_weights(config), config.loss, config.ema_decay)
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[init_params(model, s) for s in seeds])

    def fresh():
        return jax.vmap(lambda p: init_state(p, optimizer))(jax.tree_util.tree_map(jnp.copy, stacked))

    grouped = GroupedStep(step, 2, (True, True), lambda tree: jax.tree_util.tree_map(jnp.asarray, tree))
    whole, parts = fresh(), grouped.split(fresh())
    assert len(parts) == 2 and np.asarray(parts[1].step).shape == (2,)
    whole_losses, group_losses = [], []
    for epoch in (1, 2):
        for batch, labels in member_batches(dataset, [frames] * 4, seeds, epoch, energies, model,
                                            config.batch_size, shapes, dtype=np.float64):
            whole, loss, _ = step(whole, batch, labels, jnp.float64(1.0))
            parts, part_loss, part_norm = grouped(parts, batch, labels, jnp.float64(1.0))
            whole_losses.append(loss)
            group_losses.append(part_loss)
            assert [np.shape(n) for n in part_norm] == [(2,), (2,)]
    joined = grouped.join(parts)
    assert np.asarray(joined.step).tolist() == [4, 4, 4, 4]
    for a, b in zip(leaves(whole), leaves(joined)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    losses = concatenated(group_losses)
    assert losses.shape == (4, 4)
    np.testing.assert_allclose(losses, np.stack(jax.device_get(whole_losses)), rtol=1e-12)
    assert len({float(x) for x in losses[-1]}) == 4  # the members differ


def test_grouped_step_rejects_unequal_groups():
    with pytest.raises(ValueError, match="at least 2 groups"):
        GroupedStep(lambda *a: a, 1, (True, True), jnp.asarray)
    state = {"w": jnp.zeros((3, 2))}
    with pytest.raises(ValueError, match="3 members do not split into 2 equal groups"):
        GroupedStep(lambda *a: a, 2, (True, True), jnp.asarray).split(state)


@pytest.mark.parametrize("device_batches", [True, False])
def test_trainer_run_is_the_same_in_one_call_or_in_groups(tmp_path, monkeypatch, device_batches):
    """Two members for two epochs, once stepped as one call and once as two groups of one (float32: equal up to
    the summation order of a vmap over 1 or 2 members, the tolerance of the trainer's member-vs-single test)."""
    if not device_batches:  # the host-packed batches (models with triplet lists use them)
        monkeypatch.setattr(loop, "supports_device_batches", lambda shapes: False)
        monkeypatch.setattr(loop, "_COMPILED", {})
    runs = {}
    for groups in (1, 2):
        monkeypatch.setattr(loop, "member_groups", lambda size, groups=groups: groups)
        runs[groups] = tmp_path / f"groups{groups}"
        train(TrainConfig(**{**TINY, "data": [str(DATA)], "epochs": 2, "out": str(runs[groups])}))
    for a, b in zip(leaves(load_train_state(runs[1] / "latest")), leaves(load_train_state(runs[2] / "latest"))):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for column in ("member0_train_loss", "member1_train_loss", "member1_valid_loss", "valid_loss"):
        np.testing.assert_allclose([float(r[column]) for r in read_rows(runs[2])],
                                   [float(r[column]) for r in read_rows(runs[1])], rtol=1e-5)
