"""Audit of the numbers ``python -m physnetjax.eval`` reports: which weights they are the errors of.

A trainer checkpoint holds one parameter set, its EMA weights, and beside it the train state with the raw
weights of the same epoch. ``--weights raw`` used to be ignored for such a checkpoint: the tables and
summary.json gave the EMA weights' errors under the raw weights' name, and nothing said so.

The oracle never goes through the code under test: predictions from :func:`physnetjax.predict` one frame at
a time in float64 with the weights chosen here, labels from the arrays written into the file, MAE/RMSE as
plain NumPy means over the real atoms (the frames have 9 and 6 atoms; the padding rows of ``F`` hold
garbage that no metric may see).
"""

import json

import jax
import numpy as np
import pytest

from physnetjax import PhysNet, predict
from physnetjax.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from physnetjax.eval.cli import main
from conftest import random_params

RTOL = 1e-9

pytestmark = pytest.mark.filterwarnings("ignore::physnetjax.errors.PhysNetInputWarning")


@pytest.fixture(scope="module")
def audit(molecules, tmp_path_factory):
    """A checkpoint written like the trainer's (EMA weights saved, raw ones in the train state), one without a
    train state, and 6 labelled frames of two sizes as a padded .npz."""
    jax.config.update("jax_enable_x64", True)
    root = tmp_path_factory.mktemp("metrics_audit")
    e0 = np.zeros(9)
    e0[[1, 6, 8]] = (-13.0, -1030.0, -2040.0)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=8, charges=False, zbl=False, n_res=1, element_energies=tuple(e0))
    ema, raw = random_params(model, seed=11), random_params(model, seed=12)
    state = {"step": np.int32(7), "params": raw, "ema_params": ema}
    save_checkpoint(root / "trained", model, ema, {"epoch": 3}, train_state=state)
    save_checkpoint(root / "bare", model, ema)

    rng = np.random.default_rng(5)
    frames = []
    for k in range(6):
        z, r0 = (molecules["ethanol"] if k % 2 == 0 else molecules["methanol"])
        r = r0 + rng.normal(0.0, 0.05, r0.shape)
        forces = rng.normal(0.0, 1.0, r.shape)
        frames.append((z, r, float(e0[z].sum() + rng.normal(0.0, 0.5)), forces - forces.mean(axis=0)))
    n = max(len(z) for z, *_ in frames)
    Z, R = np.zeros((6, n), np.int64), np.zeros((6, n, 3))
    F = np.full((6, n, 3), 40.0)  # padding rows: garbage no metric may include
    for k, (z, r, _, f) in enumerate(frames):
        Z[k, :len(z)], R[k, :len(z)], F[k, :len(z)] = z, r, f
    np.savez(root / "frames.npz", Z=Z, R=R, F=F, E=np.array([e for _, _, e, _ in frames]),
             N=np.array([len(z) for z, *_ in frames]))
    return root, model, ema, raw, frames


def numpy_metrics(model, params, frames) -> dict:
    """energy/energy per atom/force-component MAE and RMSE of ``params`` on ``frames``, float64 NumPy."""
    params64 = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
    de, de_atom, df = [], [], []
    for z, r, energy, forces in frames:
        out = predict(model, params64, z, np.asarray(r, np.float64), dtype=np.float64)
        de.append(out["energy"] - energy)
        de_atom.append((out["energy"] - energy) / len(z))
        df.append(np.asarray(out["forces"], np.float64) - forces)
    metrics = {}
    for name, err in (("energy", np.array(de)), ("energy_per_atom", np.array(de_atom)),
                      ("forces", np.concatenate(df).ravel())):
        metrics[f"{name}_mae"] = float(np.mean(np.abs(err)))
        metrics[f"{name}_rmse"] = float(np.sqrt(np.mean(err ** 2)))
    return metrics


def run_eval(root, checkpoint, out, *extra) -> int:
    return main(["--checkpoint", str(root / checkpoint), "--data", str(root / "frames.npz"), "--float64",
                 "--no-plots", "--out", str(root / out), *extra])


def test_raw_weights_of_a_trainer_checkpoint_are_the_train_states_not_the_saved_ema(audit, capsys):
    """Old code: --weights raw gave the EMA weights' errors (summary metrics equal to the EMA oracle)."""
    root, model, ema, raw, frames = audit
    assert run_eval(root, "trained", "raw", "--weights", "raw") == 0
    summary = json.loads((root / "raw" / "summary.json").read_text())
    expected, ema_expected = numpy_metrics(model, raw, frames), numpy_metrics(model, ema, frames)
    assert max(abs(expected[k] / ema_expected[k] - 1.0) for k in expected) > 1e-2  # the weight sets differ
    assert set(summary["metrics"]) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(summary["metrics"][key], value, rtol=RTOL, err_msg=key)
    assert summary["counts"]["forces"] == 3 * (3 * 9 + 3 * 6)
    assert summary["weights"] == "raw"
    assert "with the raw (non-EMA) weights" in capsys.readouterr().out


def test_default_weights_are_the_saved_ema_ones_and_the_summary_says_so(audit):
    """Old code: summary.json did not say which weights its errors are of (no ``weights`` key)."""
    root, model, ema, _, frames = audit
    assert run_eval(root, "trained", "ema") == 0
    summary = json.loads((root / "ema" / "summary.json").read_text())
    for key, value in numpy_metrics(model, ema, frames).items():
        np.testing.assert_allclose(summary["metrics"][key], value, rtol=RTOL, err_msg=key)
    assert summary["weights"] == "ema"


def test_raw_weights_of_a_checkpoint_without_a_train_state_are_refused(audit, capsys):
    """Old code: exit 0 with the saved weights' errors reported as the raw ones."""
    root, *_ = audit
    assert run_eval(root, "bare", "bare_raw", "--weights", "raw") == 2
    err = capsys.readouterr().err
    assert "weights='raw' reads the raw weights of the train state" in err and "this one holds none" in err
    assert not (root / "bare_raw" / "summary.json").exists()


def test_load_checkpoint_raw_weights_are_the_train_states(audit):
    """The library call behind --weights raw (and check's): it returned the saved EMA weights for 'raw'."""
    root, model, ema, raw, _ = audit
    _, loaded = load_checkpoint(root / "trained", weights="raw")
    for got, want in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(raw)):
        np.testing.assert_array_equal(np.asarray(got), want)
    _, saved = load_checkpoint(root / "trained")
    for got, want in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(ema)):
        np.testing.assert_array_equal(np.asarray(got), want)
    with pytest.raises(CheckpointError, match="this one holds none"):
        load_checkpoint(root / "bare", weights="raw")
