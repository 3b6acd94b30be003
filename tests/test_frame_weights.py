"""Per-frame loss weights as MACE reads them: config_weight, config_energy_weight, config_forces_weight,
config_stress_weight (or config_virial_weight) in extxyz info and .npz keys.

Before, the reader skipped every key ending in "weight", so a frame of config_weight=0 trained at full weight.
These tests read the weights (and refuse bad ones by file, key and frame), compare the weighted loss of real
batches (host-packed, device-gathered, periodic) with NumPy written out frame by frame (S_t = Σ_k ω_k,t f(err),
the count n_t unweighted), and train twice to show that a frame of weight 0 has no influence on the parameters
while the metrics still count its error.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import ase
import ase.io
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from physnetjax.checkpoint import load_checkpoint, load_train_state
from physnetjax.data import DataError, concatenate, load_dataset, load_npz, save_split
from physnetjax.errors import PhysNetInputWarning
from physnetjax.eval.outputs import write_predictions
from physnetjax.eval.predictions import Predictions
from physnetjax.learn.frames import save_frames
from physnetjax.model import PhysNet
from physnetjax.neighbors import apply_batch
from physnetjax.predict import init_params, predict
from physnetjax.train import TrainConfig, train
from physnetjax.train.batching import as_batched, batch_shapes, iterate_batches
from physnetjax.train.device_batches import batch_rows, build_device_frames, frame_rows, gather_batch
from physnetjax.train.loss import global_error_sums, loss_from_sums, loss_weights

from conftest import perturbed_params, warnings_as_errors
from test_periodic_training import TINY as PERIODIC_TINY, copper_frames
from test_train import DATA, leaves

KEYS = ("config_weight", "config_energy_weight", "config_forces_weight", "config_stress_weight")
MOLECULE = dict(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=5.0, max_atomic_number=8,
                charges=True, param_dtype=jnp.float64)


@pytest.fixture(scope="module", autouse=True)
def x64():
    jax.config.update("jax_enable_x64", True)


def waters(count: int = 5) -> list:
    """``count`` distorted water molecules with an energy and (zero-sum) forces."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(count):
        atoms = ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]
                          + rng.normal(0, 0.03, (3, 3)))
        forces = rng.normal(0, 0.5, (3, 3))
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0 + 0.01 * k, forces=forces - forces.mean(axis=0))
        frames.append(atoms)
    return frames


EXPECTED = np.array([[0.0, 1, 1, 1], [1, 2, 1, 1], [1, 1, 0.5, 1], [1, 1, 1, 3], [1, 1, 1, 0.25]])
"""The weights of :func:`test_weights_are_read_from_extxyz_info_and_npz_keys`'s five frames, columns KEYS."""


def test_weights_are_read_from_extxyz_info_and_npz_keys(tmp_path):
    """MACE's keys in extxyz info (config_virial_weight as the stress weight, also beside an equal
    config_stress_weight) and as .npz keys of shape (M,) give Dataset.weights, 1 where absent; the summary the
    trainer logs counts them; another key ending in "weight" that varies between frames is named as not read, one
    that does not vary is not. On main all were skipped without a word."""
    frames = waters()
    frames[0].info["config_weight"] = 0.0
    frames[1].info["config_energy_weight"] = 2.0
    frames[2].info["config_forces_weight"] = 0.5
    frames[3].info.update(config_virial_weight=3.0, config_stress_weight=3.0)
    frames[4].info["config_stress_weight"] = 0.25
    for k, atoms in enumerate(frames):
        atoms.info.update(my_weight=float(k % 2), constant_weight=1.0)  # two values are enough to vary
    ase.io.write(tmp_path / "w.extxyz", frames)
    with pytest.warns(UserWarning, match="label-like keys not read: 'my_weight'") as caught:
        data = load_dataset(tmp_path / "w.extxyz")
    assert not any("constant_weight" in str(w.message) for w in caught)
    np.testing.assert_array_equal(data.weights, EXPECTED)
    np.testing.assert_array_equal(data.term_weights[:, 1:], EXPECTED[:, :1] * EXPECTED[:, 1:])
    assert "per-frame loss weights (config_*weight) other than 1 on 5 frame(s), 1 of them of weight 0" in data.summary()

    arrays = dict(R=data.R, Z=data.Z, E=data.E, F=data.F, config_weight=EXPECTED[:, 0],
                  config_energy_weight=EXPECTED[:, 1], config_forces_weight=EXPECTED[:, 2],
                  config_virial_weight=EXPECTED[:, 3])
    np.savez(tmp_path / "w.npz", **arrays)
    np.testing.assert_array_equal(load_npz(tmp_path / "w.npz").weights, EXPECTED)
    plain = load_npz(DATA)
    assert not plain.weighted and "weights" not in plain.summary()
    np.testing.assert_array_equal(concatenate([load_npz(tmp_path / "w.npz"), plain]).weights[5:], 1.0)

    # eval --write-predictions keeps them: its file read back as data has the same weights
    write_predictions(data, Predictions(energy=data.E, forces=data.F, charges=None, dipole=None, total_charge=None),
                      tmp_path / "predicted.extxyz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the REF_* labels beside the predictions are named as not read
        np.testing.assert_array_equal(load_dataset(tmp_path / "predicted.extxyz").weights, EXPECTED)


def test_trained_labels_and_the_summary_follow_each_terms_weight(tmp_path):
    """trained_labels marks absent, term by term, the labels whose term weight is 0 (a frame weight of 0 all four:
    dipole with the frame weight, energy, forces, stress with w_k·w_k,X), keeps a small weight's (0.05) and never
    adds a label a frame lacks; the summary names the elements (not the padding's 0), every label some frame
    carries, the frames with a weight other than 1 and, among them, those of weight 0 in every term."""
    h2 = ase.Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    h2.calc = SinglePointCalculator(h2, energy=-31.0, forces=np.zeros((2, 3)))
    ase.io.write(tmp_path / "six.extxyz", waters(5) + [h2])
    data = load_dataset(tmp_path / "six.extxyz")
    weights = np.array([[0.0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0], [0.05, 1, 1, 1], [1, 1, 1, 1]])
    carried = np.array([True, True, True, True, True, False])  # the H2 frame lacks a dipole and a stress
    data = dataclasses.replace(data, weights=weights, has_D=carried, has_S=carried)
    trained = data.trained_labels()
    np.testing.assert_array_equal(trained.has_D, [False, True, True, True, True, False])
    np.testing.assert_array_equal(trained.has_E, [False, False, True, True, True, True])
    np.testing.assert_array_equal(trained.has_F, [False, True, False, True, True, True])
    np.testing.assert_array_equal(trained.has_S, [False, True, True, False, True, False])
    assert data.summary() == ("6 frames, up to 3 atoms, elements [1, 8], labels E,F,D,S, per-frame loss weights "
                              "(config_*weight) other than 1 on 5 frame(s), 1 of them of weight 0 in every term")


@pytest.mark.parametrize("kind, key, value, match", [
    ("extxyz", "config_weight", -1.0, r"key 'config_weight' frame\(s\) 2: a loss weight must be a finite number >= 0, "
                                      r"received -1 in frame 2"),
    ("extxyz", "config_forces_weight", np.nan, r"key 'config_forces_weight' frame\(s\) 2: .*received nan"),
    ("extxyz", "config_energy_weight", "abc", r"frame 2: info 'config_energy_weight' must be one number, a loss "
                                              r"weight >= 0, received 'abc'"),
    ("extxyz", "config_weight", np.array([1.0, 2.0]), r"frame 2: info 'config_weight' must be one number, a loss "
                                                      r"weight >= 0, received array\(\[1\., 2\.\]\)"),
    ("extxyz", "config_virial_weight", 2.0, r"frame\(s\) 2 give both 'config_stress_weight' and "
                                            r"'config_virial_weight' .* \(1 and 2 in frame 2\)"),
    ("npz", "config_weight", -1.0, r"key 'config_weight' frame\(s\) 2: a loss weight must be a finite number >= 0"),
    ("npz", "config_energy_weight", np.nan, r"key 'config_energy_weight' frame\(s\) 2: .*received nan"),
    ("npz", "config_weight", "abc", r"key 'config_weight' holds <U3 values, expected loss weights"),
    ("npz", "config_virial_weight", 2.0, r"frame\(s\) 2 give both 'config_stress_weight' and 'config_virial_weight'"),
])
def test_bad_weights_are_refused_naming_file_key_and_frame(tmp_path, kind, key, value, match):
    """A negative, NaN or non-numeric weight, and a frame giving stress and virial weights that differ, are
    DataErrors naming file, key and frame (on main they were skipped, and the frame trained at weight 1)."""
    frames = waters()
    if kind == "extxyz":
        frames[2].info[key] = value
        if key == "config_virial_weight":
            frames[2].info["config_stress_weight"] = 1.0
        ase.io.write(tmp_path / "bad.extxyz", frames)
        path = tmp_path / "bad.extxyz"
    else:
        data = load_dataset(_written(tmp_path, frames))
        column = np.ones(5, object if isinstance(value, str) else float)
        column[2] = value
        arrays = dict(R=data.R, Z=data.Z, E=data.E, F=data.F, **{key: column.astype(str if isinstance(value, str)
                                                                                     else float)})
        if key == "config_virial_weight":
            arrays["config_stress_weight"] = np.ones(5)
        np.savez(tmp_path / "bad.npz", **arrays)
        path = tmp_path / "bad.npz"
    with pytest.raises(DataError, match=match) as error:
        load_dataset(path)
    assert str(path) in str(error.value)


def _written(tmp_path, frames):
    ase.io.write(tmp_path / "frames.extxyz", frames)
    return tmp_path / "frames.extxyz"


def test_the_learning_loop_keeps_the_weights_in_its_npz_files(tmp_path):
    """The learning loop writes each round's data (starting frames and new ones) to .npz and trains on that file:
    the starting frames' weights must survive, the new frames' stay 1."""
    data = load_npz(DATA).subset(np.arange(4))
    weights = np.array([[0.0, 1, 1, 1], [1, 2, 1, 1], [1, 1, 0.5, 1], [1, 1, 1, 1]])
    data = dataclasses.replace(data, weights=weights)
    grown = concatenate([data, load_npz(DATA).subset(np.arange(4, 6))])
    save_frames(grown, tmp_path / "data.npz")
    np.testing.assert_array_equal(load_dataset(tmp_path / "data.npz").weights, np.concatenate([weights,
                                                                                               np.ones((2, 4))]))


def frame_by_frame_loss(data, frames, energies, out, labels, weights: dict, kind: str) -> float:
    """Σ_t w_t Σ_k ω_k,t Σ_j f(err_kj) / n_t over ``frames`` (in their batch slots, atoms laid end to end), written
    out per frame in NumPy from the model outputs ``out`` and the dataset's labels and weights; n_t counts every
    labelled entry, whatever its weight. The dipole reference is the batch's (about each molecule's offset)."""
    penalty = np.square if kind == "mse" else np.abs
    omega = data.weights[:, :1] * np.concatenate([np.ones((len(data), 1)), data.weights[:, 1:]], axis=1)
    sums, counts = {t: 0.0 for t in weights}, {t: 0 for t in weights}
    atom = 0
    for slot, k in enumerate(frames):
        n = int(data.N[k])
        entries = {}
        if data.has_E[k]:
            error = np.array([out["energy"][slot] - energies[k]])
            entries.update(E=(error, omega[k, 1]), Ea=(error / n, omega[k, 1]))
        if data.has_F[k]:
            entries["F"] = ((out["forces"][atom:atom + n] - data.F[k, :n]).ravel(), omega[k, 2])
        if "dipoles" in out and data.has_D[k]:
            entries["D"] = (out["dipoles"][slot] - labels["D"][slot], omega[k, 0])
        if "sum_charges" in out and data.has_Q[k]:
            entries["Q"] = (np.array([out["sum_charges"][slot] - data.Q[k]]), omega[k, 0])
        if data.has_S[k]:
            error = (out["stress"][slot] - data.S[k]).ravel()
            entries.update(S=(error, omega[k, 3]), W=(error * abs(np.linalg.det(data.cell[k])) / n, omega[k, 3]))
        for term, (error, w) in entries.items():
            if term in weights:
                sums[term] += w * penalty(error).sum()
                counts[term] += error.size
        atom += n
    return sum(weights[t] * sums[t] / max(counts[t], 1) for t in weights)


@pytest.fixture(scope="module")
def molecules():
    """Six ethanol frames with mixed weights (one of weight 0), a tiny charge model and its float64 parameters."""
    data = load_npz(DATA).subset(np.arange(6))
    weights = np.array([[1, 1, 2, 1], [0, 1, 1, 1], [2, 0.3, 1, 1], [0.5, 1, 0, 1], [1, 0, 1, 1], [3, 2, 0.5, 1]])
    model = PhysNet(**MOLECULE)
    params = perturbed_params(init_params(model, 0), 0.3)
    sums = jax.jit(lambda p, b, l: global_error_sums(model, p, b, l))
    apply = jax.jit(lambda p, b: apply_batch(model, p, jax.tree_util.tree_map(lambda x: x[0], b)))  # device 0
    return dataclasses.replace(data, weights=weights.astype(float)), model, params, sums, apply


CONFIG = TrainConfig(energy_weight=0.7, forces_weight=3.0, dipole_weight=0.2, charge_weight=0.05)


def test_the_weighted_loss_of_host_and_device_batches_equals_numpy_frame_by_frame(molecules):
    """ω_k,t = w_k · w_k,t weighs every entry of frame k in term t (forces: each component of each atom); n_t stays
    the unweighted count. Host-packed and device-gathered batches (8 slots, 6 frames: two empty) give it, for MSE
    and MAE, per molecule and per atom; their unweighted sums (the metrics) are those of the unweighted data."""
    data, model, params, sums_of, apply = molecules
    energies = data.E - data.E.mean()
    frames = np.arange(6)
    shapes = batch_shapes(data, model, 8)
    assert shapes.weighted
    batch, labels = next(iterate_batches(data, frames, energies, model, 8, shapes, dtype=np.float64))
    device_frames = jax.device_put(build_device_frames(data, frames, energies, model, dtype=np.float64))
    rows = batch_rows(frame_rows(frames, len(data))[frames], 8, shapes)[0]
    gathered = jax.jit(gather_batch, static_argnums=2)(device_frames, jnp.asarray(rows), shapes)
    out = jax.tree_util.tree_map(np.asarray, apply(params, batch))
    plain = dataclasses.replace(data, weights=np.ones((6, 4)))
    plain_sums = sums_of(params, *next(iterate_batches(plain, frames, energies, model, 8,
                                                       batch_shapes(plain, model, 8), dtype=np.float64)))
    one_labels = jax.tree_util.tree_map(lambda x: x[0], labels)
    for kind in ("mse", "mae"):
        for per_atom_energy in (False, True):
            weights = loss_weights(dataclasses.replace(CONFIG, per_atom_energy=per_atom_energy))
            expected = frame_by_frame_loss(data, frames, energies, out, one_labels, weights, kind)
            for source in (batch, gathered):
                sums = sums_of(params, *((batch, labels) if source is batch else gathered))
                assert float(loss_from_sums(sums, weights, kind)) == pytest.approx(expected, rel=1e-11)
                for term in weights:
                    np.testing.assert_allclose([float(x) for x in sums[term][:3]],
                                               [float(x) for x in plain_sums[term][:3]], rtol=1e-10, atol=1e-12)
            unweighted = frame_by_frame_loss(plain, frames, energies, out, one_labels, weights, kind)
            assert abs(expected - unweighted) > 1e-3 * unweighted


def test_all_weights_one_give_todays_loss_exactly_and_weight_zero_drops_a_frame_but_not_its_count(molecules, tmp_path):
    """Weights of 1 given in the file add nothing to the batches (the program without weights, bit for bit); weight
    labels of all ones forced into the batch give its loss and sums up to the order of the sums. A frame of config_weight 0 leaves the loss and its gradients unchanged when its labels turn to garbage
    (+1000 eV, flipped forces), and its loss is the other frames' errors over the count that still includes its
    entries (MACE's convention)."""
    data, model, params, sums_of, apply = molecules
    np.savez(tmp_path / "ones.npz", R=data.R, Z=data.Z, N=data.N, E=data.E, F=data.F, D=data.D, Q=data.Q,
             **{key: np.ones(6) for key in KEYS})
    plain = load_npz(tmp_path / "ones.npz")
    energies = plain.E - plain.E.mean()
    frames = np.arange(6)
    shapes = batch_shapes(plain, model, 8)
    assert not shapes.weighted and shapes == batch_shapes(load_npz(DATA).subset(frames), model, 8)
    without = next(iterate_batches(plain, frames, energies, model, 8, shapes, dtype=np.float64))
    ones = next(iterate_batches(plain, frames, energies, model, 8, dataclasses.replace(shapes, weighted=True),
                                dtype=np.float64))
    assert "F_weight" in ones[1] and "F_weight" not in without[1]
    weights = loss_weights(CONFIG)
    sums_without, sums_ones = sums_of(params, *without), sums_of(params, *ones)
    for term in weights:
        np.testing.assert_allclose([float(x) for x in sums_ones[term]], [float(x) for x in sums_without[term]],
                                   rtol=1e-13, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(sums_ones[term][3:]), np.asarray(sums_ones[term][:2]))

    zero = np.ones((6, 4))
    zero[2, 0] = 0.0
    dropped = dataclasses.replace(plain, weights=zero)
    garbage_E, garbage_F = dropped.E.copy(), dropped.F.copy()
    garbage_E[2] += 1000.0
    garbage_F[2] *= -1.0
    garbage = dataclasses.replace(dropped, E=garbage_E, F=garbage_F)
    loss_and_grads = jax.jit(jax.value_and_grad(
        lambda p, b, l: loss_from_sums(global_error_sums(model, p, b, l), weights, "mse")))
    results = []
    for variant in (dropped, garbage):
        batch, labels = next(iterate_batches(variant, frames, energies + (variant.E - plain.E), model, 8,
                                             batch_shapes(variant, model, 8), dtype=np.float64))
        results.append(loss_and_grads(params, batch, labels))
    assert float(results[0][0]) == float(results[1][0])
    for a, b in zip(leaves(results[0][1]), leaves(results[1][1])):
        np.testing.assert_array_equal(a, b)
    out = jax.tree_util.tree_map(np.asarray, apply(params, without[0]))
    one_labels = jax.tree_util.tree_map(lambda x: x[0], without[1])
    others = frame_by_frame_loss(dropped, frames, energies, out, one_labels, weights, "mse")  # n_t: all 6 frames
    assert float(results[0][0]) == pytest.approx(others, rel=1e-11)
    assert others < frame_by_frame_loss(plain, frames, energies, out, one_labels, weights, "mse")


def test_the_stress_weight_weighs_the_stress_and_virial_terms_of_periodic_batches(tmp_path):
    """config_stress_weight (here as MACE's config_virial_weight) multiplies the stress (virial per atom) term of
    its cell only, config_weight every term: the host-packed periodic batch's loss equals NumPy frame by frame."""
    frames = copper_frames(3)
    frames[0].info["config_virial_weight"] = 4.0
    frames[1].info.update(config_weight=0.5, config_stress_weight=0.0)
    ase.io.write(tmp_path / "cu.extxyz", frames)
    data = load_dataset(tmp_path / "cu.extxyz")
    np.testing.assert_array_equal(data.weights[:, [0, 3]], [[1, 4], [0.5, 0], [1, 1]])
    model = PhysNet(**PERIODIC_TINY, max_atomic_number=29)
    params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), perturbed_params(init_params(model), 0.3))
    data = as_batched(data, model)
    shapes = batch_shapes(data, model, 3)
    assert shapes.periodic and shapes.weighted
    energies = data.E - data.E.mean()
    batch, labels = next(iterate_batches(data, np.arange(3), energies, model, 3, shapes, dtype=np.float64))
    sums = jax.jit(lambda p, b, l: global_error_sums(model, p, b, l))(params, batch, labels)
    out = jax.tree_util.tree_map(np.asarray, jax.jit(lambda p, b: apply_batch(model, p, b))(
        params, jax.tree_util.tree_map(lambda x: x[0], batch)))
    weights = {"Ea": 1.0, "F": 1.0, "W": 2.5}
    expected = frame_by_frame_loss(data, np.arange(3), energies, out, {}, weights, "mse")
    assert float(loss_from_sums(sums, weights, "mse")) == pytest.approx(expected, rel=1e-10)
    stress_only = frame_by_frame_loss(data, np.arange(3), energies, out, {}, {"W": 1.0}, "mse")
    assert float(loss_from_sums(sums, {"W": 1.0}, "mse")) == pytest.approx(stress_only, rel=1e-10)
    plain = frame_by_frame_loss(dataclasses.replace(data, weights=np.ones((3, 4))), np.arange(3), energies, out, {},
                                {"W": 1.0}, "mse")
    assert abs(stress_only - plain) > 1e-2 * plain


def test_a_frame_of_weight_zero_does_not_train_but_counts_in_the_metrics(tmp_path, caplog):
    """Two runs (same seed and split) whose data differ only in the labels of two frames of config_weight 0, one
    training and one validation frame: garbage (+1000 eV, forces × 10) in one run, the true labels in the other.
    The trained parameters are identical, as is the validation loss; the validation energy MAE (unweighted, like
    every metric) carries the garbage frame's error of ~1000 eV / 6 frames. The log says the weights were read."""
    data = load_npz(DATA).subset(np.arange(20))
    save_split(tmp_path / "split.npz", {"train": np.arange(12), "valid": np.arange(12, 18), "test": np.arange(18, 20)})
    weight = np.ones(20)
    weight[[3, 13]] = 0.0
    summaries, states = {}, {}
    for case in ("sane", "garbage"):
        energy, forces = data.E.copy(), data.F.copy()
        if case == "garbage":
            energy[[3, 13]] += 1000.0
            forces[[3, 13]] *= 10.0
        np.savez(tmp_path / f"{case}.npz", R=data.R, Z=data.Z, N=data.N, E=energy, F=forces, config_weight=weight)
        config = TrainConfig(data=[str(tmp_path / f"{case}.npz")], out=str(tmp_path / case),
                             split_file=str(tmp_path / "split.npz"), features=8, max_degree=1, num_iterations=1,
                             num_basis_functions=8, cutoff=5.0, batch_size=4, epochs=2, learning_rate=1e-2,
                             progress=False, plots=False, seed=0)
        with caplog.at_level(logging.INFO, logger="physnetjax.train.loop"):
            summaries[case] = train(config)
        states[case] = (load_train_state(tmp_path / case / "latest")["params"],
                        load_checkpoint(tmp_path / case / "best"))
    assert "other than 1 on 2 frame(s), 2 of them of weight 0 in every term" in caplog.text
    for a, b in zip(leaves(states["sane"][0]), leaves(states["garbage"][0])):
        np.testing.assert_array_equal(a, b)
    rows = {case: (tmp_path / case / "metrics.csv").read_text().splitlines() for case in summaries}
    header = rows["sane"][0].split(",")
    column = header.index("valid_loss")
    assert [r.split(",")[column] for r in rows["sane"][1:]] == [r.split(",")[column] for r in rows["garbage"][1:]]
    model, params = states["sane"][1]
    error = float(predict(model, params, data.Z[13], data.R[13], dtype=np.float64)["energy"]) - data.E[13]
    sane, garbage = summaries["sane"]["valid"]["energy_mae"], summaries["garbage"]["valid"]["energy_mae"]
    assert garbage == pytest.approx(sane + (abs(error - 1000.0) - abs(error)) / 6, abs=1e-3)
    assert summaries["garbage"]["valid"]["forces_mae"] > summaries["sane"]["valid"]["forces_mae"] + 0.1


def test_labels_of_weight_zero_are_left_out_of_the_training_label_checks(tmp_path):
    """A frame is given weight 0 because its labels are wrong: training warned about them all the same (energies 1000
    eV off on two frames scatter by tens of eV per atom). Its weight-0 terms are left out of the checks; the
    same wrong energies of weight 1, or a weight-0 term other than the wrong one, are still reported. Likewise the
    element energies are fitted to the training frames whose energy term has a weight above 0."""
    from physnetjax.data.reference import fit_reference_energies
    from physnetjax.data.sanity import check_label_sanity
    from physnetjax.train import Trainer

    data = load_npz(DATA).subset(np.arange(20))
    energy = data.E.copy()
    energy[[3, 13]] += 1000.0
    cases = {"energy weight 0": ("config_energy_weight", False), "weight 1": (None, True),
             "forces weight 0": ("config_forces_weight", True)}
    for case, (key, warned) in cases.items():
        weights = {} if key is None else {key: np.where(np.isin(np.arange(20), [3, 13]), 0.0, 1.0)}
        path, run = tmp_path / f"{case}.npz", tmp_path / case.replace(" ", "_")
        np.savez(path, R=data.R, Z=data.Z, N=data.N, E=energy, F=data.F, **weights)
        run.mkdir()
        with pytest.warns(PhysNetInputWarning, match="energies scatter by") if warned else warnings_as_errors():
            trainer = Trainer(TrainConfig(data=[str(path)], out=str(run), features=8, max_degree=1, num_iterations=1,
                                          num_basis_functions=8, cutoff=5.0, batch_size=4, epochs=1, train=12,
                                          valid=6, test=2, progress=False, plots=False), run, resuming=False)
        train = trainer.split["train"]
        assert np.isin([3, 13], train).all()
        fitted = ~np.isin(train, [3, 13]) if key == "config_energy_weight" else np.ones(len(train), bool)
        expected = fit_reference_energies(data.Z[train], energy[train], trainer.model.max_atomic_number, mask=fitted)
        np.testing.assert_allclose(trainer.element_energies, expected.energies, rtol=1e-12, atol=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scatter = [m for m in check_label_sanity(load_npz(path).trained_labels()) if "energies scatter by" in m]
        assert bool(scatter) == warned, (case, scatter)
