"""The trainer's loss, metrics and optimiser step against NumPy written out independently.

The end-to-end training tests check that losses fall and that logged MAEs match
predictions; these check the formulas themselves: which entries count, per-atom energy,
MSE against MAE, RMSE, gradient clipping before the optimiser, and the EMA with its
warm-up d_t = min(decay, (1 + t)/(10 + t)).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from physnetjax.data import load_dataset
from physnetjax.model import PhysNet
from physnetjax.predict import init_params
from physnetjax.train import TrainConfig
from physnetjax.train.batching import batch_shapes, iterate_batches
from physnetjax.train.loss import loss_from_sums, loss_weights, metrics_from_totals, sums_from_outputs
from physnetjax.train.optim import init_state, make_optimizer, make_schedule, make_steps

from test_train import DATA, leaves


@pytest.fixture(scope="module", autouse=True)
def x64():
    jax.config.update("jax_enable_x64", True)


def synthetic_batch(rng):
    """Model outputs and labels of 3 molecule slots (the last one padding) over 9 atom slots.

    Molecule 0: atoms 0-3 with E, F, D, Q; molecule 1: atoms 4-6 with E and Q but no F and no D;
    slot 2 and atoms 7-8: padding (no labels).
    """
    out = {"energy": rng.normal(size=3), "forces": rng.normal(size=(9, 3)), "dipoles": rng.normal(size=(3, 3)),
           "sum_charges": rng.normal(size=3)}
    labels = {"E": rng.normal(size=3), "E_mask": np.array([True, True, False]),
              "F": rng.normal(size=(9, 3)), "F_mask": np.array([True] * 4 + [False] * 5),
              "D": rng.normal(size=(3, 3)), "D_mask": np.array([True, False, False]),
              "Q": rng.normal(size=3), "Q_mask": np.array([True, True, False]),
              "num_atoms": np.array([4.0, 3.0, 1.0])}
    return out, labels


def numpy_errors(out, labels):
    """The labelled errors of each term, picked by hand (molecules 0-1, atoms 0-3, dipole of molecule 0)."""
    energy = out["energy"][:2] - labels["E"][:2]
    return {"E": energy, "Ea": energy / np.array([4.0, 3.0]), "F": (out["forces"][:4] - labels["F"][:4]).ravel(),
            "D": out["dipoles"][0] - labels["D"][0], "Q": out["sum_charges"][:2] - labels["Q"][:2]}


@pytest.mark.parametrize("kind", ["mse", "mae"])
@pytest.mark.parametrize("per_atom_energy", [False, True])
def test_loss_is_the_weighted_mean_error_over_labelled_entries(kind, per_atom_energy):
    out, labels = synthetic_batch(np.random.default_rng(0))
    sums = sums_from_outputs({k: jnp.asarray(v) for k, v in out.items()}, labels, charges=True)
    config = TrainConfig(energy_weight=0.7, forces_weight=3.0, dipole_weight=0.2, charge_weight=0.05,
                         per_atom_energy=per_atom_energy, loss=kind)
    weights = loss_weights(config)
    errors = numpy_errors(out, labels)
    penalty = np.square if kind == "mse" else np.abs
    energy_term = "Ea" if per_atom_energy else "E"
    expected = sum(w * penalty(errors[t]).mean()
                   for t, w in ((energy_term, 0.7), ("F", 3.0), ("D", 0.2), ("Q", 0.05)))
    assert float(loss_from_sums(sums, weights, kind)) == pytest.approx(expected, rel=1e-12)


def test_metrics_are_mae_and_root_mean_square_over_labelled_entries():
    out, labels = synthetic_batch(np.random.default_rng(1))
    sums = sums_from_outputs({k: jnp.asarray(v) for k, v in out.items()}, labels, charges=True)
    totals = {t: [float(x) for x in sums[t]] for t in ("E", "Ea", "F", "D", "Q")}
    metrics = metrics_from_totals(totals)
    names = {"E": "energy", "Ea": "energy_per_atom", "F": "forces", "D": "dipole", "Q": "charge"}
    for term, errors in numpy_errors(out, labels).items():
        assert metrics[f"{names[term]}_mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-12)
        assert metrics[f"{names[term]}_rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-12)
    assert totals["F"][2] == 12 and totals["D"][2] == 3


def test_optimizer_clips_the_global_gradient_norm_before_amsgrad():
    # AMSGrad's ε = 1e-3 makes its step depend on the gradient's size, so the step of a gradient of
    # norm 50 equals that of the same gradient scaled to the clip norm 1, and not the unclipped one.
    config = TrainConfig(clip_norm=1.0, learning_rate=1e-2, schedule="constant")
    optimizer = make_optimizer(config, make_schedule(config, 10))
    params = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    gradient = {"a": jnp.array([30.0, -20.0, 10.0]), "b": jnp.array([[5.0, -25.0], [15.0, 12.0]])}
    norm = np.sqrt(sum(float(jnp.sum(g**2)) for g in gradient.values()))
    assert norm > 1.0
    amsgrad = optax.amsgrad(1e-2, b1=0.9, b2=0.99, eps=1e-3)
    clipped = jax.tree_util.tree_map(lambda g: g / norm, gradient)
    step, _ = optimizer.update(gradient, optimizer.init(params), params)
    expected, _ = amsgrad.update(clipped, amsgrad.init(params), params)
    unclipped, _ = amsgrad.update(gradient, amsgrad.init(params), params)
    for got, want, other in zip(leaves(step), leaves(expected), leaves(unclipped)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert np.max(np.abs(got - other)) > 1e-6 * np.max(np.abs(other))


def test_train_step_updates_the_ema_with_its_warm_up():
    config = TrainConfig(data=[str(DATA)], batch_size=8, learning_rate=1e-2, ema_decay=0.5)
    dataset = load_dataset([str(DATA)])
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=5.0,
                    max_atomic_number=8, param_dtype=jnp.float64)
    optimizer = make_optimizer(config, make_schedule(config, 4))
    train_step, _, _ = make_steps(model, optimizer, loss_weights(config), config.loss, config.ema_decay)
    state = init_state(init_params(model, 0), optimizer)
    batches = iterate_batches(dataset, np.arange(32), dataset.E - dataset.E.mean(), model, 8,
                              batch_shapes(dataset, model, 8), seed=[0, 1], dtype=np.float64)
    for t, (batch, labels) in enumerate(batches):
        ema_before = [np.asarray(x) for x in leaves(state.ema_params)]
        state, _, _ = train_step(state, batch, labels, jnp.float64(1.0))
        # 0.1, 0.18, 0.25, 0.31: the warm-up, below ema_decay 0.5 (d_t and 1 − d_t in the parameters' float64)
        keep = min(0.5, (1.0 + t) / (10.0 + t))
        take = 1.0 - keep
        for before, after, params in zip(ema_before, leaves(state.ema_params), leaves(state.params)):
            np.testing.assert_allclose(after, keep * before + take * np.asarray(params), rtol=1e-12, atol=1e-15)
    assert int(state.step) == 4
