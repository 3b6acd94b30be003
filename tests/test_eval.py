"""``python -m physnetjax.eval``: metrics against NumPy on per-frame float64 predictions, units, legacy
checkpoints, the extxyz predictions round trip, per-element errors, worst frames and CLI errors.

The oracle never goes through the code under test: predictions come from
:func:`physnetjax.predict` one frame at a time in float64, labels from the raw arrays
written into the files, and MAE/RMSE are plain NumPy means.
"""

import csv
import dataclasses
import json
import math
import re
import tomllib
import warnings
from pathlib import Path

import ase
import ase.io
import jax
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from physnetjax import PhysNet, init_params, load_checkpoint, predict
from physnetjax.checkpoint import save_checkpoint
from physnetjax.data import load_dataset
from physnetjax.errors import PhysNetInputWarning
from physnetjax.eval.cli import main
from physnetjax.eval.predictions import predict_dataset
from physnetjax.units import BOHR, HARTREE, KCAL_PER_MOL, KJ_PER_MOL
from conftest import random_params

DATA = Path(__file__).parent / "data"
LEGACY_C = DATA / "legacy" / "C"
RTOL = 1e-9


def labelled_frames(molecules):
    """Raw frames: 6 ethanol frames of train_ethanol64.npz (E, F, D, Q) and 4 methanol frames with synthetic
    labels (extxyz); frame 7 has no forces, frame 8 total charge +1 e, frame 9 no energy. Entries: (Z, R, E|None,
    F|None, D, Q)."""
    with np.load(DATA / "train_ethanol64.npz") as npz:
        raw = {k: npz[k][:6] for k in ("Z", "R", "E", "F", "D", "Q")}
    frames = [(raw["Z"][k], raw["R"][k], raw["E"][k], raw["F"][k], raw["D"][k], raw["Q"][k]) for k in range(6)]
    rng = np.random.default_rng(3)
    z, r0 = molecules["methanol"]
    for k in range(4):
        r = r0 + rng.normal(0.0, 0.05, r0.shape)
        energy = None if k == 3 else float(rng.normal(-60.0, 5.0))
        forces = None if k == 1 else rng.normal(0.0, 1.0, r.shape)
        if forces is not None:
            forces -= forces.mean(axis=0)
        frames.append((z, r, energy, forces, rng.normal(0.0, 0.3, 3), 1.0 if k == 2 else 0.0))
    return raw, frames


def write_extxyz(path, frames, scale: float = 1.0) -> list:
    """Write frames as extxyz (energies and forces divided by ``scale``); returns them as read back by ASE."""
    images = []
    for z, r, energy, forces, dipole, charge in frames:
        atoms = ase.Atoms(numbers=z, positions=r)
        results = {"dipole": dipole}
        if energy is not None:
            results["energy"] = energy / scale
        if forces is not None:
            results["forces"] = forces / scale
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["charge"] = charge
        images.append(atoms)
    ase.io.write(path, images, format="extxyz")
    back = []
    for atoms in ase.io.read(path, ":"):
        results = atoms.calc.results
        back.append((atoms.numbers, atoms.positions, results.get("energy"), results.get("forces"),
                     results["dipole"], atoms.info["charge"]))
    return back


@pytest.fixture(scope="module")
def setup(molecules, tmp_path_factory):
    jax.config.update("jax_enable_x64", True)
    root = tmp_path_factory.mktemp("eval")
    e0 = np.zeros(9)
    e0[[1, 6, 8]] = (-10.0, -40.0, -60.0)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=8, charges=True, zbl=False, n_res=1, element_energies=tuple(e0))
    params = random_params(model, seed=1)
    save_checkpoint(root / "model", model, params)
    raw, frames = labelled_frames(molecules)
    np.savez(root / "ethanol.npz", **raw)
    np.savez(root / "ethanol_kcal.npz", **{**raw, "E": raw["E"] / KCAL_PER_MOL, "F": raw["F"] / KCAL_PER_MOL})
    frames = frames[:6] + write_extxyz(root / "small.extxyz", frames[6:])
    write_extxyz(root / "small_kcal.extxyz", frames[6:], scale=KCAL_PER_MOL)
    params64 = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
    oracle = [predict(model, params64, z, np.asarray(r, np.float64), total_charge=q, dtype=np.float64)
              for z, r, _, _, _, q in frames]
    return root, frames, oracle


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def numpy_metrics(frames, oracle) -> dict:
    """MAE/RMSE of every quantity, per element force errors and per-frame force MAE, in NumPy."""
    de = np.array([p["energy"] - e for (_, _, e, *_), p in zip(frames, oracle) if e is not None])
    de_atom = np.array([(p["energy"] - e) / len(z) for (z, _, e, *_), p in zip(frames, oracle) if e is not None])
    df = np.concatenate([p["forces"] - f for (_, _, _, f, *_), p in zip(frames, oracle) if f is not None])
    zf = np.concatenate([z for (z, _, _, f, *_), p in zip(frames, oracle) if f is not None])
    dd = np.array([p["dipole"] - d for (_, _, _, _, d, _), p in zip(frames, oracle)])
    dq = np.array([p["charges"].sum() - q for (*_, q), p in zip(frames, oracle)])
    metrics = {}
    for name, err in (("energy", de), ("energy_per_atom", de_atom), ("forces", df), ("dipole", dd), ("charge", dq)):
        metrics[f"{name}_mae"] = np.mean(np.abs(err))
        metrics[f"{name}_rmse"] = np.sqrt(np.mean(err ** 2))
    elements = {s: (np.mean(np.abs(df[zf == z])), np.sqrt(np.mean(df[zf == z] ** 2)), int((zf == z).sum()))
                for s, z in (("H", 1), ("C", 6), ("O", 8))}
    frame_force_mae = np.array([np.mean(np.abs(p["forces"] - f)) if f is not None else -1.0
                                for (_, _, _, f, *_), p in zip(frames, oracle)])
    return {"metrics": metrics, "elements": elements, "frame_force_mae": frame_force_mae,
            "energy_errors": np.array([abs(p["energy"] - e) if e is not None else -1.0
                                       for (_, _, e, *_), p in zip(frames, oracle)])}


@pytest.fixture(scope="module")
def evaluated(setup):
    root, frames, oracle = setup
    out = root / "out"
    assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", root / "small.extxyz",
                   "--float64", "--batch-size", 4, "--worst", 3, "--out", out,
                   "--write-predictions", out / "pred.extxyz") == 0
    return json.loads((out / "summary.json").read_text()), out


def test_metrics_equal_numpy_on_per_frame_float64_predictions(setup, evaluated):
    _, frames, oracle = setup
    summary, _ = evaluated
    expected = numpy_metrics(frames, oracle)
    assert set(summary["metrics"]) == set(expected["metrics"])
    for key, value in expected["metrics"].items():
        np.testing.assert_allclose(summary["metrics"][key], value, rtol=RTOL, atol=1e-12, err_msg=key)
    assert summary["counts"] == {"energy": 9, "energy_per_atom": 9, "forces": 3 * (6 * 9 + 3 * 6),
                                 "dipole": 30, "charge": 10}


def test_float32_predictions_of_molecules_far_from_the_origin_are_those_at_the_origin(setup):
    """Frames 1000 Å from the origin (one float32 ulp is 6e-5 Å there) were cast to float32 as stored: forces 3 meV/Å
    off those of the same frames at the origin. Each molecule is now evaluated about its centroid, as predict does:
    the same float32 numbers wherever it sits, and the dipole about the origin (shifted by Q·s, with Q = 1 here)."""
    root, _, _ = setup
    model, params = load_checkpoint(root / "model")
    near = load_dataset(root / "ethanol.npz")
    near = dataclasses.replace(near, Q=np.ones(len(near)))
    shift = np.array([1000.0, -700.0, 1300.0])
    far = dataclasses.replace(near, R=np.where(near.Z[..., None] > 0, near.R + shift, 0.0))
    a, b = (predict_dataset(model, params, frames, batch_size=4) for frames in (near, far))
    np.testing.assert_allclose(b.forces, a.forces, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b.energy, a.energy, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b.dipole - a.dipole, np.broadcast_to(shift, a.dipole.shape), rtol=0, atol=1e-4)


def test_per_element_force_errors_equal_numpy(setup, evaluated):
    _, frames, oracle = setup
    summary, _ = evaluated
    expected = numpy_metrics(frames, oracle)["elements"]
    assert list(summary["element_forces"]) == ["H", "C", "O"]
    for symbol, (mae, rmse, atoms) in expected.items():
        got = summary["element_forces"][symbol]
        assert got["atoms"] == atoms
        np.testing.assert_allclose([got["mae"], got["rmse"]], [mae, rmse], rtol=RTOL)


def test_worst_frames_and_per_frame_csv(setup, evaluated):
    _, frames, oracle = setup
    summary, out = evaluated
    expected = numpy_metrics(frames, oracle)
    assert [r["frame"] for r in summary["worst_frames"]["forces"]] == list(np.argsort(-expected["frame_force_mae"])[:3])
    assert [r["frame"] for r in summary["worst_frames"]["energy"]] == list(np.argsort(-expected["energy_errors"])[:3])
    with open(out / "frames.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10
    for k, (row, p) in enumerate(zip(rows, oracle)):
        np.testing.assert_allclose(float(row["energy_pred"]), p["energy"], rtol=1e-12)
        assert (row["energy_error"] == "") == (frames[k][2] is None)
        assert (row["forces_mae"] == "") == (frames[k][3] is None)
        if frames[k][3] is not None:
            np.testing.assert_allclose(float(row["forces_mae"]), expected["frame_force_mae"][k], rtol=RTOL)
            per_atom = [math.sqrt(sum((p["forces"][i, a] - frames[k][3][i][a]) ** 2 for a in range(3)))
                        for i in range(len(frames[k][0]))]
            squares = sum(error * error for error in per_atom)
            np.testing.assert_allclose(float(row["forces_rmse"]), math.sqrt(squares / (3 * len(per_atom))), rtol=RTOL)
            np.testing.assert_allclose(float(row["forces_max_atom_error"]), max(per_atom), rtol=RTOL)
        if frames[k][2] is not None:
            np.testing.assert_allclose(float(row["energy_error_per_atom"]),
                                       (p["energy"] - frames[k][2]) / len(frames[k][0]), rtol=RTOL)
    pytest.importorskip("matplotlib")
    for name in ("energy", "forces", "dipole", "charge"):
        assert (out / f"parity_{name}.png").stat().st_size > 1000


def test_written_predictions_round_trip_through_ase(setup, evaluated):
    _, frames, oracle = setup
    _, out = evaluated
    images = ase.io.read(out / "pred.extxyz", index=":")
    assert len(images) == len(frames)
    for atoms, (z, r, energy, forces, dipole, charge), p in zip(images, frames, oracle):
        np.testing.assert_array_equal(atoms.numbers, z)
        np.testing.assert_allclose(atoms.positions, r, atol=1e-8)
        np.testing.assert_allclose(atoms.get_potential_energy(), p["energy"], rtol=1e-12)
        # extxyz keeps 8 decimals of per-atom values: 5e-9 eV each, 4.5e-8 eV for the sum of 9
        np.testing.assert_allclose(atoms.get_potential_energies(), p["energies"], rtol=0, atol=5e-9)
        np.testing.assert_allclose(atoms.get_potential_energies().sum(), p["energy"], rtol=0, atol=5e-8)
        np.testing.assert_allclose(atoms.get_forces(), p["forces"], atol=1e-7)
        np.testing.assert_allclose(atoms.get_dipole_moment(), p["dipole"], atol=1e-7)
        np.testing.assert_allclose(atoms.get_charges(), p["charges"], atol=1e-7)
        assert ("REF_energy" in atoms.info) == (energy is not None)
        assert ("REF_forces" in atoms.arrays) == (forces is not None)
        if energy is not None:
            np.testing.assert_allclose(atoms.info["REF_energy"], energy, rtol=1e-12)
        if forces is not None:
            np.testing.assert_allclose(atoms.arrays["REF_forces"], forces, atol=1e-7)
        np.testing.assert_allclose(atoms.info["REF_dipole"], dipole, atol=1e-12)
        assert atoms.info["REF_charge"] == atoms.info["charge"] == charge


def test_ensemble_spreads_are_written_and_judged_against_the_errors(setup, evaluated, tmp_path):
    """eval of an ensemble wrote the members' mean and nothing of their spread: no energy_std / forces_std in
    frames.csv, predictions or summary.json. Oracle: the members evaluated one by one (predict, float64), NumPy
    spreads × the calibration scale, SciPy's Spearman ρ."""
    from scipy.stats import spearmanr

    from physnetjax.ensemble import PhysNetEnsemble, stack_members

    root, frames, _ = setup
    model, params = load_checkpoint(root / "model")
    members = [params] + [random_params(model, seed) for seed in (2, 3)]
    scale = 1.5
    save_checkpoint(tmp_path / "ensemble", PhysNetEnsemble(model, 3, calibration_scale=scale), stack_members(members))
    out = tmp_path / "out"
    assert run_cli("--checkpoint", tmp_path / "ensemble", "--data", root / "ethanol.npz", root / "small.extxyz",
                   "--float64", "--out", out, "--write-predictions", out / "pred.extxyz") == 0
    energy_std, max_force_std, ratios, frame_rmse, frame_spread, energies_std = [], [], [], [], [], []
    for z, r, _, forces, _, q in frames:
        outputs = [predict(model, jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), member), z,
                           np.asarray(r, np.float64), total_charge=q, dtype=np.float64) for member in members]
        f = np.array([o["forces"] for o in outputs])
        sigma = scale * np.sqrt(np.mean(np.sum((f - f.mean(axis=0)) ** 2, axis=-1), axis=0))
        energy_std.append(scale * np.std([o["energy"] for o in outputs]))
        energies_std.append(scale * np.std([o["energies"] for o in outputs], axis=0))
        max_force_std.append(sigma.max())
        if forces is not None:
            error = np.sum((f.mean(axis=0) - forces) ** 2, axis=-1)
            ratios.append(error / sigma**2)
            frame_rmse.append(np.sqrt(error.mean()))
            frame_spread.append(sigma.max())
    with open(out / "frames.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    np.testing.assert_allclose([float(row["energy_std"]) for row in rows], energy_std, rtol=1e-9)
    np.testing.assert_allclose([float(row["forces_max_atom_std"]) for row in rows], max_force_std, rtol=1e-9)
    uncertainty = json.loads((out / "summary.json").read_text())["uncertainty"]
    np.testing.assert_allclose(uncertainty["force_error_over_spread"], np.sqrt(np.concatenate(ratios).mean()),
                               rtol=1e-9)
    np.testing.assert_allclose(uncertainty["spearman_max_forces_std_vs_force_rmse"],
                               spearmanr(frame_spread, frame_rmse).statistic, rtol=1e-9)
    images = ase.io.read(out / "pred.extxyz", index=":")
    np.testing.assert_allclose([atoms.info["energy_std"] for atoms in images], energy_std, rtol=1e-9)
    np.testing.assert_allclose([atoms.arrays["forces_std"].max() for atoms in images], max_force_std, rtol=1e-7)
    for atoms, expected in zip(images, energies_std):
        np.testing.assert_allclose(atoms.arrays["energies_std"], expected, rtol=1e-7, atol=1e-12)
    summary, single = evaluated
    assert summary["uncertainty"] is None
    with open(single / "frames.csv", newline="") as handle:
        assert {row["energy_std"] for row in csv.DictReader(handle)} == {""}


def test_energy_unit_conversion_gives_the_same_metrics(setup, evaluated, tmp_path):
    """The same frames stored in kcal/mol and kcal/mol/Å, read with --energy-unit kcal/mol, give the eV metrics."""
    root, _, _ = setup
    summary, _ = evaluated
    assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol_kcal.npz", root / "small_kcal.extxyz",
                   "--energy-unit", "kcal/mol", "--float64", "--batch-size", 4, "--worst", 3, "--out", tmp_path,
                   "--no-plots") == 0
    converted = json.loads((tmp_path / "summary.json").read_text())
    assert converted["data_units"]["energy"] == "kcal/mol"
    assert converted["units"] == {"energy": "eV", "forces": "eV/Å", "dipole": "e·Å", "charge": "e",
                                  "stress": "eV/Å³"}  # the errors'
    assert set(converted["metrics"]) == set(summary["metrics"])
    # extxyz stores forces with 8 decimals: the two files' force labels differ by up to
    # 0.5e-8 eV/Å + 0.5e-8 kcal/mol/Å per component; energies (repr) and the .npz are exact.
    rounding = 0.5e-8 * (1.0 + KCAL_PER_MOL)
    for key, value in summary["metrics"].items():
        atol = rounding if key.startswith("forces") else 1e-12
        np.testing.assert_allclose(converted["metrics"][key], value, rtol=1e-12, atol=atol, err_msg=key)


@pytest.mark.parametrize("suffix", ["traj", "db"])
def test_ase_trajectory_and_database_give_the_extxyz_metrics(setup, evaluated, tmp_path, suffix):
    """The extxyz frames (as read back) stored as ASE .traj / .db: same labels, so the same metrics."""
    root, frames, _ = setup
    images = []
    for z, r, energy, forces, dipole, charge in frames[6:]:
        atoms = ase.Atoms(numbers=z, positions=r)
        atoms.set_initial_charges(np.full(len(z), charge / len(z)))  # the .db keeps no info["charge"]
        results = {"dipole": dipole, **({} if energy is None else {"energy": energy}),
                   **({} if forces is None else {"forces": forces})}
        atoms.calc = SinglePointCalculator(atoms, **results)
        images.append(atoms)
    ase.io.write(tmp_path / f"small.{suffix}", images)
    assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", tmp_path / f"small.{suffix}",
                   "--float64", "--batch-size", 4, "--out", tmp_path / "out", "--no-plots") == 0
    metrics = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]
    summary, _ = evaluated
    assert set(metrics) == set(summary["metrics"])
    for key, value in summary["metrics"].items():
        np.testing.assert_allclose(metrics[key], value, rtol=1e-12, atol=1e-15, err_msg=key)


def test_periodic_frames_of_a_bare_coulomb_model_are_refused_and_vacuum_boxes_evaluated(setup, evaluated, tmp_path,
                                                                                         capsys):
    """On main periodic extxyz frames were evaluated as isolated molecules (a warning only): wrong neighbours, wrong
    errors. A charge model whose Coulomb sum has no cutoff cannot evaluate a cell whose images lie within its reach:
    refused in one line (exit 2); molecules in vacuum boxes wider than the reach are isolated molecules, evaluated
    exactly so (their dipoles included)."""
    root, frames, _ = setup
    for name, cell in (("tight", [5.0, 5.0, 5.0]), ("vacuum", [30.0, 30.0, 30.0])):
        images = []
        for z, r, energy, forces, dipole, charge in frames[6:]:
            atoms = ase.Atoms(numbers=z, positions=r, cell=cell, pbc=True)
            atoms.calc = SinglePointCalculator(atoms, dipole=dipole, **({} if energy is None else {"energy": energy}),
                                               **({} if forces is None else {"forces": forces}))
            atoms.info["charge"] = charge
            images.append(atoms)
        ase.io.write(tmp_path / f"{name}.extxyz", images)
    args = ("--checkpoint", root / "model", "--data", root / "ethanol.npz")
    assert run_cli(*args, tmp_path / "tight.extxyz", "--float64", "--no-plots") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        r"python -m physnetjax.eval: error: 4 frame\(s\) are periodic cells \(e\.g\. .*tight.extxyz\[\d\]\), and a "
        r"charge model's Coulomb term without a long-range cutoff \(coulomb_lr_cutoff\) sums over all atom pairs, "
        r"which is infinite in a crystal \(no Ewald sum here\): periodic cells need a model without charges \(train "
        r"with --no-charges\) or, built from Python, a model with a coulomb_lr_cutoff", lines[-1]), lines
    assert run_cli(*args, tmp_path / "vacuum.extxyz", "--float64", "--batch-size", 4, "--out", tmp_path / "out",
                   "--no-plots") == 0
    metrics = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]
    for key, value in evaluated[0]["metrics"].items():
        np.testing.assert_allclose(metrics[key], value, rtol=1e-12, atol=1e-15, err_msg=key)


def test_legacy_checkpoint(tmp_path):
    """Legacy fixture C (charges + ZBL) on its 5 reference geometries with their data labels."""
    jax.config.update("jax_enable_x64", True)
    with np.load(LEGACY_C / "geometries.npz") as npz:
        Z, R, N, E, F = npz["Z"], npz["R"].astype(np.float64), npz["N"], npz["E_data_eV"], npz["F_data_eV_per_A"]
    np.savez(tmp_path / "legacy.npz", Z=Z, R=R, N=N, E=E, F=F)
    with pytest.warns(UserWarning, match="legacy"):
        model, params = load_checkpoint(LEGACY_C)
    params64 = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
    de, df = [], []
    for k in range(len(N)):
        n = int(N[k])
        p = predict(model, params64, Z[k, :n], R[k, :n], dtype=np.float64)
        de.append(p["energy"] - E[k])
        df.append(p["forces"] - F[k, :n])
    de, df = np.array(de), np.concatenate(df)
    with pytest.warns(UserWarning, match="legacy"):
        assert run_cli("--checkpoint", LEGACY_C, "--data", tmp_path / "legacy.npz", "--float64",
                       "--out", tmp_path / "out", "--no-plots") == 0
    used = tomllib.loads((tmp_path / "out" / "config.toml").read_text())
    assert (used["checkpoint"], used["data"], used["float64"], used["plots"]) == (
        str(LEGACY_C), [str(tmp_path / "legacy.npz")], True, False)
    metrics = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]
    assert set(metrics) == {f"{q}_{s}" for q in ("energy", "energy_per_atom", "forces") for s in ("mae", "rmse")}
    np.testing.assert_allclose(metrics["energy_mae"], np.mean(np.abs(de)), rtol=RTOL)
    np.testing.assert_allclose(metrics["energy_rmse"], np.sqrt(np.mean(de ** 2)), rtol=RTOL)
    np.testing.assert_allclose(metrics["forces_mae"], np.mean(np.abs(df)), rtol=RTOL)
    np.testing.assert_allclose(metrics["forces_rmse"], np.sqrt(np.mean(df ** 2)), rtol=RTOL)


def test_plain_tables_when_stdout_is_not_a_terminal(setup, capsys):
    """Captured stdout is not a TTY: plain columns, every frame name printed in full (all listed as worst)."""
    root, _, _ = setup
    assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", root / "small.extxyz",
                   "--float64", "--batch-size", 4, "--worst", 10) == 0
    text = capsys.readouterr().out
    assert "…" not in text and "─" not in text
    sources = [f"{root / 'ethanol.npz'}[{k}]" for k in range(6)] + [f"{root / 'small.extxyz'}[{k}]" for k in range(4)]
    for needle in ["energy per molecule", "force components", "dipole components", "total charge",
                   "forces #9", "energy #9"] + sources:
        assert needle in text, needle
    assert "forces #10" not in text and "energy #10" not in text  # one frame lacks forces, one energy


@pytest.mark.parametrize("case", ["missing checkpoint", "missing data key", "out is a file", "out not creatable",
                                  "predictions directory missing", "predictions suffix"])
def test_cli_errors_are_one_line_and_checked_before_evaluating(setup, tmp_path, capsys, case):
    root, _, _ = setup
    (tmp_path / "file").write_text("x")
    np.savez(tmp_path / "noz.npz", R=np.zeros((1, 2, 3)), E=np.zeros(1))
    args = {"checkpoint": root / "model", "data": root / "ethanol.npz", "extra": []}
    expected, status = {
        "missing checkpoint": ("does not exist", 2), "missing data key": ("missing required key 'Z'", 2),
        "out is a file": ("is not a directory", 3),
        "out not creatable": (f"file/sub: {tmp_path / 'file'} is a file, not a folder", 3),
        "predictions directory missing": ("does not exist", 3),
        "predictions suffix": ("must end in", 2),
    }[case]
    if case == "missing checkpoint":
        args["checkpoint"] = tmp_path / "nowhere"
    elif case == "missing data key":
        args["data"] = tmp_path / "noz.npz"
    elif case == "out is a file":
        args["extra"] = ["--out", tmp_path / "file"]
    elif case == "out not creatable":
        args["extra"] = ["--out", tmp_path / "file" / "sub"]
    elif case == "predictions directory missing":
        args["extra"] = ["--write-predictions", tmp_path / "no" / "p.extxyz", "--out", tmp_path / "o"]
    else:
        args["extra"] = ["--write-predictions", tmp_path / "p.csv"]
    assert run_cli("--checkpoint", args["checkpoint"], "--data", args["data"], *args["extra"]) == status
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m physnetjax.eval: error: ") and expected in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    if case == "predictions directory missing":
        assert not (tmp_path / "o" / "summary.json").exists()
    assert run_cli("--checkpoint", args["checkpoint"], "--data", args["data"], *args["extra"], "--verbose") == status
    assert "Traceback" in capsys.readouterr().err


def test_warns_about_elements_the_model_never_saw(tmp_path):
    """A model trained on C and O (recorded in its metadata) evaluated on frames with H: one warning naming H."""
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0, max_atomic_number=8)
    save_checkpoint(tmp_path / "ckpt", model, init_params(model, 0), {"trained_elements": [6, 8]})
    z = np.array([[8, 1, 1], [6, 8, 0]])
    r = np.array([[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], [[0, 0, 0], [1.13, 0, 0], [0, 0, 0]]], float)
    np.savez(tmp_path / "data.npz", Z=z, R=r, N=np.array([3, 2]), E=np.zeros(2), F=np.zeros((2, 3, 3)))
    with pytest.warns(UserWarning, match=r"H \(Z=1\) \(in 1 of 2 frames, first frame 0\) never occurred.*trained on C, O"):
        assert run_cli("--checkpoint", tmp_path / "ckpt", "--data", tmp_path / "data.npz", "--no-plots") == 0


def test_warns_about_frames_outside_the_training_distances(tmp_path):
    """Water whose O-H bonds (0.96 Å) are shorter than any of the (hand-made) training record's: the frame is
    counted; the frame with 1.6 Å bonds is not (its H nearest neighbours lie inside the record's 1.5 Å)."""
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0, max_atomic_number=8)
    record = {"cutoff": 4.0, "shortest": {"1-8": 1.5}, "longest_nearest_neighbour": {"1": 1.5}}
    save_checkpoint(tmp_path / "ckpt", model, init_params(model, 0), {"trained_distances": record})
    water = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], float)
    np.savez(tmp_path / "data.npz", Z=np.array([[8, 1, 1]] * 2), R=np.array([water * 1.6 / 0.96, water]),
             N=np.array([3, 3]), E=np.zeros(2), F=np.zeros((2, 3, 3)))
    with pytest.warns(UserWarning, match=r"--data: 1 of 2 frames \(first frame 1: atoms 0 \(O\) and 1 \(H\) are "
                                         r"0.96 Å apart; the training data's shortest O-H distance was 1.5 Å "
                                         r"\(and 1 more such pair\(s\)\)\) hold interatomic distances"):
        assert run_cli("--checkpoint", tmp_path / "ckpt", "--data", tmp_path / "data.npz", "--no-plots") == 0


def test_warns_about_total_charges_the_model_never_saw(tmp_path):
    """A model trained on neutral frames evaluated on cations: its errors there were reported as if trained."""
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0, max_atomic_number=8,
                    charges=True)
    save_checkpoint(tmp_path / "ckpt", model, init_params(model, 0), {"trained_charges": [0.0]})
    r = np.array([[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]] * 3, float)
    np.savez(tmp_path / "data.npz", Z=np.array([[8, 1, 1]] * 3), R=r, N=np.array([3, 3, 3]), E=np.zeros(3),
             F=np.zeros((3, 3, 3)), Q=np.array([0.0, 1.0, 1.0]))
    with pytest.warns(UserWarning, match=r"--data: total charge\(s\) \+1 e \(in 2 of 3 frames, first frame 1\) never "
                                         r"occurred in this model's training data \(trained on total charge 0 e\)"):
        assert run_cli("--checkpoint", tmp_path / "ckpt", "--data", tmp_path / "data.npz", "--no-plots") == 0


def test_labels_in_other_units_warn_whatever_the_model(setup):
    """kcal/mol data read as eV by a model too poor for the comparison with its predictions: on main no warning,
    the MAEs (23× too large) were printed as eV; now the trainer's checks of the labels alone speak."""
    root, _, _ = setup
    with pytest.warns(PhysNetInputWarning, match=r"ethanol_kcal.npz: RMS force component .* eV/Å is implausibly "
                                                 r"large .*pass --energy-unit"):
        assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol_kcal.npz", "--no-plots") == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol_kcal.npz", "--energy-unit",
                       "kcal/mol", "--no-plots") == 0
    assert not [w for w in caught if "RMS force" in str(w.message) or "scatter" in str(w.message)]


def test_a_model_trained_without_energies_warns_that_its_energy_errors_are_an_offset(setup, tmp_path):
    """On main the energy MAE of a force-only model (223.6 eV on methanol) was printed as its error, unremarked."""
    root, _, _ = setup
    model, params = load_checkpoint(root / "model")
    save_checkpoint(tmp_path / "forces_only", model, params, {"element_energies_fit": None})
    with pytest.warns(PhysNetInputWarning, match=r"forces_only was trained without energy labels: its energies carry "
                                                 r"an arbitrary offset"):
        assert run_cli("--checkpoint", tmp_path / "forces_only", "--data", root / "ethanol.npz", "--no-plots") == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", "--no-plots") == 0
    assert not [w for w in caught if "without energy labels" in str(w.message)]


def test_labels_a_multiple_of_the_predictions_warn_and_force_sign_fixes_gradients(tmp_path):
    """A trained model (shipped ethanol_ir) on its own data with gradients, kcal/mol energies or Debye dipoles: on
    main eval reported their errors as the model's, silently (and had no --force-sign)."""
    from physnetjax.data import load_dataset
    from physnetjax.errors import PhysNetInputWarning
    from physnetjax.eval.evaluate import check_label_scale
    from physnetjax.eval.predictions import predict_dataset
    from physnetjax.pretrained import example_model_path

    jax.config.update("jax_enable_x64", True)
    checkpoint = example_model_path().parent.parent / "ethanol_ir" / "model"
    with np.load(DATA / "train_ethanol64.npz") as npz:
        raw = {k: npz[k][:16] for k in npz.files}
    np.savez(tmp_path / "gradients.npz", **dict(raw, F=-raw["F"]))
    common = ("--checkpoint", checkpoint, "--data", tmp_path / "gradients.npz", "--float64", "--no-plots")
    with pytest.warns(PhysNetInputWarning, match=r"reference forces are -1× the model's predictions .* "
                                                 r"cosine -1\.00.*--force-sign -1"):
        assert run_cli(*common) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        assert run_cli(*common, "--force-sign", "-1") == 0

    model, params = load_checkpoint(checkpoint)
    data = load_dataset(DATA / "train_ethanol64.npz").subset(np.arange(16))
    predictions = predict_dataset(model, params, data, dtype="float64")
    assert check_label_scale(data, predictions) == []
    debye_in_ea = 1e-21 / 299792458.0 / 1.602176634e-19 * 1e10
    mistaken = dataclasses.replace(data, E=data.E / KCAL_PER_MOL, D=data.D / debye_in_ea)
    with pytest.warns(PhysNetInputWarning) as record:
        messages = check_label_scale(mistaken, predictions)
    assert len(record) == len(messages) == 2
    assert re.search(r"reference dipoles are 4\.8\d?× .*--dipole-unit", messages[0])
    assert re.search(r"reference energies \(about each molecule's mean\) are 2\d\.\d× .*--energy-unit", messages[1])


@pytest.mark.parametrize("label, scale, hint", [
    ("F", BOHR / HARTREE, "set --force-unit (default: the --energy-unit per Å): 0.0194 fits hartree/bohr read as "
                          "eV/Å"),  # main: a list of slips led by kcal/mol/Å
    ("F", 1 / KCAL_PER_MOL, "set --force-unit (default: the --energy-unit per Å): 23.1 fits kcal/mol/Å read as eV/Å"),
    ("F", 1 / 3, "set --force-unit (default: the --energy-unit per Å) (slopes of common slips: 23.06 for "
                 "kcal/mol/Å read as eV/Å, "),
    ("F", BOHR, "set --force-unit (default: the --energy-unit per Å): 0.529 fits eV/bohr read as eV/Å"),
    ("F", 1 / BOHR, "set --force-unit (default: the --energy-unit per Å): 1.89 fits eV/Å read as eV/bohr"),
    ("F", -BOHR, "pass --force-sign -1, and they are in other units than given: set --force-unit (default: the "
                 "--energy-unit per Å): 0.529 fits eV/bohr read as eV/Å"),
    ("E", 1 / HARTREE, "set --energy-unit: 0.0367 fits hartree read as eV"),
    ("E", 1 / KJ_PER_MOL, "set --energy-unit: 96.5 fits kJ/mol read as eV"),
    # a negative slope is no unit slip (a formate model on the neutral radical: dipoles -6.6x, "set --dipole-unit")
    ("E", -1.0, "energies of the opposite sign to the model's, which no unit explains: labels of another sign "
                "convention, or a model wrong for these frames"),
], ids=["hartree/bohr forces", "kcal/mol/A forces", "no slip", "eV/bohr forces", "eV/A read as eV/bohr",
        "eV/bohr gradients", "hartree energies", "kJ/mol energies", "energies turned around"])
def test_labels_a_multiple_of_the_predictions_name_the_unit_slip_of_that_ratio(label, scale, hint):
    """Predictions equal to the right labels; the labels as read are ``scale`` × those."""
    from physnetjax.data import load_dataset
    from physnetjax.eval.evaluate import label_scale_findings
    from physnetjax.eval.predictions import Predictions

    data = load_dataset(DATA / "train_ethanol64.npz").subset(np.arange(16))
    predictions = Predictions(energy=data.E, forces=data.F, charges=None, dipole=None, total_charge=None)
    findings = label_scale_findings(dataclasses.replace(data, **{label: getattr(data, label) * scale}), predictions)
    assert len(findings) == 1
    assert hint in next(iter(findings.values()))


def test_labels_already_in_ev_read_with_a_unit_option_are_named_so_not_another_slip(tmp_path, capsys):
    """eV data read with --energy-unit kcal/mol are 0.0434× the predictions, which hartree read as eV (0.0367) lies
    near: the probe was told "0.0434 fits hartree read as eV"; the slope is the given unit's own factor."""
    from physnetjax.data import load_dataset
    from physnetjax.eval.evaluate import given_units, label_scale_findings
    from physnetjax.eval.predictions import Predictions

    data = load_dataset(DATA / "train_ethanol64.npz").subset(np.arange(16))
    predictions = Predictions(energy=data.E, forces=data.F, charges=None, dipole=None, total_charge=None)
    read = load_dataset(DATA / "train_ethanol64.npz", energy_unit="kcal/mol").subset(np.arange(16))
    findings = label_scale_findings(read, predictions, units=given_units("kcal/mol"))
    assert list(findings) == ["energies forces"]
    assert ("the labels look already in the model's units (0.0434 is the factor of --energy-unit kcal/mol): drop "
            "--energy-unit kcal/mol, the force unit follows") in findings["energies forces"]
    findings = label_scale_findings(read, predictions)  # units not known: the nearest slip, as before
    assert "0.0434 fits hartree read as eV" in findings["energies forces"]
    forces_only = load_dataset(DATA / "train_ethanol64.npz", force_unit="kcal/mol/A").subset(np.arange(16))
    findings = label_scale_findings(forces_only, predictions, units=given_units(force_unit="kcal/mol/A"))
    assert "(0.0434 is the factor of --force-unit kcal/mol/A): drop --force-unit kcal/mol/A" in findings["forces"]


def test_a_poor_model_that_underpredicts_the_spread_is_not_taken_for_a_unit_slip():
    """Labels in the right units, predictions a third of their spread at cosine ~0.8 (slope ~2.4): before, eval told
    the user to set --energy-unit/--force-unit (a legacy model on DNA-base data: 2.3x at cosine 0.80)."""
    from physnetjax.data import load_dataset
    from physnetjax.eval.evaluate import _scale_fit, label_scale_findings
    from physnetjax.eval.predictions import Predictions

    data = load_dataset(DATA / "train_ethanol64.npz")
    rng = np.random.default_rng(0)
    forces = data.F / 4 + rng.normal(scale=0.2 * data.F.std(), size=data.F.shape)
    energy = data.E / 4 + rng.normal(scale=0.2 * data.E.std(), size=data.E.shape)
    for labels, predicted in ((data.F, forces), (data.E - data.E.mean(), energy - energy.mean())):
        slope, cosine = _scale_fit(labels.ravel(), predicted.ravel())
        assert 0.7 < cosine < 0.9 and slope > 2, (slope, cosine)
    poor = Predictions(energy=energy, forces=forces, charges=None, dipole=None, total_charge=None)
    assert label_scale_findings(data, poor) == {}


def test_an_undertrained_model_that_shrinks_its_predictions_is_not_taken_for_a_unit_slip():
    """A 2-epoch ensemble's energies were 5.54x smaller than the labels at cosine 0.96 (EMA weights near their start
    predict near the mean): eval and calibrate said 'energies in other units than given: set --energy-unit', also for
    kcal/mol data read with --energy-unit kcal/mol. A slope beyond 0.5-2 that fits no unit slip now counts only where
    the model fits (cosine >= 0.98); one that fits a slip (23.06: kcal/mol) still counts at cosine 0.9-0.98."""
    from physnetjax.data import load_dataset
    from physnetjax.eval.evaluate import _scale_fit, label_scale_findings
    from physnetjax.eval.predictions import Predictions

    data = load_dataset(DATA / "train_ethanol64.npz")
    rng = np.random.default_rng(1)
    centred = data.E - data.E.mean()
    for scale, flagged in ((5.54, False), (1 / KCAL_PER_MOL, True)):
        energy = centred / scale + rng.normal(scale=0.28 * centred.std() / scale, size=centred.shape)
        slope, cosine = _scale_fit(centred, energy - energy.mean())
        assert 0.9 < cosine < 0.98 and abs(np.log(slope / scale)) < 0.1, (slope, cosine)
        predictions = Predictions(energy=energy, forces=data.F, charges=None, dipole=None, total_charge=None)
        findings = label_scale_findings(data, predictions)
        assert (list(findings) == ["energies"] and "fits kcal/mol read as eV" in findings["energies"]) if flagged \
            else findings == {}, findings


def test_a_slope_near_a_slip_inside_the_range_is_one_only_where_the_model_fits_the_labels():
    """Slopes 0.5-2 were accepted at any cosine, so forces in eV/bohr read as eV/Å (0.529) went unflagged: eval
    reported a force MAE of 0.88 eV/Å for a 0.039 eV/Å model. A model that fits (cosine ≥ 0.98) now names the slip;
    one that points the forces only roughly right (cosine 0.9-0.98) keeps the wide range."""
    from physnetjax.data import load_dataset
    from physnetjax.eval.evaluate import _scale_fit, label_scale_findings
    from physnetjax.eval.predictions import Predictions

    data = load_dataset(DATA / "train_ethanol64.npz")
    rng = np.random.default_rng(0)
    for noise, flagged in ((0.05, True), (0.4, False)):
        forces = data.F / 0.6 + rng.normal(scale=noise * data.F.std() / 0.6, size=data.F.shape)
        slope, cosine = _scale_fit(data.F.ravel(), forces.ravel())
        assert 0.5 < slope < 0.66 and (cosine > 0.98 if flagged else 0.9 < cosine < 0.98), (slope, cosine)
        predictions = Predictions(energy=data.E, forces=forces, charges=None, dipole=None, total_charge=None)
        findings = label_scale_findings(data, predictions)
        assert (list(findings) == ["forces"] and "fits eV/bohr read as eV/Å" in findings["forces"]) if flagged \
            else findings == {}, findings


def test_a_stoichiometry_the_training_did_not_determine_warns_of_an_energy_offset(setup, tmp_path):
    """A model whose E0 were fitted on ethanol alone, evaluated on ethanol and methanol: on main the methanol energy
    errors (which hold the undetermined split of E0 among C, H, O) were reported as the model's, unremarked."""
    from physnetjax.data import fit_reference_energies

    root, frames, _ = setup
    model, params = load_checkpoint(root / "model")
    ethanol = np.array([z for z, *_ in frames[:6]])
    fit = fit_reference_energies(ethanol, np.array([e for _, _, e, *_ in frames[:6]]), 8).to_dict()
    save_checkpoint(tmp_path / "ethanol_only", model, params, {"element_energies_fit": fit})
    data = ("--data", root / "ethanol.npz", root / "small.extxyz", "--no-plots")
    with pytest.warns(PhysNetInputWarning, match=r"--data: composition\(s\) CH4O \(3 frames, first 6\) in 3 of 10 "
                                                 r"frames are not combinations of the training compositions \(C2H6O\)"
                                                 r".*their energy errors below include it, and it is not the model's "
                                                 r"error; forces.* are unaffected") as record:
        assert run_cli("--checkpoint", tmp_path / "ethanol_only", *data) == 0
    assert len([w for w in record if "not combinations" in str(w.message)]) == 1
    old = {k: v for k, v in fit.items() if k != "basis"}  # a checkpoint from before the record: no warning
    save_checkpoint(tmp_path / "old", model, params, {"element_energies_fit": old})
    for checkpoint, files in (("ethanol_only", (root / "ethanol.npz",)), ("old", data[1:3])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert run_cli("--checkpoint", tmp_path / checkpoint, "--data", *files, "--no-plots") == 0
        assert not [w for w in caught if "not combinations" in str(w.message)]


def test_a_unit_slip_seen_by_both_label_checks_is_reported_once(tmp_path):
    """kcal/mol energies and forces read as eV, on the shipped ethanol_ir model: on main three warnings (the labels'
    force scale, then forces and energies against the predictions) for one slip; now one, naming --energy-unit."""
    from physnetjax.pretrained import example_model_path

    jax.config.update("jax_enable_x64", True)
    checkpoint = example_model_path().parent.parent / "ethanol_ir" / "model"
    with np.load(DATA / "train_ethanol64.npz") as npz:
        raw = {k: npz[k][:16] for k in npz.files}
    np.savez(tmp_path / "kcal.npz", **dict(raw, E=raw["E"] / KCAL_PER_MOL, F=raw["F"] / KCAL_PER_MOL))
    with pytest.warns(PhysNetInputWarning) as record:
        assert run_cli("--checkpoint", checkpoint, "--data", tmp_path / "kcal.npz", "--float64", "--no-plots") == 0
    messages = [str(w.message) for w in record if issubclass(w.category, PhysNetInputWarning)]
    assert len(messages) == 1, messages
    assert re.search(r"reference energies \(about each molecule's mean\) and forces are 2\d\.\d× and 2\d\.\d× the "
                     r"model's predictions .* set --energy-unit: 2\d\.\d fits kcal/mol read as eV, the force unit "
                     r"follows", messages[0])


def test_frames_the_model_was_trained_on_are_named_in_any_file_and_counted_in_the_summary(setup, tmp_path):
    """The checkpoint records its training frames (the trainer writes them): evaluating on them reported training
    errors as if they were held out. Four of the six ethanol frames, given in another file and format (extxyz, other
    frame order) beside the methanol frames, are counted as such; a checkpoint without the record gives null."""
    from physnetjax.data.frame_digests import TRAINING_FRAMES_KEY, FrameRecord, dataset_digests

    root, frames, _ = setup
    model, params = load_checkpoint(root / "model")
    trained = FrameRecord.of(dataset_digests(load_dataset(root / "ethanol.npz"), [0, 2, 3, 5]))
    save_checkpoint(tmp_path / "trained", model, params, {TRAINING_FRAMES_KEY: trained.to_metadata()})
    write_extxyz(tmp_path / "ethanol.extxyz", frames[5::-1])
    data = ["--data", tmp_path / "ethanol.extxyz", root / "small.extxyz", "--no-plots"]
    with pytest.warns(PhysNetInputWarning, match=r"^4 of the 10 frames of --data are frames .*trained was trained "
                                                 r"on \(same atoms and positions\): their errors are training errors"):
        assert run_cli("--checkpoint", tmp_path / "trained", *data, "--out", tmp_path / "out") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["training_frames"] == {"matched": 4, "compared": 10, "total": 10}
    sources = {"ensemble_sources": [{"metadata": {}}, {"metadata": {TRAINING_FRAMES_KEY: trained.to_metadata()}}]}
    save_checkpoint(tmp_path / "combined", model, params, sources)  # combine keeps each input's metadata
    with pytest.warns(PhysNetInputWarning, match=r"^4 of the 10 frames of --data are frames .*combined was trained"):
        assert run_cli("--checkpoint", tmp_path / "combined", *data) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli("--checkpoint", root / "model", *data, "--out", tmp_path / "unknown") == 0
    assert not [w for w in caught if "trained on (same atoms" in str(w.message)]
    assert json.loads((tmp_path / "unknown" / "summary.json").read_text())["training_frames"] is None


def test_validation_frames_of_the_model_are_named_apart_from_its_training_frames(setup, tmp_path):
    """The validation frames chose the checkpoint (its best epoch), so errors on them are optimistic too; eval said
    nothing of them. Two of the ethanol frames recorded as validation frames, one as a training frame: each
    warning counts its own, and the summary keeps both counts."""
    from physnetjax.data.frame_digests import TRAINING_FRAMES_KEY, VALIDATION_FRAMES_KEY, FrameRecord, dataset_digests

    root, _, _ = setup
    model, params = load_checkpoint(root / "model")
    ethanol = load_dataset(root / "ethanol.npz")
    records = {TRAINING_FRAMES_KEY: FrameRecord.of(dataset_digests(ethanol, [0])).to_metadata(),
               VALIDATION_FRAMES_KEY: FrameRecord.of(dataset_digests(ethanol, [1, 4])).to_metadata()}
    save_checkpoint(tmp_path / "validated", model, params, records)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli("--checkpoint", tmp_path / "validated", "--data", root / "ethanol.npz", "--no-plots",
                       "--out", tmp_path / "out") == 0
    messages = [str(w.message) for w in caught if "same atoms and positions" in str(w.message)]
    assert len(messages) == 2
    assert messages[0].startswith("1 of the 6 frames of --data are frames ")
    assert messages[1].startswith(f"2 of the 6 frames of --data are the validation frames of {tmp_path / 'validated'}"
                                  " (same atoms and positions), which chose its best epoch")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["training_frames"] == {"matched": 1, "compared": 6, "total": 6}
    assert summary["validation_frames"] == {"matched": 2, "compared": 6, "total": 6}


def test_an_output_directory_that_is_a_training_run_is_refused_before_any_work(setup, tmp_path, capsys):
    """--out RUN (a training run directory) replaced the run's parity plots of its validation split with eval's of
    other data, without a word."""
    root, _, _ = setup
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model.json").write_text("{}")
    (run / "parity_energy.png").write_bytes(b"the run's plot")
    assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", "--out", run) == 3
    assert capsys.readouterr().err == (
        f"python -m physnetjax.eval: error: --out {run} is a training run directory: eval's parity_energy.png and "
        "parity_forces.png would replace the run's (of its validation split); choose another --out, e.g. "
        f"{run / 'eval'}\n")
    assert (run / "parity_energy.png").read_bytes() == b"the run's plot"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "model.json", "parity_energy.png"]
    assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", "--out", run / "eval",
                   "--no-plots") == 0


def test_an_output_directory_holding_files_of_evals_names_but_no_eval_run_is_refused(setup, tmp_path, capsys):
    """A folder of the user's holding a summary.json: eval replaced it. A rerun into eval's own --out (its
    config.toml beside its results) still replaces them."""
    root, _, _ = setup
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.json").write_text('{"my": "results"}')
    assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", "--out", mine) == 3
    assert capsys.readouterr().err == (
        f"python -m physnetjax.eval: error: --out {mine} holds summary.json but no earlier run of python -m "
        "physnetjax.eval (no config.toml of it): this run would replace them; choose another --out, or move them "
        "out of it\n")
    assert sorted(p.name for p in mine.iterdir()) == ["summary.json"]
    for _ in range(2):
        assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", "--out", tmp_path / "ev",
                       "--no-plots") == 0


def test_elements_beyond_the_models_range_are_refused_before_any_warning(tmp_path, capsys):
    """Copper for the shipped ethanol model warned that Cu was never in the training data ("its energies and forces
    there are an untrained guess"), then refused to evaluate it: the warning promised numbers that never came."""
    copper = ase.Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])
    copper.calc = SinglePointCalculator(copper, energy=-1.0, forces=np.zeros((2, 3)))
    path = tmp_path / "cu.extxyz"
    ase.io.write(path, copper)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["--data", str(path)]) == 2
    assert [str(w.message) for w in caught if issubclass(w.category, PhysNetInputWarning)] == []
    assert capsys.readouterr().err == (f"python -m physnetjax.eval: error: --data {path}[0]: atomic number 29 exceeds "
                                       "the model's range Z = 1..8\n")


def test_errors_per_config_type_are_numpys_over_each_kinds_frames(setup, tmp_path, capsys):
    """Frames of two kinds (MACE's config_type, an .npz key here): energy-per-atom and force MAE/RMSE, and the force
    RMSE relative to the RMS reference force component, per kind, against NumPy over the same predictions; the
    table is printed, frames.csv has the column, and --write-predictions keeps the kind."""
    root, _, _ = setup
    with np.load(root / "ethanol.npz") as raw:
        arrays = dict(raw)
    kinds = np.array(["md300"] * 2 + ["md800"] * (len(arrays["R"]) - 2))
    np.savez(tmp_path / "kinds.npz", **arrays, config_type=kinds)
    out = tmp_path / "out"
    assert run_cli("--checkpoint", root / "model", "--data", tmp_path / "kinds.npz", "--float64", "--out", out,
                   "--write-predictions", out / "pred.extxyz") == 0
    printed = capsys.readouterr().out
    assert "errors per config_type" in printed and "md300" in printed and "md800" in printed
    summary = json.loads((out / "summary.json").read_text())
    model, params = load_checkpoint(root / "model")
    data = load_dataset(tmp_path / "kinds.npz")
    predictions = predict_dataset(model, params, data, batch_size=4, dtype="float64")
    assert list(summary["config_types"]) == ["md300", "md800"]
    for kind, entry in summary["config_types"].items():
        frames = np.flatnonzero(kinds == kind)
        labelled_e = frames[data.has_E[frames]]
        de = (predictions.energy[labelled_e] - data.E[labelled_e]) / data.N[labelled_e]
        real = [k for k in frames if data.has_F[k]]
        df = np.concatenate([predictions.forces[k, : data.N[k]] - data.F[k, : data.N[k]] for k in real])
        reference = np.concatenate([data.F[k, : data.N[k]] for k in real])
        expected = {"frames": len(frames), "energy_per_atom_mae": np.mean(np.abs(de)),
                    "energy_per_atom_rmse": np.sqrt(np.mean(de**2)), "forces_mae": np.mean(np.abs(df)),
                    "forces_rmse": np.sqrt(np.mean(df**2)),
                    "forces_relative_rmse": 100 * np.sqrt(np.mean(df**2)) / np.sqrt(np.mean(reference**2))}
        assert entry["frames"] == expected.pop("frames")
        for key, value in expected.items():
            np.testing.assert_allclose(entry[key], value, rtol=1e-12, err_msg=(kind, key))
    with open(out / "frames.csv", newline="") as handle:
        assert [row["config_type"] for row in csv.DictReader(handle)] == kinds.tolist()
    assert [atoms.info["config_type"] for atoms in ase.io.read(out / "pred.extxyz", ":")] == kinds.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhysNetInputWarning)  # the REF_* labels beside the predictions are not read
        assert load_dataset(out / "pred.extxyz").config_type.tolist() == kinds.tolist()


def test_one_kind_prints_no_config_type_table_and_reports_it_as_default(setup, tmp_path, capsys):
    root, _, _ = setup
    out = tmp_path / "out"
    assert run_cli("--checkpoint", root / "model", "--data", root / "ethanol.npz", "--out", out) == 0
    assert "errors per config_type" not in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["config_types"]) == ["Default"]
    assert summary["config_types"]["Default"]["forces_rmse"] == pytest.approx(summary["metrics"]["forces_rmse"],
                                                                               rel=1e-12)


def test_a_kind_of_isolated_atoms_has_no_relative_force_error(tmp_path):
    """MACE's IsolatedAtom frames (one atom, F = 0): the force RMSE relative to the reference forces is undefined,
    null in summary.json (was NaN, no JSON), and the other kind's is a number."""
    frames = []
    with np.load(DATA / "train_ethanol64.npz") as raw:
        for k in range(3):
            atoms = ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k])
            atoms.calc = SinglePointCalculator(atoms, energy=float(raw["E"][k]), forces=raw["F"][k])
            atoms.info["config_type"] = "md"
            frames.append(atoms)
    for z in (1, 8):
        atoms = ase.Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]])
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0 * z, forces=np.zeros((1, 3)))
        atoms.info["config_type"] = "IsolatedAtom"
        frames.append(atoms)
    ase.io.write(tmp_path / "iso.extxyz", frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhysNetInputWarning)
        assert run_cli("--data", tmp_path / "iso.extxyz", "--out", tmp_path / "out", "--no-plots") == 0
    text = (tmp_path / "out" / "summary.json").read_text()
    assert "NaN" not in text
    kinds = json.loads(text)["config_types"]
    assert kinds["IsolatedAtom"]["frames"] == 2 and kinds["IsolatedAtom"]["forces_relative_rmse"] is None
    assert kinds["md"]["forces_relative_rmse"] > 0


def test_the_smallest_batch_and_no_worst_frames_and_the_note_on_labels_a_model_without_charges_cannot_compare(
        tmp_path, capsys):
    """--batch-size 1 and --worst 0 are allowed (0 and -1 are not); the shipped model has no charges: with dipole
    labels in the data eval says that dipoles and charges are not compared, without them it says nothing."""
    with np.load(DATA / "train_ethanol64.npz") as raw:
        frames = {key: raw[key][:3] for key in ("R", "Z", "E", "F", "D")}
    np.savez(tmp_path / "with_d.npz", **frames)
    np.savez(tmp_path / "without_d.npz", **{k: v for k, v in frames.items() if k != "D"})
    note = "the model predicts no charges: dipoles and total charges are not compared"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhysNetInputWarning)
        assert run_cli("--data", tmp_path / "with_d.npz", "--batch-size", 1, "--worst", 0) == 0
        printed = capsys.readouterr().out
        assert note in printed and "worst frames" not in printed
        assert run_cli("--data", tmp_path / "without_d.npz") == 0
        assert note not in capsys.readouterr().out
    for option, value, message in (("--batch-size", 0, "--batch-size must be >= 1, received 0"),
                                   ("--worst", -1, "--worst must be >= 0, received -1")):
        assert run_cli("--data", tmp_path / "with_d.npz", option, value) == 2
        assert message in capsys.readouterr().err
