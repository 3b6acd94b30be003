"""Ensemble training (``--ensemble K``): the vmapped step equals K separate models, exact resume,
per-member metrics, the checkpoint is an ensemble with its calibration scale."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.checkpoint import load_checkpoint, load_train_state
from physnetjax.data import load_dataset
from physnetjax.ensemble import PhysNetEnsemble, member_params
from physnetjax.errors import PhysNetInputError
from physnetjax.model import PhysNet
from physnetjax.predict import init_params
from physnetjax.train import TrainConfig, resume, train
from physnetjax.train.batching import batch_shapes, iterate_batches
from physnetjax.train.ensemble import bootstrap_frames, make_ensemble_steps, member_batches, member_seeds
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import init_state, make_optimizer, make_schedule, make_steps

from test_train import DATA, leaves, read_rows

TINY = dict(features=8, max_degree=1, num_iterations=1, n_res=1, num_basis_functions=8, cutoff=5.0,
            train=16, valid=8, test=8, batch_size=8, learning_rate=1e-2, schedule="exponential",
            decay_epochs=2.0, decay_rate=0.5, progress=False, plots=False, seed=3, ensemble=2)


def ensemble_config(out, **changes) -> TrainConfig:
    return TrainConfig(**{**TINY, "data": [str(DATA)], "epochs": 2, "out": str(out), **changes})


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "run"
    return out, train(ensemble_config(out))


def test_vmapped_steps_equal_separately_trained_members_float64():
    """Three vmapped steps of K = 2 members (own seeds, own shuffles) against each member's
    single-model steps on its own batches: equal to float64 rounding; the members differ."""
    config = TrainConfig(**{**TINY, "data": [str(DATA)], "epochs": 2})
    dataset = load_dataset([str(DATA)])
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=5.0,
                    max_atomic_number=8, param_dtype=jnp.float64)
    frames = np.arange(16)
    energies = dataset.E - dataset.E.mean()
    shapes = batch_shapes(dataset, model, config.batch_size)
    optimizer = make_optimizer(config, make_schedule(config, 2))
    weights = loss_weights(config)
    seeds = member_seeds(config.seed, 2)
    assert seeds == [3, 4]

    single_step, _, _ = make_steps(model, optimizer, weights, config.loss, config.ema_decay)
    separate = []
    for seed in seeds:
        state = init_state(init_params(model, seed), optimizer)
        for epoch in (1, 2):
            for batch, labels in iterate_batches(dataset, frames, energies, model, config.batch_size, shapes,
                                                 seed=[seed, epoch], dtype=np.float64):
                state, _, _ = single_step(state, batch, labels, jnp.float64(1.0))
        separate.append(state)

    ensemble_step, _ = make_ensemble_steps(model, optimizer, weights, config.loss, config.ema_decay)
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[init_params(model, s) for s in seeds])
    state = jax.vmap(lambda p: init_state(p, optimizer))(stacked)
    for epoch in (1, 2):
        for batch, labels in member_batches(dataset, [frames, frames], seeds, epoch, energies, model,
                                            config.batch_size, shapes, dtype=np.float64):
            state, loss, norm = ensemble_step(state, batch, labels, jnp.float64(1.0))
            assert loss.shape == norm.shape == (2,)
    assert np.asarray(state.step).tolist() == [4, 4]
    for k, expected in enumerate(separate):
        got = jax.tree_util.tree_map(lambda leaf, k=k: leaf[k], state)
        for a, b in zip(leaves(expected), leaves(got)):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    differs = [not np.allclose(a, b) for a, b in zip(leaves(separate[0].ema_params), leaves(separate[1].ema_params))]
    assert all(differs)


def test_bootstrap_frames_resample_with_replacement_per_member():
    train_frames = np.arange(100, 140)
    first, second = bootstrap_frames(train_frames, [0, 1])
    assert len(first) == len(second) == 40
    assert set(first) <= set(train_frames) and set(second) <= set(train_frames)
    assert len(np.unique(first)) < 40  # with replacement: 40 draws of 40 repeat some frame (P(no repeat) = 40!/40^40)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(bootstrap_frames(train_frames, [0])[0], first)


def test_metrics_have_member_and_mean_columns(ensemble_run):
    out, summary = ensemble_run
    rows = read_rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        member_losses = [float(row[f"member{k}_train_loss"]) for k in range(2)]
        assert member_losses[0] != member_losses[1]
        assert float(row["train_loss"]) == pytest.approx(np.mean(member_losses), rel=1e-12)
        for name in ("valid_loss", "valid_energy_mae", "valid_forces_mae", "valid_forces_rmse"):
            assert float(row[name]) > 0 and all(float(row[f"member{k}_{name}"]) > 0 for k in range(2))
        # the mean prediction's force RMSE is at most the members' RMS force RMSE (convexity of the square)
        member_rmse = [float(row[f"member{k}_valid_forces_rmse"]) for k in range(2)]
        assert float(row["valid_forces_rmse"]) <= np.sqrt(np.mean(np.square(member_rmse))) + 1e-7
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["member1_valid_loss"] == pytest.approx(float(rows[-1]["member1_valid_loss"]))


def test_checkpoint_is_a_calibrated_ensemble(ensemble_run):
    out, summary = ensemble_run
    model, params, meta = load_checkpoint(out / "best", with_metadata=True)
    assert isinstance(model, PhysNetEnsemble) and model.size == 2
    report = summary["ensemble"]
    scale = report["calibration"]["scale"]
    assert model.calibration_scale == pytest.approx(scale) and meta["calibration"]["scale"] == pytest.approx(scale)
    assert report["seeds"] == [3, 4] and len(report["valid"]["members"]) == 2
    assert -1.0 <= report["test"]["forces_spread_error_spearman"] <= 1.0
    assert report["calibration"]["valid_nll_calibrated"] <= report["calibration"]["valid_nll_uncalibrated"]
    state = load_train_state(out / "best")
    for saved, ema in zip(leaves(params), leaves(state["ema_params"])):
        np.testing.assert_array_equal(saved, ema)
        assert saved.shape[0] == 2
    assert not np.allclose(leaves(member_params(params, 0))[0], leaves(member_params(params, 1))[0])

    # the stored scale reproduces the maximum-likelihood fit on the validation forces, and the test split's rank
    # correlation between per-frame spread and error is that of the members' forces, both recomputed member by member
    from scipy.stats import spearmanr

    from physnetjax.predict import predict

    with np.load(DATA) as npz:
        Z, R, F = npz["Z"], npz["R"], npz["F"]
    with np.load(out / "split.npz") as split:
        valid, test = split["valid"], split["test"]

    def mean_and_squared_spread(k):
        """Member-mean forces (n, 3) of frame k and their per-atom squared spread (n,), float64."""
        forces = np.stack([predict(model.member, member_params(params, m), Z[k], R[k].astype(np.float32))["forces"]
                           for m in range(2)]).astype(np.float64)
        mean = forces.mean(axis=0)
        return mean, np.mean(np.sum((forces - mean) ** 2, axis=-1), axis=0)

    ratios = []
    for k in valid:
        mean, spread_sq = mean_and_squared_spread(k)
        ratios.extend(np.sum((mean - F[k]) ** 2, axis=-1) / spread_sq)
    assert np.sqrt(np.mean(ratios)) == pytest.approx(scale, rel=2e-3)
    spreads, errors = [], []
    for k in test:
        mean, spread_sq = mean_and_squared_spread(k)
        spreads.append(np.sqrt(np.mean(spread_sq)))
        errors.append(np.sqrt(np.mean(np.sum((mean - F[k]) ** 2, axis=-1))))
    assert len(test) >= 5
    assert report["test"]["forces_spread_error_spearman"] == pytest.approx(spearmanr(spreads, errors)[0], abs=1e-9)


def test_ensemble_resume_equals_uninterrupted_run(ensemble_run, tmp_path):
    out, _ = ensemble_run
    interrupted = tmp_path / "interrupted"
    train(ensemble_config(interrupted, epochs=1))
    resume(interrupted, epochs=2)
    expected = load_train_state(out / "latest")
    resumed = load_train_state(interrupted / "latest")
    for a, b in zip(leaves(expected), leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal([float(r["member1_valid_loss"]) for r in read_rows(interrupted)],
                                  [float(r["member1_valid_loss"]) for r in read_rows(out)])


def test_init_from_needs_the_same_member_count(ensemble_run, tmp_path):
    out, _ = ensemble_run
    with pytest.raises(PhysNetInputError, match="ensemble of 2 members but --ensemble is 3; pass --ensemble 2$"):
        train(ensemble_config(tmp_path / "three", ensemble=3, init_from=str(out / "best")))
    with pytest.raises(ValueError, match="bootstrap resamples .* needs ensemble >= 2, received 1"):
        TrainConfig(bootstrap=True)
    with pytest.raises(ValueError, match="--bootstrap resamples .* needs --ensemble >= 2, received 1"):
        TrainConfig(bootstrap=True, names={"bootstrap": "--bootstrap", "ensemble": "--ensemble"})


@pytest.mark.slow
def test_ensemble_run_members_equal_single_runs_of_their_seeds(ensemble_run, tmp_path):
    """The trainer's plumbing (member seeds, shuffles, E0, split): member k of the ensemble run equals
    the single-model run with --seed 3+k on the ensemble's split (float32; equal up to summation order)."""
    out, _ = ensemble_run
    _, params = load_checkpoint(out / "latest")
    for k, seed in enumerate((3, 4)):
        single = tmp_path / f"seed{seed}"
        train(ensemble_config(single, ensemble=1, seed=seed, split_file=str(out / "split.npz")))
        _, expected = load_checkpoint(single / "latest")
        for a, b in zip(leaves(expected), leaves(member_params(params, k))):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        assert float(read_rows(single)[-1]["valid_loss"]) == pytest.approx(
            float(read_rows(out)[-1][f"member{k}_valid_loss"]), rel=1e-5)


def test_isolated_atoms_in_the_validation_split_leave_the_calibration_fitted(tmp_path):
    """An isolated atom's forces are 0 for every member (spread exactly 0): one such frame among the validation frames
    made the fit fail, and the run kept an uncalibrated scale 1 with a log line only."""
    with np.load(DATA) as npz:
        frames = {key: npz[key][:24] for key in ("R", "Z", "N", "E", "F", "D", "Q")}
    atoms = {key: np.zeros((2,) + value.shape[1:], value.dtype) for key, value in frames.items()}
    atoms["Z"][:, 0], atoms["N"][:] = 8, 1
    atoms["E"][:] = frames["E"].mean() / 9.0
    data = {key: np.concatenate([frames[key], atoms[key]]) for key in frames}
    np.savez(tmp_path / "with_atoms.npz", **data)
    np.savez(tmp_path / "split.npz", train=np.arange(14), valid=np.r_[14:22, 24, 25], test=np.arange(22, 24))
    out = tmp_path / "run"
    settings = {key: value for key, value in TINY.items() if key not in ("train", "valid", "test")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train(TrainConfig(**{**settings, "data": [str(tmp_path / "with_atoms.npz")], "epochs": 1,
                                       "out": str(out), "split_file": str(tmp_path / "split.npz")}))
    calibration = summary["ensemble"]["calibration"]
    assert calibration["samples"] == 8 * 9  # the valid ethanol atoms; the two O atoms are left out
    model = load_checkpoint(out / "best")[0]
    assert model.calibration_scale == pytest.approx(calibration["scale"]) and calibration["scale"] != 1.0
