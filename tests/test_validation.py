"""The input-validation layer (physnetjax.validation) at every entry point: predict, calculator, check, MD, data.

Each test reproduces a finding of issue 17 (a NaN, a silent extrapolation or a C++
crash on main) and asserts the clear error or warning that replaces it.
"""

import pathlib
import re

import ase
import ase.io
import jax
import numpy as np
import pytest
from ase.build import molecule
from conftest import cast_params, perturbed_params, warnings_as_errors

from physnetjax import PhysNet, init_params, predict, predict_periodic, save_checkpoint, validation
from physnetjax.calculator import PhysNetCalculator
from physnetjax.check import CheckSettings, check_model
from physnetjax.data import DataError, load_npz
from physnetjax.errors import CloseContactWarning
from physnetjax.md.__main__ import main as md_main
from physnetjax.md.driver import simulate
from physnetjax.predict import require_finite
from physnetjax.pretrained import example_model_path
from physnetjax.spectra.__main__ import main as spectra_main
from physnetjax.train import TrainConfig
from physnetjax.training_record import TrainingRecord
from physnetjax.validation import (
    MAX_ATOMIC_NUMBER,
    MAX_PRESSURE_BAR,
    MAX_TEMPERATURE_K,
    MIN_DISTANCE_WARNING,
    SEEDS,
    OutputPathError,
    PhysNetInputError,
    PhysNetInputWarning,
    _listed,
    atoms_total_charge,
    bond_length_ratios,
    charge_states,
    check_atomic_numbers,
    check_batch_charges,
    check_batch_overlaps,
    check_batch_structures,
    check_cell,
    check_charge_model,
    check_count,
    check_dataset_charge_states,
    check_dataset_charges,
    check_dataset_elements,
    check_directory_creatable,
    check_distances,
    check_distinct_files,
    check_masses,
    check_output_directory,
    check_output_path,
    check_positions,
    check_pressure,
    check_range,
    check_seed,
    check_temperature,
    covalent_distance_ratios,
    distinct_charges,
    element,
    formula,
    is_real_number,
    layer_spacings,
    neighbor_box,
    overlapping_frame,
    position_unit_slip,
    stretched_bond_ratio,
    untrained_charges,
    validate_structure,
)

WATER_Z = np.array([8, 1, 1])
WATER_R = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])


@pytest.fixture(scope="module")
def charged():
    """charges + ZBL + force-shifted Coulomb (finite reach, so periodic cells work too); float64."""
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=3.0,
                    max_atomic_number=9, charges=True, zbl=True, n_res=1, coulomb_lr_cutoff=4.0)
    return model, cast_params(perturbed_params(init_params(model, 0), 0.2, seed=3), np.float64)


def test_coincident_atoms_raise_instead_of_nan(charged):
    """The error and nothing before it (the length-unit guess took log(0): numpy's "divide by zero" warning)."""
    positions = WATER_R.copy()
    positions[2] = positions[1]
    with warnings_as_errors(), pytest.raises(PhysNetInputError, match=r"atoms 1-2 at 0 Å"):
        predict(*charged, WATER_Z, positions)


def test_close_atoms_warn_and_still_predict(charged):
    positions = WATER_R.copy()
    positions[2] = positions[1] + [0.0, 0.3, 0.0]
    with pytest.warns(PhysNetInputWarning, match=r"atoms 1-2 at 0\.3 Å"):
        out = predict(*charged, WATER_Z, positions)
    assert np.isfinite(out["energy"])
    with pytest.raises(PhysNetInputError, match=f"below {MIN_DISTANCE_WARNING}"):
        validate_structure(WATER_Z, positions, 9, strict=True)


@pytest.mark.parametrize("charge", [np.nan, np.inf, "1", 11.0, -11.0, -1e6])
def test_bad_total_charge_is_refused(charged, charge):
    """Water has ΣZ = 10: beyond ±10 e is no ion (-1e6 e gave E = 3e12 eV without a word)."""
    with pytest.raises(PhysNetInputError, match="total_charge"):
        predict(*charged, WATER_Z, WATER_R, total_charge=charge)
    assert np.isfinite(predict(*charged, WATER_Z, WATER_R, total_charge=-10.0)["energy"])


def test_element_above_range_is_named(charged):
    with pytest.raises(PhysNetInputError, match=r"Na \(Z=11\) at atom\(s\) 0 .* Z = 1\.\.9 \(F \(Z=9\)\)"):
        predict(*charged, np.array([11, 1, 1]), WATER_R)


def test_untrained_element_warns_only_when_the_record_exists(charged):
    with pytest.warns(PhysNetInputWarning, match=r"O \(Z=8\) \(atom\(s\) 0\) never occurred .*trained on H, C"):
        predict(*charged, WATER_Z, WATER_R, training_record=TrainingRecord(elements=(1, 6)))
    with warnings_as_errors():
        predict(*charged, WATER_Z, WATER_R)
        predict(*charged, WATER_Z, WATER_R, training_record=TrainingRecord(elements=(1, 8)))


def test_a_total_charge_the_training_never_had_warns_only_when_the_record_exists(charged):
    """A charge model trained on neutral frames evaluated a cation without a word: the trainer now records the
    total charges of its training frames, and a charge state outside them warns (within 1e-6 e)."""
    cation = (r"total charge \+1 e never occurred in this model's training data \(trained on total charge 0 e\); "
              r"its energy, forces and charges for this charge state are an extrapolation")
    with pytest.warns(PhysNetInputWarning, match=cation):
        predict(*charged, WATER_Z, WATER_R, total_charge=1.0, training_record=TrainingRecord(charges=(0.0,)))
    with pytest.warns(PhysNetInputWarning, match=r"total charge -1 e never occurred .*\(trained on total charge 0, "
                                                 r"\+1 e\)"):
        predict_periodic(*charged, WATER_Z, WATER_R, np.eye(3) * 9.0, total_charge=-1.0,
                         training_record=TrainingRecord(charges=(0.0, 1.0)))
    calculator = PhysNetCalculator(*charged, dtype="float64", training_record=TrainingRecord(charges=(0.0,)))
    atoms = ase.Atoms(numbers=WATER_Z, positions=WATER_R, calculator=calculator, info={"charge": 1})
    with pytest.warns(PhysNetInputWarning, match=cation):
        atoms.get_potential_energy()
    with warnings_as_errors():
        predict(*charged, WATER_Z, WATER_R, total_charge=1.0)  # no record: a charge model may be asked anything
        predict(*charged, WATER_Z, WATER_R, total_charge=1.0, training_record=TrainingRecord(charges=(0.0, 1.0)))
        predict(*charged, WATER_Z, WATER_R, total_charge=1e-9, training_record=TrainingRecord(charges=(0.0,)))
        atoms.info["charge"] = 0
        atoms.get_potential_energy()


def test_a_composition_trained_only_at_other_charges_warns():
    """A model trained on formate (HCOO-, -1 e) and formic acid (0 e) asked about the formate radical (HCOO, 0 e):
    every element and every charge had occurred, so nothing warned, and its radical-anion gap was -2.15 eV where
    xTB gives +8.29. The record of each composition's charges names it, for one structure and for frames."""
    formate, formic_acid = np.array([6, 8, 8, 1, 0]), np.array([6, 8, 8, 1, 1])
    states = charge_states(np.stack([formate, formic_acid, formate]), [4, 5, 4], [-1.0, 0.0, -1.0])
    assert states == {"CHO2": [-1.0], "CH2O2": [0.0]}
    record = TrainingRecord.from_metadata({"trained_charges": [-1.0, 0.0], "trained_charge_states": states})
    assert record.charge_states == (("CH2O2", (0.0,)), ("CHO2", (-1.0,)))
    hash(record)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=3.0,
                    max_atomic_number=9, charges=True)
    with pytest.warns(PhysNetInputWarning, match=r"radical: CHO2 occurred in this model's training data only at "
                                                 r"total charge -1 e, not at 0 e \(1 of 1 frame\(s\), first frame 0\)"):
        record.check_structure(model, formate[:4], 0.0, where="radical", consequence=None)
    with pytest.warns(PhysNetInputWarning, match=r"CHO2 occurred .* only at total charge -1 e, not at 0, \+1 e "
                                                 r"\(2 of 3 frame\(s\), first frame 1\)"):
        check_dataset_charge_states(np.stack([formate] * 3), [4, 4, 4], [-1.0, 0.0, 1.0], dict(record.charge_states))
    padded = np.array([[6, 8, 8, 1, 1], [6, 8, 8, 1, 0], [6, 8, 8, 1, 1]])  # the last atom of frames 0 and 1: padding
    with warnings_as_errors():
        check_dataset_charge_states(padded, [4, 4, 5], [-1.0, -1.0, 0.0], {"CHO2": [-1.0], "CH2O2": [0.0]})
        check_dataset_charge_states(padded, [4, 4, 5], [0.0, -1.0, 1e-6], {"CHO2": [-1.0, 0.0], "CH2O2": [0.0]})
    with warnings_as_errors():
        record.check_structure(model, formate[:4], -1.0, consequence=None)
        record.check_structure(model, np.array([8, 1, 1]), 0.0, consequence=None)  # another composition: not judged
        TrainingRecord(charges=(-1.0, 0.0)).check_structure(model, formate[:4], 0.0, consequence=None)


def test_a_model_without_charges_names_its_trained_charge_state():
    """Without charges the model does not read Q: with the record, a Q other than the trained one warns (also a
    neutral molecule for a model trained on cations, which the Q ≠ 0 rule missed)."""
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=3.0, max_atomic_number=9)
    with pytest.warns(PhysNetInputWarning, match=r"total charge 0 e never occurred .*\(trained on total charge \+1 e\)"
                                                 r"; a model without charges \(charges=False\) does not read Q"):
        check_charge_model(model, 0.0, [1.0])
    with pytest.warns(PhysNetInputWarning, match=r"total charge 2 e given to a model without charges"):
        check_charge_model(model, 2.0)
    with warnings_as_errors():
        check_charge_model(model, 1.0, [1.0])
        check_charge_model(model, 0.0)


def test_frames_of_an_untrained_total_charge_are_counted():
    with pytest.warns(PhysNetInputWarning, match=r"--data: total charge\(s\) -1, \+2 e \(in 3 of 5 frames, first "
                                                 r"frame 1\) never occurred .*\(trained on total charge 0, \+1 e\)"):
        check_dataset_charges([0.0, -1.0, 2.0, 1.0, 2.0], [0.0, 1.0], where="--data")
    with warnings_as_errors():
        check_dataset_charges([0.0, -1.0], None)
        check_dataset_charges([0.0, 1.0 + 1e-9, 1e-6], [0.0, 1.0])  # 1e-6 e from a trained charge: the tolerance


def test_check_reports_an_untrained_total_charge(charged):
    report = check_model(*charged, [(WATER_Z, WATER_R, 1.0), (WATER_Z, WATER_R, 0.0)], groups=(),
                         training_record=TrainingRecord(charges=(0.0,)))
    rows = {r.structure: r for r in report.checks if r.id == "inputs.trained_charges"}
    assert rows[0].status == "warn" and rows[0].value == 1.0 and "never occurred in training" in rows[0].message
    assert rows[1].status == "pass" and rows[1].value == 0.0


@pytest.mark.parametrize("bad", [
    dict(positions=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], bool), match="dtype bool"),
    dict(positions=WATER_R + 0j, match="dtype complex"),
    dict(positions=WATER_R[:2], match=r"shape \(n, 3\) = \(3, 3\)"),
    dict(positions=WATER_R * [1, 1, np.nan], match=r"NaN or Inf at atom\(s\) 0, 1, 2"),
    dict(positions=WATER_R + [2e4, 0, 0], match="beyond"),
    dict(numbers=np.array([8.5, 1, 1]), match="must be integers"),
    dict(numbers=np.array([0, 1, 1]), match=r"element\(s\) Z=0 at atom\(s\) 0"),
])
def test_shapes_dtypes_and_values(charged, bad):
    with pytest.raises(PhysNetInputError, match=bad["match"]):
        predict(*charged, bad.get("numbers", WATER_Z), bad.get("positions", WATER_R))


@pytest.mark.parametrize("numbers, positions, match", [
    (np.zeros(0, int), np.zeros((0, 3)), "a structure needs at least one atom, received none"),
    (np.array([True, False, True]), WATER_R, "atomic_numbers must be integers, received dtype bool"),
    # NumPy's "setting an array element with a sequence", and a float Z beyond int32 named "-1"
    (WATER_Z, [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [0.0, 0.96]],
     r"^positions must be an array of \(n, 3\) numbers in Å; received nested sequences of different lengths$"),
    ([8, [1], 1], WATER_R, r"^atomic_numbers must be an array of \(n,\) integers; received nested sequences"),
    (np.array([8.0, 1.0, 2.0**32 + 1]), WATER_R,
     r"element\(s\) Z=4294967297 at atom\(s\) 2 are outside this model's range Z = 1\.\.9"),
])
def test_empty_structures_and_boolean_atomic_numbers_are_refused(numbers, positions, match):
    with pytest.raises(PhysNetInputError, match=match):
        validate_structure(numbers, positions, max_atomic_number=9)


@pytest.mark.parametrize("cell, pbc, match", [
    (np.eye(3) * 10.0, [True, False], r"pbc must be a bool or three bools, received array\(\[ True, False\]\)"),
    (np.eye(3) * 10.0, np.array([0.5, 0.0, 0.0]), "pbc must be a bool or three bools"),
    (None, True, r"pbc=\[True, True, True\] needs a cell, received none"),
    (np.eye(3)[:2] * 10.0, True, r"cell must be a real \(3, 3\) array .* received shape \(2, 3\), dtype float64"),
    (np.eye(3, dtype=complex) * 10.0, True, "received shape \\(3, 3\\), dtype complex128"),
    (np.diag([10.0, np.nan, 10.0]), [True, False, False], "cell contains NaN or Inf"),
    (np.diag([10.0, 10.0, 3e4]), True, "cell vectors beyond ±"),
])
def test_bad_cells_and_pbc_are_named(cell, pbc, match):
    """Every check of check_cell, through validate_structure: one PhysNetInputError naming what is wrong."""
    with pytest.raises(PhysNetInputError, match=match):
        validate_structure(WATER_Z, WATER_R, max_atomic_number=9, cell=cell, pbc=pbc)


def test_output_paths_that_are_directories_or_exist_are_refused(tmp_path):
    (tmp_path / "run.xyz").write_text("kept")
    with pytest.raises(OutputPathError, match=f"--out {tmp_path} is a directory; give a file name"):
        check_output_path(tmp_path, what="--out")
    with pytest.raises(OutputPathError, match="run.xyz already exists; choose another path or remove it"):
        check_output_path(tmp_path / "run.xyz", what="--out")
    assert check_output_path(tmp_path / "run.xyz", overwrite=True) == tmp_path / "run.xyz"
    assert (tmp_path / "run.xyz").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.xyz"]  # the writability probe leaves nothing


def test_an_empty_output_path_is_refused_not_taken_for_the_current_directory(tmp_path, monkeypatch, capsys):
    """``--out ''`` wrote harmonic.json into the current directory."""
    for check in (check_output_path, check_output_directory, check_directory_creatable):
        with pytest.raises(OutputPathError, match=r"^--out is empty: give a path \(use \. for the current directory\)$"):
            check("", what="--out")
    monkeypatch.chdir(tmp_path)
    molecule("CH3CH2OH").write("ethanol.xyz")
    assert spectra_main(["harmonic", "--checkpoint", str(example_model_path()), "--geometry", "ethanol.xyz",
                         "--out", "", "--no-plot"]) == 3
    assert capsys.readouterr().err.endswith("error: --out is empty: give a path (use . for the current directory)\n")
    assert [p.name for p in tmp_path.iterdir()] == ["ethanol.xyz"]


@pytest.mark.skipif(not pathlib.Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_file_in_a_directory_that_takes_no_files_is_refused_before_any_work():
    """os.access answers 'writable' to root in /proc: eval --write-predictions /proc/x.extxyz evaluated everything
    and then failed with 'does not exist'. A probe file now decides (for other users os.access already refuses)."""
    with pytest.raises(OutputPathError, match=r"^--write-predictions /proc/x\.extxyz: directory /proc (is not "
                                              r"writable|does not take new files \(.+\))$"):
        check_output_path("/proc/x.extxyz", overwrite=True, what="--write-predictions")


def test_layer_spacings_match_the_geometry():
    # orthorhombic: the spacings are the edge lengths; a 2D hexagonal lattice of side a: a·√3/2
    assert np.allclose(layer_spacings(np.diag([2.0, 3.0, 4.0])), [2.0, 3.0, 4.0], rtol=0, atol=1e-12)
    hexagonal = np.array([[1.0, 0.0, 0.0], [0.5, np.sqrt(3) / 2, 0.0]])
    assert np.allclose(layer_spacings(hexagonal), [np.sqrt(3) / 2] * 2, rtol=0, atol=1e-12)
    assert layer_spacings(np.array([[1.0, 0, 0], [2.0, 0, 0]])).max() == 0.0


@pytest.mark.parametrize("cell,pbc", [
    (np.zeros((3, 3)), [True, False, False]),
    (np.zeros((3, 3)), [True, True, False]),
    (np.zeros((3, 3)), True),
    (np.diag([5.0, 1e-9, 0.0]), [True, True, False]),
    (np.array([[5.0, 0, 0], [10.0, 0, 0], [0, 0, 5.0]]), True),
])
def test_calculator_refuses_degenerate_cells(charged, cell, pbc):
    """On main these crashed vesin in C++ (SIGFPE, vector::_M_default_append) or hung."""
    atoms = ase.Atoms(numbers=WATER_Z, positions=WATER_R, cell=cell, pbc=pbc)
    atoms.calc = PhysNetCalculator(*charged, dtype="float64")
    with pytest.raises(PhysNetInputError, match="zero, flat or degenerate"):
        atoms.get_potential_energy()


def test_partial_pbc_ignores_the_non_periodic_cell_rows(charged):
    """A slab (pbc T,T,F) has the same energy whether ASE leaves the third cell row zero or sets a vacuum."""
    calc = PhysNetCalculator(*charged, dtype="float64")
    energies = []
    for third in ([0.0, 0.0, 0.0], [0.0, 0.0, 30.0], [1.0, 2.0, 17.0]):
        atoms = ase.Atoms(numbers=WATER_Z, positions=WATER_R, cell=[[3.5, 0, 0], [0, 3.5, 0], third],
                          pbc=[True, True, False])
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    assert np.ptp(energies) < 1e-10
    assert abs(energies[0] - predict(*charged, WATER_Z, WATER_R)["energy"]) > 1e-6  # the images do interact


def test_periodic_image_overlap_is_named(charged):
    with pytest.raises(PhysNetInputError, match=r"spacing 0\.05 Å along cell vector 0"):
        predict_periodic(*charged, WATER_Z[:1], WATER_R[:1], np.diag([0.05, 6.0, 6.0]))
    with pytest.raises(PhysNetInputError, match=r"spacing 0 Å along cell vector 2 \(0 Å long\)"):  # main: vector 0
        predict_periodic(*charged, WATER_Z[:1], WATER_R[:1], np.diag([30.0, 30.0, 0.0]))
    with pytest.raises(PhysNetInputError, match=r"spacing 0 Å \(the periodic cell vectors are linearly dependent\)"):
        predict_periodic(*charged, WATER_Z[:1], WATER_R[:1], np.array([[5.0, 0, 0], [10.0, 0, 0], [0, 0, 5.0]]))
    skewed = np.diag([6.0, 6.0, 6.0])
    skewed[0] += 1000.0 * skewed[1]  # the same lattice, a basis whose planes along a are 0.006 Å apart
    with pytest.raises(PhysNetInputError, match=r"spacing 0\.006 Å \(a very skewed basis of a lattice whose planes "
                                                r"are 6 Å apart in its reduced basis: give the reduced cell"):
        predict_periodic(*charged, WATER_Z[:1], WATER_R[:1], skewed)
    with pytest.raises(PhysNetInputError, match=r"\(the periodic cell vectors are nearly linearly dependent\)"):
        predict_periodic(*charged, WATER_Z[:1], WATER_R[:1], np.array([[5.0, 0, 0], [5.0, 0.01, 0], [0, 0, 5.0]]))
    with pytest.raises(PhysNetInputError, match=r"atoms 0-0 \(periodic image\) at 0\.3 Å"):
        validate_structure(WATER_Z[:1], WATER_R[:1], 9, cell=np.diag([0.3, 6.0, 6.0]), pbc=True, strict=True)


def test_check_names_an_element_above_the_models_range(charged):
    with pytest.raises(PhysNetInputError, match=r"Na \(Z=11\)"):
        check_model(*charged, [(np.array([11, 1, 1]), WATER_R)], groups=["invariance"])


def test_check_reports_untrained_elements(charged):
    report = check_model(*charged, [(WATER_Z, WATER_R)], groups=[], settings=CheckSettings.quick(),
                         training_record=TrainingRecord(elements=(1, 6)))
    row = report.by_id("inputs.trained_elements")
    assert row.status == "warn" and row.value == 1 and "O (Z=8)" in row.message


def test_md_refuses_overlaps_and_names_out_of_range_elements(charged):
    positions = WATER_R.copy()
    positions[2] = positions[1] + [0.0, 0.2, 0.0]
    with pytest.raises(PhysNetInputError, match=r"MD start geometry: atoms overlap: atoms 1-2 at 0\.2 Å"):
        simulate(*charged, ase.Atoms(numbers=WATER_Z, positions=positions), steps=2, save_every=1)
    with pytest.raises(PhysNetInputError, match=r"Na \(Z=11\)"):
        simulate(*charged, ase.Atoms(numbers=[11, 1, 1], positions=WATER_R), steps=2, save_every=1)


def test_dataset_frame_with_coincident_atoms_is_refused(tmp_path):
    shift = np.arange(4.0)[:, None, None] * [0.3, 0.0, 0.0]   # translated copies: not duplicated frames
    R = np.tile(WATER_R, (4, 1, 1)) + shift
    R[2, 2] = R[2, 1]
    R[3, 2] = R[3, 1] + [0.0, 0.0, 0.4]
    path = tmp_path / "d.npz"
    np.savez(path, Z=np.tile(WATER_Z, (4, 1)), R=R, E=np.zeros(4))
    with pytest.raises(DataError, match=r"closer than 0\.1 Å in frame\(s\) 2; closest: atoms 1-2 at 0 Å"):
        load_npz(path)
    R[2] = WATER_R + shift[2]
    np.savez(path, Z=np.tile(WATER_Z, (4, 1)), R=R, E=np.arange(4.0))
    with pytest.warns(PhysNetInputWarning, match=r"closer than 0\.5 Å in frame\(s\) 3"):
        load_npz(path)


def test_calculator_from_checkpoint_warns_about_untrained_elements(charged, tmp_path):
    save_checkpoint(tmp_path / "ckpt", charged[0], charged[1], {"trained_elements": [1, 6]})
    atoms = ase.Atoms(numbers=WATER_Z, positions=WATER_R)
    atoms.calc = PhysNetCalculator.from_checkpoint(str(tmp_path / "ckpt"), dtype="float64")
    with pytest.warns(PhysNetInputWarning, match=r"O \(Z=8\)"):
        atoms.get_potential_energy()


def test_nan_parameters_raise_instead_of_returning_nan(charged):
    model, params = charged
    broken = jax.tree_util.tree_map(lambda p: p * np.nan, params)
    with pytest.raises(FloatingPointError, match="check the parameters for NaN"):
        predict(model, broken, WATER_Z, WATER_R)


def test_non_finite_forces_with_a_finite_energy_raise_naming_the_atoms():
    """A NaN gradient beside a finite energy (e.g. the derivative of √r at r = 0) is raised too, with the atoms;
    padded atoms beyond the structure's own do not count."""
    forces = np.zeros((5, 3))
    forces[1, 2], forces[3, 0], forces[4, 1] = np.nan, np.inf, np.nan  # atom 4 is padding
    with pytest.raises(FloatingPointError, match=r"^the model returned energy -3.5 and non-finite forces on atoms "
                                                 r"\[1, 3\] for an input that passed validation"):
        require_finite({"energy": np.array([-3.5, 0.0]), "forces": forces}, 4)
    require_finite({"energy": np.array([-3.5, 0.0]), "forces": forces[[0, 2, 0, 2, 4]]}, 4)


def test_total_charge_of_atoms_and_initial_charges():
    """total_charge, else info['charge'], else the sum of non-zero initial charges (tblite's rule), else 0;
    a given charge that differs from info['charge'] or the initial charges' sum is used, with a warning naming
    both."""
    atoms = ase.Atoms("NH4", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0]])
    with warnings_as_errors():
        assert atoms_total_charge(atoms) == 0.0
        atoms.set_initial_charges([0.0] * 5)  # an all-zero column is no information
        atoms.info["charge"] = 1.0
        assert atoms_total_charge(atoms) == 1.0
        assert atoms_total_charge(atoms, 1.0) == 1.0
    with pytest.warns(PhysNetInputWarning, match=r"info\['charge'\] is 1 e but total_charge is -1 e; total_charge is "
                                                 r"used"):  # main: info['charge'] dropped without a word
        assert atoms_total_charge(atoms, -1.0) == -1.0
    with warnings_as_errors():
        atoms.set_initial_charges([0.2] * 5)  # sums to the charge used: silent
        assert atoms_total_charge(atoms) == pytest.approx(1.0)
        del atoms.info["charge"]
        assert atoms_total_charge(atoms) == pytest.approx(1.0)  # the initial charges' sum
    atoms.info["charge"] = 0.0
    with pytest.warns(PhysNetInputWarning, match=r"initial charges sum to 1 e but info\['charge'\] is 0 e; "
                                                 r"info\['charge'\] is used"):
        assert atoms_total_charge(atoms) == 0.0
    with pytest.warns(PhysNetInputWarning, match="but total_charge is 2 e; total_charge is used"):
        assert atoms_total_charge(atoms, 2.0) == 2.0


def test_seeds_beyond_32_bits_are_refused_everywhere_they_are_given(tmp_path, capsys):
    """Without x64 jax.random.PRNGKey keeps a seed's low 32 bits: seed 2**32 drew seed 0's numbers (an 'independent'
    MD replica or ensemble member identical to another) and 1e20 ended in a raw OverflowError."""
    with jax.enable_x64(False):
        assert (jax.random.PRNGKey(SEEDS) == jax.random.PRNGKey(0)).all()  # the collision the check prevents
    assert check_seed(SEEDS - 1) == SEEDS - 1 and check_seed(0) == 0
    assert check_seed(SEEDS - 2, count=2) == SEEDS - 2
    with pytest.raises(PhysNetInputError, match=r"^member seed must be an integer from 0 to 4294967294 \(the run also "
                                                r"uses the 1 seed\(s\) after it\)"):
        check_seed(SEEDS - 1, "member seed", count=2)
    for bad in (SEEDS, -1, 10**20, 1.5, True):
        with pytest.raises(PhysNetInputError, match=r"seed must be an integer from 0 to 4294967295: JAX keeps 32 bits"):
            check_seed(bad)
    with pytest.raises(ValueError, match=r"--seed must be an integer from 0 to 4294967292 \(the run also uses the 3 "
                                         r"seed\(s\) after it\)"):
        TrainConfig(seed=SEEDS - 3, ensemble=4, names={"seed": "--seed"})
    geometry = tmp_path / "h2.xyz"
    ase.io.write(geometry, ase.Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]))
    assert md_main(["--geometry", str(geometry), "--seed", "99999999999999999999"]) == 2
    assert "--seed must be an integer from 0 to 4294967295" in capsys.readouterr().err


def test_bond_length_ratios_in_chunks_equal_the_whole_matrix(monkeypatch):
    """The row minima are taken a few rows at a time (a (rows, n, 3) array of 1024 × 50 000 atoms was 1.2 GB)."""
    rng = np.random.default_rng(0)
    z, r = rng.integers(1, 9, 300), rng.uniform(0.0, 20.0, (300, 3))
    whole = validation.covalent_distance_ratios(z, r).min(axis=1)
    monkeypatch.setattr(validation, "RATIO_CHUNK_PAIRS", 7 * 300)
    np.testing.assert_array_equal(validation.bond_length_ratios(z, r), whole)
    np.testing.assert_array_equal(validation.bond_length_ratios(z, r, rows=np.arange(5, 50)), whole[5:50])


def test_the_range_check_at_its_edges():
    """check_range, the one check of a physical setting: the bounds themselves (>= lowest, > lowest when strict, at
    most highest), NaN and ±inf (inf only with finite=False), keywords, and what is not one real number."""
    assert check_range("x", 5, "K", 0.0, highest=5.0) == 5.0 and isinstance(check_range("x", 5, "K"), float)
    assert check_range("x", 0.0, "K", lowest=0.0) == 0.0
    assert check_range("cutoff", np.inf, "Å", 0.0, strict=True, finite=False) == np.inf
    for value, kwargs, message in [
        (0.0, dict(lowest=0.0, strict=True), "x must be finite and > 0 K, received 0.0"),
        (-1e-9, dict(lowest=0.0), "x must be finite and >= 0 K, received -1e-09"),
        (5.5, dict(highest=5.0, why="a reason"), "x must be at most 5 K (a reason), received 5.5"),
        (np.inf, {}, "x must be a finite number of K, received inf"),
        (np.inf, dict(lowest=0.0), "x must be finite and >= 0 K, received inf"),
        (np.nan, dict(finite=False), "x must be a number of K, received nan"),
        (-np.inf, dict(lowest=0.0, finite=False), "x must be >= 0 K, received -inf"),
        ("3", {}, "x must be a number of K, received '3' (str)"),
        (True, {}, "x must be a number of K, received True (bool)"),
    ]:
        with pytest.raises(PhysNetInputError, match=f"^{re.escape(message)}$"):
            check_range("x", value, "K", **kwargs)


def test_numbers_counts_temperatures_and_pressures_at_their_edges():
    """is_real_number: one int or float (NumPy scalars and 0-d arrays included), not a bool, text, None, a list, a
    complex or a ragged sequence. check_count: integers >= least, not floats or bools. Temperatures from 0 K up to
    1e6 K, pressures within ±1e8 bar, these included. Masses: any finite value > 0 amu; each bad one named."""
    assert all(is_real_number(v) for v in (1, 2.5, np.float32(1.0), np.int8(3), np.array(2.0)))
    assert not any(is_real_number(v) for v in (True, np.bool_(False), "1", b"1", None, [1.0], np.ones(1), 1 + 2j,
                                               [[1], [1, 2]]))
    assert check_count("n", 1) == 1 and check_count("n", np.int64(4), least=4) == 4
    for value, message in [(0, "n must be an integer >= 1 (frames), received 0"),
                           (3.0, "n must be an integer >= 1 (frames), received 3.0 (float)"),
                           (True, "n must be an integer >= 1 (frames), received True (bool)")]:
        with pytest.raises(PhysNetInputError, match=f"^{re.escape(message)}$"):
            check_count("n", value, what="frames")
    for temperature in (0.0, 0.05, MAX_TEMPERATURE_K):
        check_temperature("T", temperature)
    with pytest.raises(PhysNetInputError, match=r"^T must be at most 1e\+06 K \(k_B T = 86 eV there"):
        check_temperature("T", 1.05e6)
    for pressure in (-MAX_PRESSURE_BAR, 0.0, MAX_PRESSURE_BAR):
        check_pressure("P", pressure)
    for pressure in (1.05e8, -1.05e8):
        with pytest.raises(PhysNetInputError, match=r"^P must be within ±1e\+08 bar \(10 TPa"):
            check_pressure("P", pressure)
    with pytest.raises(PhysNetInputError, match=r"^P must be a finite number of bar, received nan$"):
        check_pressure("P", float("nan"))
    np.testing.assert_array_equal(check_masses([0.5, 1.008], 2), [0.5, 1.008])  # a light isotope model
    for masses, bad in [([1.008, 0.0, 12.0], "[0.0] at atom indices [1]"), ([np.nan, 1.0, np.inf], "[nan, inf] at "
                                                                                                 "atom indices [0, 2]")]:
        with pytest.raises(PhysNetInputError, match=f"^--masses must be finite and > 0 amu; received {re.escape(bad)}$"):
            check_masses(masses, 3, names={"masses": "--masses"})


def test_atomic_numbers_positions_and_element_names_at_their_edges():
    """Whole-number floats are atomic numbers (79.0 is gold, not refused); the last element of the table or of a
    model is in range; Z = 0 and Z = 119 are not elements, named so among valid ones; text is no atomic number.
    Positions: integers become float64; |x| = 1e4 Å is accepted, beyond refused, and one bad atom among good
    ones is named. The lists in messages show five values and count the rest."""
    assert MAX_ATOMIC_NUMBER == 118
    np.testing.assert_array_equal(check_atomic_numbers(np.array([79.0, 1.0]), MAX_ATOMIC_NUMBER), [79, 1])
    np.testing.assert_array_equal(check_atomic_numbers([118, 9], MAX_ATOMIC_NUMBER), [118, 9])
    np.testing.assert_array_equal(check_atomic_numbers([9, 1], 9), [9, 1])
    with pytest.raises(PhysNetInputError, match=re.escape("atomic number(s) 0, 119 at atom(s) 1, 2 are not elements "
                                                          "(Z = 1..118)")):
        check_atomic_numbers([1, 0, 119], MAX_ATOMIC_NUMBER)
    with pytest.raises(PhysNetInputError, match=re.escape("atomic_numbers must be integers, received dtype <U1")):
        check_atomic_numbers(np.array(["H", "O"]), MAX_ATOMIC_NUMBER)
    assert (element(0), element(1), element(118), element(119)) == ("Z=0", "H (Z=1)", "Og (Z=118)", "Z=119")
    assert _listed(range(5)) == "0, 1, 2, 3, 4" and _listed(range(7)) == "0, 1, 2, 3, 4 (and 2 more)"

    integers = check_positions(np.array([[0, 0, 0], [1, 0, 0]]), 2)
    assert integers.dtype == np.float64
    check_positions(np.array([[1.0e4, 0.0, -1.0e4], [0.0, 0.0, 0.0]]), 2)
    with pytest.raises(PhysNetInputError, match=re.escape("positions beyond ±10000 Å at atom(s) 1 (first: [0.0, "
                                                          "10500.0, 0.0])")):
        check_positions(np.array([[0.0, 0.0, 0.0], [0.0, 1.05e4, 0.0]]), 2)
    with pytest.raises(PhysNetInputError, match=re.escape("positions contain NaN or Inf at atom(s) 0")):
        check_positions(np.array([[np.nan, 0.0, 0.0], [1.0, 0.0, 0.0]]), 2)


def test_cells_boxes_and_distances_at_their_edges():
    """A cell 0.1 Å thin (its planes that far apart, to round-off) or with an entry of exactly 1e4 Å is accepted; a
    zero vector is named; no vector is no spacing. The neighbor search's box: zeros when isolated, the cell when
    periodic, and for partial pbc the periodic rows kept and the others unit vectors orthogonal to them.
    check_distances: False without close contacts; two atoms exactly 0.1 Å apart warn (not below 0.1 Å) and return
    True; a diatomic whose bond reads 0.074 Å (H2 in nm) is an error naming nm."""
    assert layer_spacings(np.zeros((0, 3))).shape == (0,)
    cell, pbc = check_cell(np.diag([0.1, 5.0, 5.0]), True)
    np.testing.assert_array_equal(cell, np.diag([0.1, 5.0, 5.0]))
    assert check_cell(np.diag([1.0e4, 5.0, 5.0]), [True, False, False])[1].tolist() == [True, False, False]
    with pytest.raises(PhysNetInputError, match=r"along cell vector 1 \(0 Å long\)"):
        check_cell(np.diag([5.0, 0.0, 5.0]), True)

    skewed = np.array([[4.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 7.0]])
    assert (neighbor_box(None, [False] * 3) == 0).all() and (neighbor_box(skewed, [False] * 3) == 0).all()
    np.testing.assert_array_equal(neighbor_box(skewed, [True] * 3), skewed)
    box = neighbor_box(np.array([[4.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 0.0]]), [True, True, False])
    np.testing.assert_array_equal(box[:2], skewed[:2])
    np.testing.assert_allclose(np.abs(box[2]), [0.0, 0.0, 1.0], rtol=0, atol=1e-15)

    assert check_distances(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])) is False
    with pytest.warns(CloseContactWarning, match=r"very close atoms: atoms 0-1 at 0\.1 Å \(below 0\.5 Å"):
        assert check_distances(np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])) is True
    with pytest.raises(PhysNetInputError, match=r"atoms overlap: atoms 0-1 at 0\.074 Å .* nm"):
        check_distances(np.array([[0.0, 0.0, 0.0], [0.074, 0.0, 0.0]]), atomic_numbers=np.array([1, 1]))


def test_a_batch_packed_by_hand_is_split_back_and_its_bad_structure_named():
    """check_batch_structures returns each structure's Z (int32) and R as given, and names the structure (and
    atoms) of a shape mismatch or a non-element among good ones."""
    zs = [np.array([8, 1]), np.array([1]), np.array([6, 1, 1])]
    rs = [np.arange(6.0).reshape(2, 3), np.ones((1, 3)), np.zeros((3, 3)) + [[0.0], [1.0], [2.0]]]
    numbers, positions = check_batch_structures(zs, rs)
    assert [z.tolist() for z in numbers] == [[8, 1], [1], [6, 1, 1]] and numbers[0].dtype == np.int32
    for given, back in zip(rs, positions):
        np.testing.assert_array_equal(back, given)
    with pytest.raises(PhysNetInputError, match=re.escape("cluster 2: positions must have shape (n, 3) = (3, 3)")):
        check_batch_structures(zs, rs[:2] + [np.zeros((2, 3))], what="cluster")
    with pytest.raises(PhysNetInputError, match=re.escape("molecule 1: atomic number(s) 0 at atom(s) 0 are not")):
        check_batch_structures([zs[0], np.array([0]), zs[2]], rs)


def test_overlaps_and_charges_of_batches_are_found_in_the_right_structure(monkeypatch):
    """overlapping_frame: the first structure with two real atoms below 0.1 Å (exactly 0.1 Å is not), padding left
    out, the same when the stack is searched one structure at a time. check_batch_overlaps names the structure of
    the first overlapping edge. check_batch_charges: |Q| up to ΣZ, None as neutral, the first bad one named."""
    stack = np.zeros((4, 3, 3))
    stack[:, 1, 0], stack[:, 2, 1] = 1.0, 1.0
    stack[0, 2] = [0.1, 0.0, 0.0]  # exactly 0.1 Å from atom 0: not an overlap
    stack[2, 2] = [1.0, 0.05, 0.0]  # 0.05 Å from atom 1, but atom 2 is padding here
    stack[3, 2] = [0.0, 0.0, 0.04]
    stack += [0.0, -2.0, 1.5]  # off the origin, where r_i + r_j would pass for r_i - r_j (x kept: 0.1 Å exact)
    present = np.ones((4, 3), bool)
    present[2, 2] = False
    assert overlapping_frame(stack[:3], present[:3]) is None
    expected = (3, 0, 2, 0.04)
    assert overlapping_frame(stack, present) == pytest.approx(expected)
    assert overlapping_frame(stack[[3, 0]]) == pytest.approx((0, 0, 2, 0.04))
    monkeypatch.setattr(validation, "OVERLAP_CHUNK_PAIRS", 9)  # one structure per chunk
    assert overlapping_frame(stack, present) == pytest.approx(expected)
    assert overlapping_frame(stack[[3, 0]]) == pytest.approx((0, 0, 2, 0.04))

    molecules = [np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]) + 2.0, np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]),
                 np.array([[0.0, 0.0, 0.0], [0.0, 0.05, 0.0]]) - 1.0]
    dst, src = np.array([0, 1, 2, 3, 4, 5]), np.array([1, 0, 3, 2, 5, 4])
    check_batch_overlaps(molecules[:2], dst[:4], src[:4])
    with pytest.raises(PhysNetInputError, match=r"^molecule 2: atoms overlap: atoms 0-1 at 0\.05 Å"):
        check_batch_overlaps(molecules, dst, src)

    # periodic: the overlap lies across the boundary of structure 1's 5 Å cell, seen only with the edge's shift
    # (r_src − r_dst + shift = 4.95 − 5 = −0.05 Å) and only in its own cell (in structure 0's 10 Å cell the image
    # is 5.05 Å away); structure 0's atoms are 2.5 Å apart
    cells = [10.0 * np.eye(3), 5.0 * np.eye(3)]
    crystals = [np.array([[0.5, 0.5, 0.5], [3.0, 0.5, 0.5]]), np.array([[0.02, 1.0, 1.0], [4.97, 1.0, 1.0]])]
    dst, src = np.array([0, 1, 2, 3]), np.array([1, 0, 3, 2])
    shifts = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    check_batch_overlaps(crystals, dst, src, np.zeros((4, 3)), cells, what="structure")
    with pytest.raises(PhysNetInputError,
                       match=r"^structure 1: atoms overlap: atoms 0-1 at 0\.05 Å \(below 0\.1 Å\)"):
        check_batch_overlaps(crystals, dst, src, shifts, cells, what="structure")

    np.testing.assert_array_equal(check_batch_charges(None, [10, 2]), [0.0, 0.0])
    np.testing.assert_array_equal(check_batch_charges([-10, 2], [10, 2]), [-10.0, 2.0])
    with pytest.raises(PhysNetInputError, match=r"^cluster 1: total_charge 3 e is larger than the number of electrons"):
        check_batch_charges([1.0, 3.0, 9.0], [10, 2, 2], what="cluster")
    with pytest.raises(ValueError, match=r"one charge per molecule \(2\), received shape \(3,\)"):
        check_batch_charges([0.0, 0.0, 0.0], [10, 2])


def test_dataset_elements_and_charges_outside_the_training_data_are_counted_per_frame():
    """check_dataset_elements names the unseen elements of the real atoms only (padding beyond each frame's atom
    count is skipped, whatever it holds) and counts the frames that hold them; charges within 1e-6 e of each other
    are one (the tolerance itself included), and one within 1e-6 e of a trained charge is trained."""
    z = np.array([[6, 1, 1, 1, 0], [8, 1, 9, 15, 0], [6, 1, 9, 0, 0], [17, 1, 0, 0, 0]])
    with pytest.warns(PhysNetInputWarning, match=r"^data: element\(s\) F \(Z=9\), Cl \(Z=17\) \(in 2 of 4 frames, "
                                                 r"first frame 1\) never occurred in this model's training data "
                                                 r"\(trained on H, C, O\)"):
        check_dataset_elements(z, [4, 3, 2, 2], [8, 6, 1], where="data")
    with warnings_as_errors():
        check_dataset_elements(z, [4, 1, 2, 2], [1, 6, 8, 17], where="data")
        check_dataset_elements(z, [4, 3, 2, 2], None)

    assert distinct_charges([2.5e-6, 1e-6, 0.0]) == [0.0, 2.5e-6]
    assert distinct_charges([[-1.0, 1.0], [-1.0, 0.0]]) == [-1.0, 0.0, 1.0]
    assert untrained_charges([1e-6, -2e-6], [0.0]) == [-2e-6]
    assert untrained_charges([1e-6, -2e-6], []) == [-2e-6, 1e-6]
    assert untrained_charges([1.0], None) == []
    assert formula([1, 119, 6, 0, 118]) == "CHOgZ119" and formula([8, 1, 1]) == "H2O"


def test_bond_length_ratios_of_periodic_cells_and_of_small_and_large_structures():
    """Two H atoms 0.2 Å apart across the face of a 10 Å cell: ratio 0.2 / (2 × 0.31 Å) with the cell, 9.8 / 0.62
    without it, a zero cell, or across the open direction of a slab. An H2 molecule in bohr read as Å (1.40 Å) is
    stretched 2.26×, also among 1100 atoms where only 1024 are sampled; one atom or H2 in Å is not."""
    z = np.array([1, 1])
    across_x = np.array([[0.1, 5.0, 5.0], [9.9, 5.0, 5.0]])
    across_z = across_x[:, [1, 2, 0]]
    near, far = 0.2 / 0.62, 9.8 / 0.62
    np.testing.assert_allclose(covalent_distance_ratios(z, across_x, cell=10.0 * np.eye(3)), [[np.inf, near],
                                                                                             [near, np.inf]])
    slab = np.diag([10.0, 10.0, 0.0])
    for positions, cell, ratio in ((across_x, None, far), (across_x, np.zeros((3, 3)), far), (across_x, slab, near),
                                   (across_z, slab, far), (across_z, 10.0 * np.eye(3), near)):
        np.testing.assert_allclose(bond_length_ratios(z, positions, cell=cell), [ratio, ratio], err_msg=str(cell))
    assert bond_length_ratios(z, across_x, rows=[]).shape == (0,)

    bohr_h2 = np.array([[0.0, 0.0, 0.0], [1.40, 0.0, 0.0]])
    assert stretched_bond_ratio(z, bohr_h2) == pytest.approx(1.40 / 0.62, rel=1e-12)
    assert stretched_bond_ratio(z, 0.74 / 1.40 * bohr_h2) is None and stretched_bond_ratio([1], bohr_h2[:1]) is None
    grid = 5.0 * np.stack(np.meshgrid(np.arange(10), np.arange(10), np.arange(6), indexing="ij"), -1).reshape(-1, 3)
    molecules = (grid[:550, None] + bohr_h2[None]).reshape(-1, 3)  # 550 H2, each 5 Å from the next
    assert stretched_bond_ratio(np.ones(1100, int), molecules) == pytest.approx(1.40 / 0.62, rel=1e-12)


def test_output_directories_are_created_with_their_parents_and_outputs_may_not_share_a_file(tmp_path):
    """check_output_directory creates missing parent folders and refuses a directory where one of its output files
    goes; check_distinct_files refuses two outputs that are one file (the first two as well as later ones), an
    output that is an input or inside an input directory, and lets through an input that does not exist yet."""
    nested = tmp_path / "runs" / "a" / "b"
    assert check_output_directory(nested, files=["harmonic.json"]) == nested and nested.is_dir()
    (nested / "spectrum.csv").mkdir()
    with pytest.raises(OutputPathError, match=r"^--out .*b: .*b/spectrum.csv is a directory where the output file "
                                              r"spectrum.csv goes; remove it or choose another --out$"):
        check_output_directory(nested, files=["harmonic.json", "spectrum.csv"])

    data = tmp_path / "data.xyz"
    data.write_text("")
    with pytest.raises(OutputPathError, match=r"^--out and --log are the same file .*out.xyz: give them different"):
        check_distinct_files([("--out", tmp_path / "out.xyz"), ("--log", tmp_path / "runs" / ".." / "out.xyz")])
    with pytest.raises(OutputPathError, match=r"^--log and --checkpoint are the same file .*log.txt: give them"):
        check_distinct_files([("--out", tmp_path / "out.xyz"), ("--log", tmp_path / "log.txt"),
                              ("--checkpoint", tmp_path / "log.txt")])
    with pytest.raises(OutputPathError, match=r"^--out .*data.xyz is also --data: writing it would replace the input"):
        check_distinct_files([("--out", data)], [("--data", data)])
    with pytest.raises(OutputPathError, match=r"^--json .*runs/report.json is inside --checkpoint .*runs: writing it"):
        check_distinct_files([("--json", tmp_path / "runs" / "report.json")], [("--checkpoint", tmp_path / "runs")])
    check_distinct_files([("--out", data)], [("--data", data)], may_equal=[("--out", "--data")])
    check_distinct_files([("--out", tmp_path / "new.xyz"), ("--log", None)], [("--data", tmp_path / "new.xyz")])


def test_a_position_unit_is_named_within_a_factor_1_3_of_its_bond_length_ratio():
    """A median bond-length ratio r names the unit u whose Å factor f brings r f within a factor 1.3 of 1 (bohr:
    r ≈ 1.89, nm: 0.1, pm: 100), the nearest one; none between them, at 1 (Å) or at 0 (coincident atoms)."""
    bohr = 1.0 / 0.529177210903
    for ratio, expected in ((bohr, "bohr"), (1.25 * bohr, "bohr"), (bohr / 1.25, "bohr"), (0.1, "nm"), (0.125, "nm"),
                            (100.0, "pm"), (77.0, "pm")):
        unit, factor = position_unit_slip(ratio)
        assert unit == expected and factor == pytest.approx({"bohr": 1 / bohr, "nm": 10.0, "pm": 0.01}[unit]), ratio
    for ratio in (1.0, 1.35 * bohr, 0.07, 0.135, 135.0, 0.0, 1.35):
        assert position_unit_slip(ratio) is None, ratio
