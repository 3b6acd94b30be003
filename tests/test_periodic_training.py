"""Training and evaluating on periodic cells: stress labels, periodic batches, the stress loss term.

The trainer's batches of periodic frames (and of molecules beside them, in boxes) are compared with the
one-structure paths, predict_periodic (whose stress test_pbc proves against finite differences of a strain) and
predict; the stress and virial error sums with NumPy over those outputs; the trained model's eval metrics with
NumPy over predict_periodic on its checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import ase
import ase.io
import jax
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from physnetjax import PhysNet, predict, predict_periodic
from physnetjax.data import DataError, load_dataset, load_npz
from physnetjax.neighbors import apply_batch
from physnetjax.predict import init_params
from physnetjax.train.batching import as_batched, batch_shapes, iterate_batches
from physnetjax.train.loss import error_sums, loss_from_sums
from physnetjax.units import GPA

from conftest import perturbed_params, warnings_as_errors

TINY = dict(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0, charges=False, zbl=False)


def copper_frames(count: int, seed: int = 0) -> list:
    """Strained, rattled 2×2×2 fcc Cu cells (32 atoms) labelled by ASE's EMT: energy, forces and stress."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        atoms = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.03, 0.03)), cubic=True).repeat((2, 2, 2))
        atoms.set_cell(atoms.cell @ (np.eye(3) + rng.normal(0, 0.01, (3, 3))), scale_atoms=True)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Three Cu cells (one with its atoms unwrapped by a lattice vector) and a Cu4 cluster without a cell, as one
    dataset, with a tiny model's float64 parameters."""
    jax.config.update("jax_enable_x64", True)
    root = tmp_path_factory.mktemp("periodic")
    frames = copper_frames(3)
    frames[1].positions[:5] += frames[1].cell[0]  # unwrapped atoms: the batch wraps them
    cluster = ase.Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]])
    cluster.positions += 40.0  # far from the origin: the batch moves it into its box
    cluster.calc = EMT()
    cluster.calc = SinglePointCalculator(cluster, energy=cluster.get_potential_energy(), forces=cluster.get_forces())
    ase.io.write(root / "mixed.extxyz", frames + [cluster])
    data = load_dataset(root / "mixed.extxyz")
    model = PhysNet(**TINY, max_atomic_number=29)
    params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), perturbed_params(init_params(model), 0.3))
    return root, data, model, params


def test_stress_labels_are_read_from_extxyz_and_npz_in_voigt_or_tensor_form(mixed, tmp_path):
    """On main stress labels were never read (a warning named them). Now an extxyz stress= (ASE writes Voigt) and an
    .npz key S, (M, 3, 3) or (M, 6) Voigt, give the same tensors, ASE's sign; the cluster carries none."""
    root, data, _, _ = mixed
    frames = ase.io.read(root / "mixed.extxyz", ":")
    np.testing.assert_array_equal(data.has_S, [True, True, True, False])
    for k in range(3):
        np.testing.assert_allclose(data.S[k], frames[k].get_stress(voigt=False), rtol=0, atol=1e-15)
    voigt = np.stack([frames[k].get_stress() for k in range(3)])
    base = dict(R=data.R[:3], Z=data.Z[:3], E=data.E[:3], F=data.F[:3], cell=data.cell[:3])
    for stress in (voigt, data.S[:3]):
        np.savez(tmp_path / "cu.npz", S=stress, **base)
        np.testing.assert_array_equal(load_npz(tmp_path / "cu.npz").S, data.S[:3])


@pytest.mark.parametrize("case, message", [
    ("molecule", r"stress labels on frame\(s\) 0, 1, 2 that are not periodic in all three directions .*pbc \[False, "
                 r"False, False\]"),
    ("kbar", r"stress labels beyond 1 eV/Å³ \(160 GPa\) in frame\(s\) 0, 1, 2 .* convert kbar \(× 6\.2415e-4\)"),
    ("one molecule", r"stress labels on frame\(s\) 1 that are not periodic in all three directions"),
    ("one in kbar", r"stress labels beyond 1 eV/Å³ \(160 GPa\) in frame\(s\) 1 "),
])
def test_stress_labels_without_a_volume_or_in_another_unit_are_refused(mixed, tmp_path, case, message):
    """A stress on a molecule has no volume to refer to; a stress in kbar read as eV/Å³ is 1600× too large. Both
    were impossible to notice in training (the loss would fit them)."""
    _, data, _, _ = mixed
    base = dict(R=data.R[:3], Z=data.Z[:3], E=data.E[:3], F=data.F[:3])
    if case == "molecule":
        np.savez(tmp_path / "bad.npz", S=data.S[:3], **base)
    elif case == "one molecule":  # a frame without a cell among cells
        np.savez(tmp_path / "bad.npz", S=data.S[:3], cell=data.cell[:3], pbc=np.array([[True] * 3, [False] * 3,
                                                                                      [True] * 3]), **base)
    else:
        one = case == "one in kbar"
        scale = np.array([1.0, 1602.1766, 1.0])[:, None, None] if one else 1602.1766  # eV/Å³ → kbar
        np.savez(tmp_path / "bad.npz", S=data.S[:3] * scale, cell=data.cell[:3], **base)
    with pytest.raises(DataError, match=message):
        load_npz(tmp_path / "bad.npz")


def test_periodic_batches_equal_the_one_structure_paths(mixed):
    """Each slot of the trainer's batch of cells and a boxed cluster gives the energy, forces and stress of
    predict_periodic on that cell (unwrapped atoms included) and the energy and forces of predict on the cluster
    as an isolated molecule (its box keeps every image beyond the reach), in float64."""
    _, data, model, params = mixed
    data = as_batched(data, model)
    shapes = batch_shapes(data, model, 4)
    assert shapes.periodic
    batch, labels = next(iterate_batches(data, np.arange(4), data.E, model, 4, shapes, dtype=np.float64))
    batch, labels = jax.tree_util.tree_map(lambda x: x[0], (batch, labels))
    out = apply_batch(model, params, batch)
    offset = 0
    for k in range(4):
        n = int(data.N[k])
        z, r = data.Z[k, :n], data.R[k, :n]
        if k < 3:
            reference = predict_periodic(model, params, z, r, data.cell[k], dtype=np.float64)
            np.testing.assert_allclose(out["stress"][k], reference["stress"], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(labels["S"][k], data.S[k], rtol=0, atol=0)
        else:
            reference = predict(model, params, z, r, dtype=np.float64)
            assert not labels["S_mask"][k]
        np.testing.assert_allclose(out["energy"][k], reference["energy"], rtol=1e-11, atol=1e-10)
        np.testing.assert_allclose(out["forces"][offset:offset + n], reference["forces"], rtol=1e-10, atol=1e-10)
        offset += n


def test_stress_error_sums_and_the_virial_loss_term_equal_numpy(mixed):
    """The S sums are Σ|Δσ_ab| and Σ Δσ_ab² over the nine components of the stress-labelled cells; the W term (what
    --stress-weight weighs) the same for Δσ_ab · V/N; the loss with only the stress weight is w Σ W² / count."""
    _, data, model, params = mixed
    data = as_batched(data, model)
    shapes = batch_shapes(data, model, 4)
    batch, labels = next(iterate_batches(data, np.arange(4), data.E, model, 4, shapes, dtype=np.float64))
    batch, labels = jax.tree_util.tree_map(lambda x: x[0], (batch, labels))
    sums = error_sums(model, params, batch, labels)
    errors = np.stack([predict_periodic(model, params, data.Z[k, :32], data.R[k, :32], data.cell[k],
                                        dtype=np.float64)["stress"] - data.S[k] for k in range(3)])
    virial = errors * (np.abs(np.linalg.det(data.cell[:3])) / 32.0)[:, None, None]
    np.testing.assert_allclose([float(x) for x in sums["S"][:3]], [np.abs(errors).sum(), (errors ** 2).sum(), 27],
                               rtol=1e-9)
    np.testing.assert_allclose([float(x) for x in sums["W"][:3]], [np.abs(virial).sum(), (virial ** 2).sum(), 27],
                               rtol=1e-9)
    loss = loss_from_sums(sums, {"W": 2.5}, "mse")
    np.testing.assert_allclose(float(loss), 2.5 * (virial ** 2).mean(), rtol=1e-9)


def test_training_on_cells_reports_stress_and_eval_agrees_with_predict_periodic(tmp_path, capsys, monkeypatch):
    """End to end on EMT copper, the best epoch chosen by the stress MAE: the run's metrics.csv and log carry the
    validation stress MAE, and its stress parity plot shows the validation cells' labels against predict_periodic
    of the best checkpoint (in GPa); eval of the best
    checkpoint reports the stress MAE that NumPy gives over predict_periodic on the same frames, and the frame
    table its largest component error."""
    from physnetjax import load_checkpoint
    from physnetjax.eval.cli import main as eval_main
    from physnetjax.train import TrainConfig, plots, train

    plotted = {}
    monkeypatch.setattr(plots, "learning_curve", lambda rows, path: False)
    monkeypatch.setattr(plots, "parity", lambda ref, pred, quantity, unit, path: plotted.setdefault(
        Path(path).name, (np.asarray(ref), np.asarray(pred), unit)) is None)
    ase.io.write(tmp_path / "cu.extxyz", copper_frames(8, seed=1))
    config = TrainConfig(data=[str(tmp_path / "cu.extxyz")], out=str(tmp_path / "run"), **TINY, train=3, valid=3,
                         test=2, batch_size=2, epochs=2, plots=True, progress=False, best_metric="stress_mae")
    with warnings_as_errors():
        summary = train(config)
    monkeypatch.undo()
    assert summary["valid"]["stress_mae"] > 0 and summary["test"]["stress_mae"] > 0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert all(row.split(",")[header.index("valid_stress_mae")] != "" for row in rows[1:])
    assert eval_main(["--checkpoint", str(tmp_path / "run" / "best"), "--data", str(tmp_path / "cu.extxyz"),
                      "--float64", "--out", str(tmp_path / "eval"),
                      "--write-predictions", str(tmp_path / "predicted.extxyz")]) == 0
    assert (tmp_path / "eval" / "parity_stress.png").stat().st_size > 1000
    capsys.readouterr()
    result = json.loads((tmp_path / "eval" / "summary.json").read_text())
    model, params = load_checkpoint(tmp_path / "run" / "best")
    data = load_dataset(tmp_path / "cu.extxyz")
    predicted_frames = [predict_periodic(model, params, data.Z[k], data.R[k], data.cell[k], dtype=np.float64)
                        for k in range(len(data))]
    stress = np.stack([frame["stress"] for frame in predicted_frames])
    valid = np.load(tmp_path / "run" / "split.npz")["valid"]
    reference, predicted, unit = plotted["parity_stress.png"]
    assert unit == "GPa" and reference.shape == predicted.shape == (len(valid), 3, 3)
    np.testing.assert_allclose(reference, data.S[valid] / GPA, rtol=1e-6)
    np.testing.assert_allclose(predicted, stress[valid] / GPA, rtol=1e-5, atol=1e-5)  # float32 sums over ~10³ pairs
    errors = stress - data.S
    np.testing.assert_allclose(result["metrics"]["stress_mae"], np.abs(errors).mean(), rtol=1e-6)
    np.testing.assert_allclose(result["metrics"]["stress_rmse"], np.sqrt((errors ** 2).mean()), rtol=1e-6)
    assert result["counts"]["stress"] == 9 * len(data)
    with open(tmp_path / "eval" / "frames.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    np.testing.assert_allclose([float(row["stress_max_error"]) for row in table], np.abs(errors).max(axis=(1, 2)),
                               rtol=1e-6)
    written = ase.io.read(tmp_path / "predicted.extxyz", ":")  # was written without cell, pbc or stress
    for k, atoms in enumerate(written):
        assert atoms.pbc.all()
        np.testing.assert_allclose(atoms.cell.array, data.cell[k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), stress[k], rtol=1e-6, atol=1e-9)
        # per-atom energies with every periodic image's pair: extxyz keeps 8 decimals
        np.testing.assert_allclose(atoms.get_potential_energies(), predicted_frames[k]["energies"], rtol=0, atol=5e-9)
        np.testing.assert_allclose(atoms.info["REF_stress"].reshape(3, 3), data.S[k], rtol=0, atol=1e-12)


def strain_ramp(rng, count: int = 60, noise: float = 0.005) -> list:
    """EMT copper along a slow strain ramp: neighbouring frames differ by 0.2 % of the cell and ``noise`` Å."""
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    base.positions += rng.normal(0, 0.05, base.positions.shape)
    frames = []
    for k in range(count):
        atoms = base.copy()
        atoms.set_cell(atoms.cell * (1 + 0.002 * k), scale_atoms=True)
        atoms.positions += rng.normal(0, noise, atoms.positions.shape)
        atoms.calc = EMT()
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


@pytest.mark.parametrize("factor, slip", [(160.21766, r"stress in GPa read as eV/Å³ \(multiply by 6\.2415e-3\)"),
                                          (1602.1766, r"stress in kbar read as eV/Å³ \(multiply by 6\.2415e-4\)"),
                                          (-1.0, r"a pressure tensor, the stress with the opposite sign"),
                                          (-1602.1766, r"a pressure tensor in kbar, as VASP writes it"),
                                          (-160.21766, r"a pressure tensor in GPa \(multiply by -6\.2415e-3\)")])
def test_stress_labels_in_gpa_or_of_the_opposite_sign_are_named(tmp_path, factor, slip):
    """Stress labels in GPa below 1 GPa (under the 160 GPa limit) or with VASP's sign trained silently (a probe:
    stress MAE 34.6 GPa after training). Between nearby cells, the energy change left after the forces' work is
    the strain's work ½(V_a σ_a + V_b σ_b):ε: its slope on the labels is 1 for correct ones (EMT, atoms moving
    0.02 Å between frames: 1.005 ± 0.002; ± 0.03 if the forces' work were left in), 1/160 for GPa, −1 for the
    opposite sign; also 1/1602 for kbar, −1/1602 and −1/160 for a pressure tensor in kbar or GPa (1 GPa =
    6.2415e-3 eV/Å³ from the elementary charge)."""
    from physnetjax.data.sanity import check_label_sanity, energy_stress_slope

    ase.io.write(tmp_path / "ramp.extxyz", strain_ramp(np.random.default_rng(0), noise=0.02))
    data = load_dataset(tmp_path / "ramp.extxyz")
    fit = energy_stress_slope(data)
    assert fit.slope == pytest.approx(1.0, abs=0.02) and fit.error < 0.01
    findings = check_label_sanity(dataclasses.replace(data, S=data.S * factor), "ramp")
    assert len(findings) == 1 and re.match(r"ramp: the stresses do not match the energies: over \d+ pairs of nearby "
                                           r"cells .* it looks like " + slip, findings[0]), findings


def test_correct_periodic_labels_raise_no_label_warnings(tmp_path):
    """The label checks are built for molecules. On EMT copper with correct labels they told the user the forces
    were gradients (the virial Σ(R − R̄)·F of wrapped cells is the pressure's, +53 eV) and that the energies do not
    follow the forces (pairs of frames across a cell strain, whose work the forces do not hold). Periodic frames are
    left out of the virial, frames pair only within one cell for the forces, and the stress check (across cells)
    finds these stresses right."""
    from physnetjax.data.sanity import check_label_sanity

    rng = np.random.default_rng(0)
    frames = strain_ramp(rng)
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    for k in range(40):  # thermal-like frames of one cell, wrapped into it as MD codes write them
        atoms = base.copy()
        atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
        atoms.wrap()
        atoms.calc = EMT()
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    ase.io.write(tmp_path / "ramp.extxyz", frames)
    with warnings_as_errors():
        data = load_dataset(tmp_path / "ramp.extxyz")
        assert check_label_sanity(data, "ramp") == []


def test_unwrapped_cells_are_measured_by_minimum_image_in_the_length_unit_check(tmp_path):
    """Atoms of a cell written unwrapped (shifted by whole lattice vectors, as MD codes write them) were measured
    from their neighbours in the same image: "atoms sit 52× the covalent bond length … positions must be in Å".
    Distances are minimum-image distances now; a cell in bohr read as Å still warns."""
    frames = copper_frames(4)
    rng = np.random.default_rng(0)
    for atoms in frames:
        atoms.positions += rng.integers(-30, 30, (len(atoms), 3)) @ atoms.cell.array
    ase.io.write(tmp_path / "unwrapped.extxyz", frames)
    with warnings_as_errors():
        load_dataset(tmp_path / "unwrapped.extxyz")
    for atoms in frames:
        atoms.set_cell(atoms.cell / 0.529177, scale_atoms=True)
    ase.io.write(tmp_path / "bohr.extxyz", frames)
    with pytest.warns(UserWarning, match=r"atoms sit 1\.\d+× the covalent bond length .* are they in bohr"):
        load_dataset(tmp_path / "bohr.extxyz")


def test_the_trainers_force_check_takes_an_atom_a_rounding_error_outside_its_cell(mixed):
    """An atom at fraction −1e-17 lands at fraction 1.0 after one move by a cell vector; the float64 force check of
    the trainer wraps it as check does (neighbors.periodic.wrapped_positions) instead of stopping on it."""
    from physnetjax.train.forcecheck import finite_difference_force_error

    _, data, model, params = mixed
    positions = data.R[0, : data.N[0]].copy()
    positions[0] = [-1e-17, 0.0, 0.0]
    cell = np.diag(np.diag(data.cell[0]))  # orthorhombic: the fraction of x = −1e-17 is −1e-17 exactly
    assert finite_difference_force_error(model, params, data.Z[0, : data.N[0]], positions, cell=cell) < 1e-6


def test_a_loss_of_the_stress_alone_trains_on_partly_stress_labelled_frames(mixed):
    """Three of the four training frames carry stress: a loss with only --stress-weight above 0 trains them (it was
    to be refused only where no training frame has the labels); with that weight 0 too, nothing trains: refused."""
    from types import SimpleNamespace

    from physnetjax.errors import PhysNetInputError
    from physnetjax.train.config import TrainConfig
    from physnetjax.train.loop import Trainer

    _, data, model, _ = mixed
    config = TrainConfig(energy_weight=0.0, forces_weight=0.0, stress_weight=1.0)
    trainer = SimpleNamespace(config=config, split={"train": np.arange(4)}, dataset=data, model=model, names=None)
    Trainer._check_some_term_trains(trainer)
    trainer.config = dataclasses.replace(config, stress_weight=0.0)
    with pytest.raises(PhysNetInputError, match=r"\(energy_weight 0, forces_weight 0, stress_weight 0; the 4 training "
                                                r"frames have energy, force, stress labels\)"):
        Trainer._check_some_term_trains(trainer)
