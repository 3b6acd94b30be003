"""Data loading, validation (one test per bad-data class), splits and the float64 E0 fit."""

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import warnings_as_errors

from physnetjax.data import (
    DataError,
    Dataset,
    bundled_dataset_path,
    fit_element_energies,
    load_ase,
    load_dataset,
    load_npz,
    random_split,
    shifted_energies,
)
from physnetjax.data.split import check_split
from physnetjax.errors import PhysNetInputError, PhysNetInputWarning

DATA = Path(__file__).parent / "data" / "train_ethanol64.npz"
KCAL_PER_MOL_IN_EV = 4.184e3 / 6.02214076e23 / 1.602176634e-19
DEBYE_IN_EA = 1e-21 / 299792458.0 / 1.602176634e-19 * 1e10


@pytest.fixture(scope="module")
def raw():
    with np.load(DATA) as npz:
        return {k: npz[k] for k in npz.files}


def write(tmp_path, arrays, name="bad.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_npz_reads_units_and_labels(raw):
    data = load_npz(DATA)
    assert len(data) == 64 and data.max_atoms == 9
    np.testing.assert_array_equal(data.E, raw["E"])
    np.testing.assert_array_equal(data.F, raw["F"])
    assert data.has_E.all() and data.has_F.all() and data.has_D.all() and data.has_Q.all()
    assert data.E.dtype == np.float64


def test_a_dataset_without_the_optional_fields_and_the_centroids_of_its_frames():
    """A Dataset built from the required fields alone holds isolated, unweighted, stress-free frames of the default
    kind: zero (M, 3, 3) cells, unused cells and stresses, no stress labels, (M, 4) weights of 1. The centroid the
    trainer moves each molecule to is the mean of its real atoms (padding left out), a lone atom's own position."""
    positions = np.array([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], [[-4.0, 5.0, 0.5], [0.0, 0.0, 0.0]]])
    data = Dataset(Z=np.array([[8, 1], [6, 0]], np.int32), R=positions, N=np.array([2, 1], np.int32),
                   E=np.zeros(2), F=np.zeros((2, 2, 3)), D=np.zeros((2, 3)), Q=np.zeros(2),
                   has_E=np.ones(2, bool), has_F=np.ones(2, bool), has_D=np.zeros(2, bool), has_Q=np.zeros(2, bool),
                   sources=np.array(["a[0]", "a[1]"]))
    for name in ("cell", "unused_cell", "S"):
        np.testing.assert_array_equal(getattr(data, name), np.zeros((2, 3, 3)))
    np.testing.assert_array_equal(data.has_S, [False, False])
    np.testing.assert_array_equal(data.weights, np.ones((2, 4)))
    assert list(data.config_type) == ["Default", "Default"] and not data.periodic.any() and not data.weighted
    np.testing.assert_array_equal(data.centroids([0, 1]), [[2.0, 2.0, 2.0], [-4.0, 5.0, 0.5]])
    np.testing.assert_array_equal(data.centroids([1]), [[-4.0, 5.0, 0.5]])


def test_unit_conversion_kcal_debye(tmp_path, raw):
    converted = dict(raw, E=raw["E"] / KCAL_PER_MOL_IN_EV, F=raw["F"] / KCAL_PER_MOL_IN_EV,
                     D=raw["D"] / DEBYE_IN_EA)
    data = load_npz(write(tmp_path, converted, "kcal.npz"), energy_unit="kcal/mol", dipole_unit="Debye")
    np.testing.assert_allclose(data.E, raw["E"], rtol=1e-13)
    np.testing.assert_allclose(data.F, raw["F"], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(data.D, raw["D"], rtol=1e-13, atol=1e-13)
    hartree_bohr = load_npz(write(tmp_path, raw, "hb.npz"), energy_unit="eV", force_unit="hartree/bohr")
    np.testing.assert_allclose(hartree_bohr.F, raw["F"] * 27.211386245988 / 0.529177210903, rtol=1e-10)


def test_npz_layout_variants_read_as_the_canonical_layout(tmp_path, raw):
    """Z stored once for all frames (n,), float Z, E, Q and N as (M, 1) columns: the same dataset as the
    canonical (M, n) / (M,) layout of the same numbers."""
    assert (raw["Z"] == raw["Z"][0]).all()  # one molecule: a per-file Z is possible
    variant = dict(raw, Z=raw["Z"][0].astype(np.float64), E=raw["E"][:, None], Q=raw["Q"].reshape(-1, 1),
                   N=raw["N"].reshape(-1, 1))
    canonical, read = load_npz(DATA), load_npz(write(tmp_path, variant, "variant.npz"))
    for key in ("Z", "R", "N", "E", "F", "D", "Q", "has_E", "has_F", "has_D", "has_Q"):
        assert getattr(read, key).shape == getattr(canonical, key).shape, key
        np.testing.assert_array_equal(getattr(read, key), getattr(canonical, key), err_msg=key)
    assert read.Z.dtype == canonical.Z.dtype == np.int32


@pytest.mark.parametrize("edit, match", [
    (lambda a: dict(a, R=a["R"][:, :, :2]), r"key 'R' must have shape \(frames, atoms, 3\), received \(64, 9, 2\)"),
    (lambda a: dict(a, R=a["R"][:0]), r"key 'R' has shape \(0, 9, 3\): the file holds no frames or no atoms"),
    (lambda a: dict(a, Z=np.where(np.arange(9) == 4, 6.5, a["Z"]).astype(np.float64)),
     r"key 'Z' frame 0: atomic numbers must be integers, received \[.*6\.5"),
    (lambda a: dict(a, N=np.full(64, 10)), r"key 'N' outside \[1, 9\] in frame\(s\) 0, 1, 2"),
    (lambda a: dict(a, N=np.where(np.arange(64) == 6, 0, a["N"])), r"key 'N' outside \[1, 9\] in frame\(s\) 6$"),
    # five frames are listed whole; an .npz's NaN positions get no note about labels
    (lambda a: dict(a, R=np.where((np.arange(64) < 5)[:, None, None], np.nan, a["R"])),
     r"key 'R' has NaN or Inf in frame\(s\) 0, 1, 2, 3, 4$"),
    (lambda a: dict(a, R=a["R"] + np.where(np.arange(64) == 7, 2e4, 0.0)[:, None, None]),
     r"key 'R' has coordinates beyond ±10000 Å in frame\(s\) 7; frame 7's atoms span only [0-9.]+ Å but lie "
     r"2000[0-9] Å from the origin: translate each frame near the origin \(e\.g\. ASE's atoms\.center\(about=0\)"),
    (lambda a: dict(a, R=a["R"] * np.where(np.arange(64) == 5, 1e5, 1.0)[:, None, None]),
     r"key 'R' has coordinates beyond ±10000 Å in frame\(s\) 5; positions must be in Å"),
    (lambda a: dict(a, R=np.where((np.arange(64) == 9)[:, None, None] & (np.arange(9) == 2)[None, :, None], 2e4,
                                  a["R"])),  # one atom of one frame
     r"key 'R' has coordinates beyond ±10000 Å in frame\(s\) 9; positions must be in Å"),
    # read without a word on main: True as 1 eV, the imaginary part dropped, 3 significant digits, H atoms
    (lambda a: dict(a, E=a["E"] > a["E"].mean()), r"key 'E' holds bool values, expected real numbers"),
    (lambda a: dict(a, R=a["R"] * (1 + 0j)), r"key 'R' holds complex128 values, expected real numbers"),
    (lambda a: dict(a, R=a["R"].astype(np.float16)), r"key 'R' is float16, which keeps about 3 significant digits"),
    (lambda a: dict(a, F=a["F"].astype(np.float16)), r"key 'F' is float16"),
    (lambda a: dict(a, Z=a["Z"] > 0), r"key 'Z' holds bool values, expected atomic numbers"),
    (lambda a: dict(a, D=np.full(a["D"].shape, "0.1")), r"key 'D' holds <U3 values, expected real numbers"),
])
def test_malformed_npz_arrays_are_named(tmp_path, raw, edit, match):
    with pytest.raises(DataError, match=r"bad\.npz: " + match):
        load_npz(write(tmp_path, edit(raw)))


def test_bad_units_and_force_sign_are_refused(raw):
    with pytest.raises(ValueError, match="force unit must look like ENERGY/LENGTH"):
        load_npz(DATA, force_unit="kcal")
    with pytest.raises(ValueError, match=r"force unit 'kcal/mol' is an energy unit; give ENERGY/LENGTH, e\.g\. "
                                         r"'kcal/mol/A'"):  # main: "unknown length unit 'mol'"
        load_npz(DATA, force_unit="kcal/mol")
    with pytest.raises(ValueError, match="force_sign must be 1 or -1, received 2"):
        load_dataset([DATA], force_sign=2)


def test_missing_key(tmp_path, raw):
    arrays = {k: v for k, v in raw.items() if k != "R"}
    with pytest.raises(DataError, match=r"bad\.npz.*missing required key 'R'"):
        load_npz(write(tmp_path, arrays))


def test_no_labels(tmp_path, raw):
    arrays = {k: v for k, v in raw.items() if k not in ("E", "F")}
    with pytest.raises(DataError, match=r"bad\.npz.*no labels"):
        load_npz(write(tmp_path, arrays))


def test_shape_mismatch(tmp_path, raw):
    with pytest.raises(DataError, match=r"bad\.npz: key 'F' has shape \(64, 8, 3\), expected \(64, 9, 3\)"):
        load_npz(write(tmp_path, dict(raw, F=raw["F"][:, :8])))


def test_nan_and_inf_name_key_and_frame(tmp_path, raw):
    forces = raw["F"].copy()
    forces[17, 3, 1] = np.nan
    with pytest.raises(DataError, match=r"bad\.npz: key 'F' has NaN or Inf in frame\(s\) 17 \(an \.npz carries a label for "
                                        r"every frame or none: write the frames without 'F' to another file .*\)$"):
        load_npz(write(tmp_path, dict(raw, F=forces)))
    energies = raw["E"].copy()
    energies[[5, 40]] = np.inf
    with pytest.raises(DataError, match=r"key 'E' has NaN or Inf in frame\(s\) 5, 40"):
        load_npz(write(tmp_path, dict(raw, E=energies)))


def test_n_inconsistent_with_padding(tmp_path, raw):
    n = raw["N"].copy()
    n[9] = 8
    with pytest.raises(DataError, match=r"bad\.npz: key 'N' is inconsistent with the zero padding of 'Z' "
                                        r"in frame\(s\) 9;"):
        load_npz(write(tmp_path, dict(raw, N=n)))
    z = raw["Z"].copy()
    z[3, 2] = 0
    with pytest.raises(DataError, match=r"frame\(s\) 3; frame 3: N=9"):
        load_npz(write(tmp_path, dict(raw, Z=z)))


def test_atomic_number_out_of_range(tmp_path, raw):
    z = raw["Z"].copy()
    z[2, 0] = 200
    with pytest.raises(DataError, match=r"key 'Z' has atomic numbers outside \[0, 118\] in frame\(s\) 2"):
        load_npz(write(tmp_path, dict(raw, Z=z)))


def test_duplicated_frames_warn(tmp_path, raw):
    arrays = {k: v.copy() for k, v in raw.items()}
    arrays["R"][30] = arrays["R"][4]
    with pytest.warns(UserWarning, match=r"1 duplicated frame\(s\): .*bad\.npz\[30\] = .*bad\.npz\[4\]"):
        load_npz(write(tmp_path, arrays))


def test_a_file_given_twice_is_named(tmp_path, raw, monkeypatch):
    """On main --data a.npz ./a.npz read every frame twice, reported only as 'a.npz[0] = a.npz[0]' duplicates."""
    path = write(tmp_path, raw)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match=rf"\./{path.name} is given twice \(also as {re.escape(str(path))}\): each of "
                                         "its frames is read twice, so it counts double \\(in averages, fits and "
                                         "calibrations; in training"):
        data = load_dataset([path, f"./{path.name}"])
    assert len(data) == 2 * len(raw["E"])


def test_a_frame_written_to_extxyz_is_a_duplicate_of_its_npz_original(tmp_path, raw):
    """extxyz keeps 8 decimals: on main the same frames from .npz and .extxyz were not seen as duplicates, so
    one copy could train and the other test without a word."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(2):
        atoms = ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k])
        atoms.calc = SinglePointCalculator(atoms, energy=raw["E"][k], forces=raw["F"][k])
        frames.append(atoms)
    ase.io.write(tmp_path / "two.extxyz", frames)
    assert not np.array_equal(load_ase(tmp_path / "two.extxyz").R, raw["R"][:2])  # rounded in the text
    with pytest.warns(UserWarning, match=r"2 duplicated frame\(s\): .*two\.extxyz\[0\] = .*train_ethanol64\.npz\[0\]"):
        load_dataset([DATA, tmp_path / "two.extxyz"])


def test_unreadable_file(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_text("not a zip")
    with pytest.raises(DataError, match="junk.npz: cannot read"):
        load_npz(path)
    with pytest.raises(DataError, match="missing.xyz: no such file"):
        load_dataset(tmp_path / "missing.xyz")


def test_extxyz_labels_in_kcal_per_mol_and_debye_and_its_charges_are_read_in_ev_and_e(tmp_path, raw):
    """load_ase's unit conversion (a sweep found every test of it on .npz files): energies, forces and dipoles
    written in kcal/mol, kcal/mol/Å and Debye read as the eV, eV/Å and e·Å originals; info['charge'] is a known
    total charge (has_Q), 0 or +1 e as written."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(4):
        atoms = ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k], info={"charge": float(k % 2)})
        atoms.calc = SinglePointCalculator(atoms, energy=raw["E"][k] / KCAL_PER_MOL_IN_EV,
                                           forces=raw["F"][k] / KCAL_PER_MOL_IN_EV, dipole=raw["D"][k] / DEBYE_IN_EA)
        frames.append(atoms)
    ase.io.write(tmp_path / "kcal.extxyz", frames)
    with warnings_as_errors():  # charge, energy, forces and dipole are all read: nothing named as not read
        data = load_ase(tmp_path / "kcal.extxyz", energy_unit="kcal/mol", dipole_unit="Debye")
    np.testing.assert_allclose(data.E, raw["E"][:4], rtol=1e-9)
    np.testing.assert_allclose(data.F, raw["F"][:4], rtol=1e-6, atol=1e-7)  # 8 decimals of kcal/mol/Å in the text
    np.testing.assert_allclose(data.D, raw["D"][:4], rtol=1e-6, atol=1e-7)
    assert data.has_Q.all() and data.Q.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_ase_frames_take_a_stress_tensor_or_voigt_initial_charges_and_frames_without_labels(tmp_path):
    """More gaps of a sweep of load_ase: a .traj keeps a calculator's 3×3 stress (extxyz writes it, and reads it
    back, in Voigt order): both read as the tensor; a frame's initial charges sum to its known total charge; a frame
    with no label at all among labelled ones is read, not taken for a file without labels."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    stress = np.array([[0.010, 0.002, -0.001], [0.002, -0.020, 0.003], [-0.001, 0.003, 0.005]])  # eV/Å³
    cell = ase.Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=5.0 * np.eye(3), pbc=True)
    cell.calc = SinglePointCalculator(cell, energy=-1.0, forces=np.zeros((2, 3)), stress=stress)
    for name in ("cell.traj", "cell.extxyz"):
        ase.io.write(tmp_path / name, [cell])
        read = load_ase(tmp_path / name)
        assert read.has_S.all(), name
        np.testing.assert_allclose(read.S[0], stress, rtol=0, atol=1e-12, err_msg=name)
    ion = ase.Atoms("OH", positions=[[0, 0, 0], [0.97, 0, 0]])
    ion.set_initial_charges([-1.4, 0.4])
    ion.calc = SinglePointCalculator(ion, energy=-2.0, forces=np.zeros((2, 3)))
    bare = ase.Atoms("OH", positions=[[0, 0, 0], [0.99, 0, 0]])
    ase.io.write(tmp_path / "ions.extxyz", [ion, bare])
    ions = load_ase(tmp_path / "ions.extxyz")
    assert ions.has_E.tolist() == [True, False] and ions.has_Q.tolist() == [True, False]
    assert ions.Q[0] == pytest.approx(-1.0, abs=1e-12)
    for label in ("energy", "forces"):  # the only label of the file, in one frame of two
        ion.calc = SinglePointCalculator(ion, **{label: -2.0 if label == "energy" else np.zeros((2, 3))})
        ase.io.write(tmp_path / f"{label}.extxyz", [ion, bare])
        partly = load_ase(tmp_path / f"{label}.extxyz")
        assert (partly.has_E if label == "energy" else partly.has_F).tolist() == [True, False], label


def test_ase_extxyz_masks_missing_labels(tmp_path, raw):
    import ase
    from ase.calculators.singlepoint import SinglePointCalculator
    import ase.io

    frames = []
    for k in range(4):
        atoms = ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k])
        results = {"energy": raw["E"][k]} if k == 2 else {"energy": raw["E"][k], "forces": raw["F"][k]}
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, frames)
    data = load_ase(path)
    np.testing.assert_array_equal(data.has_F, [True, True, False, True])
    assert data.has_E.all() and not data.has_D.any()
    np.testing.assert_allclose(data.E, raw["E"][:4], rtol=1e-12)
    np.testing.assert_allclose(data.F[3], raw["F"][3], atol=1e-6)
    np.testing.assert_array_equal(data.F[2], 0.0)


def test_mixed_files_pad_and_mask(tmp_path, raw):
    small = {"R": raw["R"][:3, :4], "Z": raw["Z"][:3, :4], "N": np.full(3, 4), "E": raw["E"][:3]}
    data = load_dataset([DATA, write(tmp_path, small, "small.npz")])
    assert len(data) == 67 and data.max_atoms == 9
    np.testing.assert_array_equal(data.N[-3:], 4)
    np.testing.assert_array_equal(data.Z[-1, 4:], 0)
    assert data.has_F[:64].all() and not data.has_F[64:].any()


def test_split_is_reproducible_and_disjoint():
    a = random_split(100, valid=0.1, test=0.2, seed=3)
    b = random_split(100, valid=0.1, test=0.2, seed=3)
    c = random_split(100, valid=0.1, test=0.2, seed=4)
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(a[name], b[name])
    assert [len(a[n]) for n in ("train", "valid", "test")] == [70, 10, 20]
    assert not np.array_equal(a["valid"], c["valid"])
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="share frames"):
        check_split({"train": [0, 1], "valid": [1, 2]}, 10)
    # a test frame that is also trained (or validated) on makes the test errors optimistic
    with pytest.raises(ValueError, match=r"^split: 'train' and 'test' share frames \[3\]$"):
        check_split({"train": [0, 3], "valid": [1, 2], "test": [3, 4]}, 10)
    with pytest.raises(ValueError, match=r"^split: 'valid' and 'test' share frames \[2\]$"):
        check_split({"train": [0, 3], "valid": [1, 2], "test": [2, 4]}, 10)
    with pytest.raises(ValueError, match="outside"):
        check_split({"train": [0, 11], "valid": [1, 2]}, 10)
    with pytest.raises(ValueError, match=r"no 'train' index array .*found E, R, Z"):
        check_split({"Z": np.ones((3, 2), int), "R": np.zeros((3, 2, 3)), "E": np.zeros(3)}, 10)
    with pytest.raises(ValueError, match="'valid' is empty"):
        check_split({"train": [0, 1], "valid": np.zeros(0, int)}, 10)
    # on main these said only "cannot split 5 frames into train=5, valid=0, test=0", neither why nor what to change
    with pytest.raises(ValueError, match=r"cannot split 5 frames: the validation split needs at least 1 frame .*"
                                         r"valid=0.1 gives none, give a frame count such as valid=1"):
        random_split(5)
    with pytest.raises(ValueError, match=r"5 frames: 3 validation and 2 test frames leave none to train on; lower "
                                         r"valid or test"):
        random_split(5, valid=3, test=2)
    with pytest.raises(ValueError, match=r"5 frames: 5 validation and 0 test frames leave none to train on; lower "
                                         r"valid$"):  # learn has no test count: it was told to lower one too
        random_split(5, valid=5)
    with pytest.raises(ValueError, match=r"into 4 training, 1 validation and 1 test frames: they need 6; lower train, "
                                         r"valid or test"):
        random_split(5, valid=1, test=1, train=4)
    # main: "the validation split needs at least 1 frame; ... give a frame count such as valid=1", which leaves none
    # to train on
    with pytest.raises(ValueError, match=r"^cannot split 1 frame\(s\): training needs at least 2, one to train on and "
                                         r"one to validate with \(it selects the best checkpoint\); add frames$"):
        random_split(1)
    with pytest.raises(ValueError, match=r"cannot split 3 frame\(s\): training needs at least 2 besides 2 test "
                                         r"frame\(s\) \(test=2\), .*; add frames or lower test$"):
        random_split(3, test=2)


def test_the_smallest_splits_and_the_last_frame_index_at_their_bounds():
    """Three frames split into one each (the fewest training needs: one to train on, one to validate with), by the
    remaining frames or by a training count of 1; a split file's index equal to the frame count is outside, and one
    without test indices has an empty test part."""
    for train in (None, 1):
        split = random_split(3, valid=1, test=1, train=train, seed=2)
        assert sorted(np.concatenate([split[name] for name in ("train", "valid", "test")]).tolist()) == [0, 1, 2]
        assert [len(split[name]) for name in ("train", "valid", "test")] == [1, 1, 1]
    with pytest.raises(ValueError, match=r"^split: 'valid' has indices outside \[0, 10\): \[10\]$"):
        check_split({"train": [0, 9], "valid": [1, 10]}, 10)
    split = check_split({"train": [1, 9], "valid": [2]}, 10)
    assert split["test"].dtype == np.int64 and split["test"].shape == (0,)


@pytest.mark.parametrize("sizes,keyword_message,option_message", [
    # main: OverflowError (an internal error of the CLIs), and "valid must be >= 0, received nan"
    (dict(valid=float("inf")), "valid must be a finite number >= 0 (a fraction < 1 or a whole number of frames), "
                               "received inf", "--valid must be a finite number >= 0"),
    (dict(test=float("nan")), "test must be a finite number >= 0", "--test must be a finite number >= 0"),
    (dict(train=1.5), "train=1.5 is neither a fraction < 1 nor a whole number of frames; use e.g. train=0.15 "
                      "(fraction) or train=2 (frames)", "--train 1.5 is neither a fraction < 1 nor a whole number of "
                                                        "frames; use e.g. --train 0.15 (fraction) or --train 2"),
    # main: "... lower valid or test", which would not help
    (dict(train=0.01), "cannot split 20 frames: train=0.01 gives no training frame; give a frame count such as "
                       "train=1", "--train 0.01 gives no training frame; give a frame count such as --train 1"),
    (dict(valid=0.01), "valid=0.01 gives none, give a frame count such as valid=1",
     "--valid 0.01 gives none, give a frame count such as --valid 1"),
])
def test_split_sizes_are_checked_and_named(sizes, keyword_message, option_message):
    """By keyword from Python; by the options a command line passes as ``names``."""
    with pytest.raises(ValueError, match=re.escape(keyword_message)):
        random_split(20, **sizes)
    with pytest.raises(ValueError, match=re.escape(option_message)):
        random_split(20, **sizes, names={"valid": "--valid", "test": "--test", "train": "--train"})


def test_element_energy_fit_recovers_references_in_float64():
    e0 = {1: -13.6, 6: -1029.7, 8: -2041.3}
    compositions = [[6, 1, 1, 1, 1], [8, 1, 1, 0, 0], [6, 8, 8, 0, 0], [6, 6, 1, 1, 0], [8, 8, 0, 0, 0]]
    Z = np.array(compositions * 3)
    rng = np.random.default_rng(0)
    offsets = rng.normal(scale=1e-3, size=len(Z))
    offsets -= offsets.mean()
    E = np.array([sum(e0[z] for z in row if z) for row in Z]) + offsets
    fitted = fit_element_energies(Z, E, max_atomic_number=8)
    for z, value in e0.items():
        assert abs(fitted[z] - value) < 2e-3
    assert fitted[0] == 0 and fitted[2] == 0
    shifted = shifted_energies(Z, E, fitted)
    assert np.abs(shifted).max() < 5e-3
    with pytest.raises(ValueError, match=r"^atomic number 9 exceeds max_atomic_number=8$"):
        fit_element_energies(np.array([[1, 9], [1, 1]]), np.array([-40.0, -27.0]), max_atomic_number=8)


def test_net_force_warns(tmp_path, raw):
    """Forces read with ASE's FixCom applied (f - m lambda) carry a net force: reported by frame."""
    arrays = {k: v.copy() for k, v in raw.items()}
    masses = np.where(arrays["Z"][7] == 1, 1.008, np.where(arrays["Z"][7] == 6, 12.011, 15.999))
    lam = masses @ arrays["F"][7] / np.sum(masses**2)
    arrays["F"][7] = arrays["F"][7] - masses[:, None] * lam
    with pytest.warns(UserWarning, match=r"key 'F': the forces of 1 frame\(s\) do not sum to zero \(frames 7;"):
        load_npz(write(tmp_path, arrays))


def test_forces_on_padding_atoms_warn_and_do_not_count_as_net_force(tmp_path, raw):
    """Non-zero F beyond N: on main only a misleading "forces do not sum to zero" warning (the padding summed in)."""
    arrays = {k: v.copy() for k, v in raw.items()}
    for key in ("R", "Z", "F"):
        arrays[key] = np.concatenate([arrays[key], np.zeros_like(arrays[key][:, :1])], axis=1)
    with warnings_as_errors():
        load_npz(write(tmp_path, arrays, "padded.npz"))
    arrays["F"][3, 9] = [0.5, 0.0, 0.0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_npz(write(tmp_path, arrays))
    assert [str(w.message) for w in caught if "sum to zero" in str(w.message)] == []
    padding = [w for w in caught if issubclass(w.category, PhysNetInputWarning)]
    assert len(padding) == 1
    assert re.search(r"key 'F' is non-zero on padding atoms \(Z = 0, beyond N\) in 1 frame\(s\) \(frames 3; up to "
                     r"0.5 eV/Å in .*bad.npz\[3\], N = 9\); .*check that F is padded like Z", str(padding[0].message))


def test_bundled_dataset_is_valid_and_small():
    path = bundled_dataset_path()
    assert path.stat().st_size <= 1_000_000
    with warnings_as_errors():
        data = load_npz(path)
    # An isolated molecule's forces sum to zero (translation invariance of the GFN2 energy).
    assert np.max(np.abs(data.F.sum(axis=1))) < 1e-3
    assert len(data) >= 500
    assert sorted(set(np.unique(data.Z).tolist())) == [1, 6, 8]
    with np.load(path) as npz:
        assert str(npz["method"]) == "GFN2-xTB" and float(npz["temperature_K"]) == 500.0
        assert npz["R"].dtype == np.float32 and npz["E"].dtype == np.float64


def test_ase_label_keys_not_read_warn_and_conflicting_duplicates_refuse(tmp_path, raw):
    """On main REF_energy / total_charge / info['energy'] were dropped silently (the calculator's energy, a
    neutral charge or no energy label trained instead) and an info energy contradicting the calculator's too."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    def frames(shift=0.0, **info):
        out = []
        for k in range(3):
            atoms = ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k])
            atoms.calc = SinglePointCalculator(atoms, energy=raw["E"][k] + shift, forces=raw["F"][k])
            atoms.info.update(info)
            out.append(atoms)
        return out

    both = tmp_path / "both.extxyz"
    ase.io.write(both, frames(shift=0.5, REF_energy=-1.0, total_charge=1, energy_weight=1.0))
    with pytest.warns(UserWarning, match=r"not read: 'REF_energy' \(frames 0, 1, 2\); 'total_charge'") as record:
        data = load_ase(both)
    assert not any("energy_weight" in str(w.message) for w in record)
    np.testing.assert_allclose(data.E, raw["E"][:3] + 0.5, rtol=1e-12)
    assert not data.has_Q.any()

    conflict = tmp_path / "conflict.traj"
    ase.io.write(conflict, frames(energy=float(raw["E"][0]) + 1.0))
    with pytest.raises(DataError, match=r"conflict.traj: frame 0: atoms.info\['energy'\] differs from the calc"):
        load_ase(conflict)

    agree = frames()
    for k, atoms in enumerate(agree):
        atoms.info["energy"] = float(raw["E"][k])
    ase.io.write(tmp_path / "agree.traj", agree)
    with warnings_as_errors():
        np.testing.assert_allclose(load_ase(tmp_path / "agree.traj").E, raw["E"][:3], rtol=1e-12)

    ref_only = tmp_path / "ref_only.extxyz"
    renamed = [ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k], info={"REF_energy": float(raw["E"][k])})
               for k in range(2)]
    ase.io.write(ref_only, renamed)
    with pytest.raises(DataError, match=r"not read: 'REF_energy' \(frames 0, 1\)"):
        load_ase(ref_only)


def test_extxyz_free_energy_without_energy_warns(tmp_path, raw):
    """extxyz free_energy= (VASP-style) becomes a calculator result, not info: on main those frames trained on forces
    only without a word; beside energy= (both given) it is not reported."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    def frames(**energies):
        out = []
        for k in range(3):
            atoms = ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k])
            atoms.calc = SinglePointCalculator(atoms, forces=raw["F"][k],
                                               **{key: raw["E"][k] + shift for key, shift in energies.items()})
            out.append(atoms)
        return out

    ase.io.write(tmp_path / "free.extxyz", frames(free_energy=0.0))
    with pytest.warns(PhysNetInputWarning, match=r"free.extxyz: label-like keys not read: 'free_energy' \(frames 0, "
                                                 r"1, 2\); the labels read are the calculator results 'energy'"):
        assert not load_ase(tmp_path / "free.extxyz").has_E.any()
    ase.io.write(tmp_path / "both.extxyz", frames(energy=0.0, free_energy=-0.01))
    with warnings_as_errors():
        assert load_ase(tmp_path / "both.extxyz").has_E.all()


def test_npz_label_keys_not_read_warn(tmp_path, raw):
    """Forces stored as 'forces' (not F): on main the model trained on energies only without a word."""
    arrays = {k: v for k, v in raw.items() if k not in ("F", "D")}
    path = write(tmp_path, {**arrays, "forces": raw["F"], "dipole_moment": raw["D"], "method": "GFN2-xTB"})
    with pytest.warns(PhysNetInputWarning, match=r"bad.npz: label-like keys not read: 'forces', 'dipole_moment'; "
                                                 r"the labels read are the PhysNet keys E \(energy\), F"):
        assert not load_npz(path).has_F.any()


def test_npz_with_only_label_like_keys_names_them_and_the_rename(tmp_path, raw):
    """An npz with 'energy' and 'forces' only said "no labels: needs key 'E' and/or 'F'", without the rename that
    the warning of the same keys beside E suggests."""
    arrays = {k: v for k, v in raw.items() if k not in ("E", "F", "D")}
    path = write(tmp_path, {**arrays, "energy": raw["E"], "forces": raw["F"]})
    with pytest.raises(PhysNetInputError) as caught:
        load_npz(path)
    assert str(caught.value) == (f"{path}: no labels: needs key 'E' and/or 'F' (keys present: "
                                 f"{sorted([*arrays, 'energy', 'forces'])}); label-like keys found but not read: "
                                 "'energy', 'forces': to read the reference labels as the PhysNet keys E (energy) and "
                                 "F (forces, -dE/dR), map them with --keys PHYSNET_KEY=NAME (e.g. --keys E=energies "
                                 "F=forces), or rename them in the file")
    plain = write(tmp_path, arrays)
    with pytest.raises(PhysNetInputError, match=r"no labels: needs key 'E' and/or 'F' \(keys present: \[.*\]\)$"):
        load_npz(plain)


@pytest.mark.parametrize("key", ["energies", "Energies", "e", "Etot", "U0"])
def test_energies_under_common_names_warn_in_npz_and_extxyz(tmp_path, raw, key):
    """'energies' (plural: not a substring match of 'energy'), 'e', 'Etot' and QM9's 'U0' were dropped without a
    word: training went on with forces only."""
    import ase
    import ase.io

    arrays = {k: v for k, v in raw.items() if k != "E"}
    with pytest.warns(PhysNetInputWarning, match=rf"label-like keys not read: '{key}'"):
        assert not load_npz(write(tmp_path, {**arrays, key: raw["E"]})).has_E.any()
    frames = [ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k], info={key: float(raw["E"][k])})
              for k in range(2)]
    for atoms, forces in zip(frames, raw["F"]):
        atoms.arrays["gradients"] = -forces
    ase.io.write(tmp_path / "frames.extxyz", frames)
    with pytest.raises(DataError, match=rf"no frame carries an energy or forces .*label-like keys found but not "
                                        rf"read: '{key}' \(frames 0, 1\); 'gradients' \(frames 0, 1\)"):
        load_ase(tmp_path / "frames.extxyz")


def test_periodic_ase_frames_keep_their_cell_and_check_refuses_in_reach_images(tmp_path, raw):
    """A periodic extxyz (crystal, liquid) was read as isolated molecules on main, its cell dropped with a warning
    only: training and eval went on without the periodic images. The cell is kept now (zero rows along the
    directions that are not periodic); check_images_beyond_reach refuses, for a tool that takes molecules only, frames
    whose images lie within the reach."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from physnetjax.data.dataset import check_images_beyond_reach, warn_unused_cells

    def check_isolated(data, reach, text):
        positions = [data.R[k, : data.N[k]] for k in range(len(data))]
        check_images_beyond_reach(data.sources, data.cell, positions, reach, text, "REMEDY")

    frames = []
    for k, pbc in enumerate([False, True, [True, True, False]]):
        atoms = ase.Atoms(numbers=raw["Z"][k], positions=raw["R"][k], cell=[6.0, 7.0, 8.0], pbc=pbc)
        atoms.calc = SinglePointCalculator(atoms, energy=raw["E"][k], forces=raw["F"][k])
        frames.append(atoms)
    ase.io.write(tmp_path / "cell.extxyz", frames)
    with warnings_as_errors():
        data = load_ase(tmp_path / "cell.extxyz")
    np.testing.assert_array_equal(data.cell, [np.zeros((3, 3)), np.diag([6.0, 7.0, 8.0]), np.diag([6.0, 7.0, 0.0])])
    np.testing.assert_array_equal(data.periodic, [False, True, True])
    np.testing.assert_array_equal(data.subset([2]).cell, data.cell[2:])
    assert not load_npz(write(tmp_path, raw)).cell.any()
    with pytest.warns(PhysNetInputWarning, match=r"^1 frame\(s\) carry a cell but pbc F F F"):
        warn_unused_cells(data.subset([0]), 5.0, "5 Å")  # read as isolated; its images would be in reach
    with warnings_as_errors():
        warn_unused_cells(data.subset([1, 2]), 5.0, "5 Å")  # periodic: no unused cell
    check_isolated(data.subset([0]), 5.0, "5 Å")
    with pytest.raises(DataError, match=r"^2 periodic frame\(s\) have atoms within 5 Å of a periodic image \(frames "
                                        r"1, 2; e\.g\. .*cell.extxyz\[\d\], pbc T T [TF], .* image at [\d.]+ Å\): "
                                        r"REMEDY$"):
        check_isolated(data, 5.0, "5 Å")
    boxed = ase.Atoms(numbers=raw["Z"][0], positions=raw["R"][0], pbc=True)
    boxed.center(vacuum=6.0)
    boxed.calc = SinglePointCalculator(boxed, energy=raw["E"][0], forces=raw["F"][0])
    ase.io.write(tmp_path / "box.extxyz", boxed)
    check_isolated(load_ase(tmp_path / "box.extxyz"), 5.0, "5 Å")
    with pytest.raises(DataError, match=r"frame\(s\) have atoms within 12.5 Å"):
        check_isolated(load_ase(tmp_path / "box.extxyz"), 12.5, "12.5 Å")
    flat = ase.Atoms(numbers=raw["Z"][0], positions=raw["R"][0], cell=[6.0, 0.0, 8.0], pbc=True)
    flat.calc = SinglePointCalculator(flat, energy=raw["E"][0])
    ase.io.write(tmp_path / "flat.extxyz", flat)
    with pytest.raises(DataError, match=r"flat.extxyz: frame 0: pbc T T T but the cell .* spans no volume"):
        load_ase(tmp_path / "flat.extxyz")


def test_npz_cell_is_read_so_training_batches_npz_and_extxyz_cells_alike(tmp_path, raw):
    """An .npz with a 'cell' key was read as isolated molecules on main, the cell dropped without a word, while the
    same frames in an extxyz were refused. The cell ((3, 3) or per frame, optional 'pbc') is read into Dataset.cell:
    the trainer batches both files alike, as periodic cells with their images; a slab (pbc along two directions)
    is refused with its remedy, and a vacuum box wider than the reach loads and batches."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from physnetjax import PhysNet
    from physnetjax.train.batching import batch_shapes

    frames = {k: raw[k][:8] for k in ("R", "Z", "N", "E", "F")}
    images = []
    for k in range(8):
        atoms = ase.Atoms(numbers=frames["Z"][k], positions=frames["R"][k], cell=[6.0, 7.0, 8.0], pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=frames["E"][k], forces=frames["F"][k])
        images.append(atoms)
    ase.io.write(tmp_path / "tight.extxyz", images)
    write(tmp_path, {**frames, "cell": np.diag([6.0, 7.0, 8.0])}, "tight.npz")
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=5.0,
                    max_atomic_number=8)
    tight = [load_dataset(tmp_path / name) for name in ("tight.extxyz", "tight.npz")]
    np.testing.assert_array_equal(tight[0].cell, tight[1].cell)
    shapes = [batch_shapes(data, model, 2) for data in tight]
    assert shapes[0] == shapes[1] and shapes[0].periodic
    isolated = batch_shapes(dataclasses.replace(tight[0], cell=np.zeros((8, 3, 3))), model, 2)
    assert not isolated.periodic and isolated.edges < shapes[0].edges  # the images' pairs are counted

    pbc = np.array([[True, True, False]] * 4 + [[False, False, False]] * 4)
    data = load_npz(write(tmp_path, {**frames, "box": np.diag([6.0, 7.0, 8.0]), "pbc": pbc}, "slab.npz"))
    np.testing.assert_array_equal(data.cell, [np.diag([6.0, 7.0, 0.0])] * 4 + [np.zeros((3, 3))] * 4)
    with pytest.raises(DataError, match=r"^4 frame\(s\) are periodic along one or two directions only \(e\.g\. "
                                        r".*slab.npz\[0\], pbc \[True, True, False\]\): .* at least 5 Å of vacuum"):
        batch_shapes(data, model, 2)
    vacuum = np.broadcast_to(np.diag([30.0, 31.0, 32.0]), (8, 3, 3))
    with warnings_as_errors():
        data = load_npz(write(tmp_path, {**frames, "Lattice": vacuum}, "vacuum.npz"))
    np.testing.assert_array_equal(data.cell, vacuum)
    assert batch_shapes(data, model, 2).molecules == 2

    for extra, message in (({"cell": np.eye(3)[:2]}, r"key 'cell' has shape \(2, 3\) \(float64\), expected numbers "
                                                      r"of shape \(3, 3\) or \(8, 3, 3\)"),
                           ({"lattice": np.zeros((8, 9))}, r"key 'lattice' has shape \(8, 9\)"),
                           ({"box": np.eye(3), "pbc": np.ones(2, bool)}, r"key 'pbc' has shape \(2,\), expected "
                                                                        r"\(3,\) or \(8, 3\)"),
                           ({"box": np.eye(3), "pbc": np.full(3, 2)}, r"key 'pbc' must hold True/False"),
                           ({"pbc": np.ones(3, bool)}, r"key 'pbc' marks periodic directions but the file holds no "
                                                      r"cell"),
                           ({"cell": np.eye(3), "box": np.eye(3)}, r"several cell or pbc keys \['cell', 'box'\]"),
                           ({"box": np.eye(3), "pbc": np.ones(3, bool), "PBC": np.ones(3, bool)},
                            r"several cell or pbc keys \['box', 'pbc', 'PBC'\]"),
                           ({"box": np.eye(3), "pbc": np.array([1, 0, 2])}, r"key 'pbc' must hold True/False"),
                           ({"pbc": np.array([True, False, False])}, r"key 'pbc' marks periodic directions"),
                           ({"cell": np.where((np.arange(8) == 3)[:, None, None] & (np.eye(3) == 1), np.nan,
                                              10.0 * np.eye(3))}, r"key 'cell' has NaN or Inf in frame\(s\) 3$"),
                           ({"cell": np.diag([6.0, 0.0, 8.0])}, r"frame 0: pbc T T T but the cell .* spans "
                                                                r"no volume")):
        with pytest.raises(DataError, match=r"bad.npz: " + message):
            load_npz(write(tmp_path, {**frames, **extra}))
    assert not load_npz(write(tmp_path, {**frames, "pbc": np.zeros(3, bool)})).cell.any()


def test_virial_labels_warn_stress_is_read_and_atomic_charges_give_the_total_charge(tmp_path, raw):
    """On main an extxyz stress= or virial= entry and a per-atom charge column (ASE's 'charges' result) were
    dropped without a word: a cation whose file carried only its atomic charges was trained as neutral. The stress
    is read now (a label of periodic frames); a virial warns, naming the stress to give instead."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    n = int(raw["N"][0])
    charges = np.full(n, 1.0 / n)
    atoms = ase.Atoms(numbers=raw["Z"][0, :n], positions=raw["R"][0, :n], cell=[30.0] * 3, pbc=True)
    atoms.info["virial"] = np.zeros((3, 3))
    stress = np.array([1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3])
    atoms.calc = SinglePointCalculator(atoms, energy=raw["E"][0], forces=raw["F"][0, :n], stress=stress,
                                       charges=charges)
    ase.io.write(tmp_path / "stress.extxyz", atoms)
    with pytest.warns(PhysNetInputWarning, match=r"stress.extxyz: label-like keys not read: 'virial' \(frames 0\);"
                                                 r".* a virial W is not read: give the stress σ = -W / V\); "
                                                 r"to read the labels meant as these, map them with --keys "
                                                 r"PHYSNET_KEY=NAME \(e.g. --keys E=energies F=forces\), or rename "
                                                 r"them in the file$"):
        data = load_ase(tmp_path / "stress.extxyz")
    assert data.has_Q[0] and data.Q[0] == pytest.approx(1.0)
    assert data.has_S[0]
    from ase.stress import voigt_6_to_full_3x3_stress

    np.testing.assert_array_equal(data.S[0], voigt_6_to_full_3x3_stress(stress))  # ASE's own Voigt → 3×3
    atoms.info["charge"] = 1.0  # the same total twice: read
    ase.io.write(tmp_path / "agree.extxyz", atoms)
    with pytest.warns(PhysNetInputWarning, match="'virial'"):
        assert load_ase(tmp_path / "agree.extxyz").Q[0] == pytest.approx(1.0)
    atoms.info["charge"] = 0.0
    ase.io.write(tmp_path / "both.extxyz", atoms)
    with pytest.raises(DataError, match=r"both.extxyz: frame 0: atoms.info\['charge'\] = 0 differs from the sum 1 "
                                        r"of the calculator's atomic 'charges'"):
        load_ase(tmp_path / "both.extxyz")
    stress_only = atoms.copy()
    stress_only.calc = SinglePointCalculator(stress_only, stress=np.zeros(6))
    ase.io.write(tmp_path / "only.extxyz", stress_only)
    with pytest.raises(DataError, match=r"only.extxyz: no frame carries an energy or forces.*'virial' \(frames 0\)"):
        load_ase(tmp_path / "only.extxyz")


def test_positions_in_bohr_warn_and_angstrom_do_not(tmp_path, raw):
    """Bohr read as Å keeps E, F (per bohr) and D mutually consistent, so on main nothing noticed the stretched
    molecules; the covalent-radius ratio (~1.0 in Å) is 1.89 for them."""
    bohr_in_angstrom = 0.529177210903
    stretched = dict(raw, R=raw["R"] / bohr_in_angstrom, F=raw["F"] * bohr_in_angstrom)
    with pytest.warns(UserWarning, match=r"'R': atoms sit 1\.9\d× the covalent bond length .* are they in bohr"):
        load_npz(write(tmp_path, stretched, "bohr.npz"))
    hydrogen = {"R": np.array([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.74 / bohr_in_angstrom]]]), "Z": np.array([[1, 1]]),
                "E": np.array([-31.7])}  # a diatomic in bohr, the smallest molecule the check judges
    with pytest.warns(UserWarning, match=r"'R': atoms sit 2\.\d+× the covalent bond length .* are they in bohr"):
        load_npz(write(tmp_path, hydrogen, "h2.npz"))
    with warnings_as_errors():
        for path in (DATA, bundled_dataset_path(), Path(__file__).parent / "data" / "neighbors_mixed.npz"):
            load_dataset(path)


def test_positions_in_nm_and_pm_are_named_as_such(tmp_path, raw):
    """Positions in nm read as Å were refused as "atoms closer than 0.1 Å ... (overlapping atoms: remove these
    frames)", frame after frame; positions in pm warned "are they in bohr (multiply by 0.529177)?", a remedy that
    leaves them 53× too far apart."""
    in_nm = dict(raw, R=raw["R"] / 10.0, F=raw["F"] * 10.0)
    with pytest.raises(DataError, match=r"atoms closer than 0.1 Å .*atoms sit 0\.1\d× the covalent bond length .*"
                                        r"are they in nm \(multiply by 10\)\?$") as error:
        load_npz(write(tmp_path, in_nm, "nm.npz"))
    assert "remove these frames" not in str(error.value)
    in_pm = dict(raw, R=raw["R"] * 100.0, F=raw["F"] / 100.0)
    with pytest.warns(UserWarning, match=r"'R': atoms sit \d+\.\d\d× the covalent bond length .* are they in pm "
                                         r"\(multiply by 0.01\)\?") as caught:
        load_npz(write(tmp_path, in_pm, "pm.npz"))
    assert not any("bohr (multiply" in str(w.message) for w in caught)
    overlapping = dict(raw, R=raw["R"].copy())
    overlapping["R"][3, 1] = overlapping["R"][3, 0] + 0.05  # one frame with an overlap: the frame is at fault
    with pytest.raises(DataError, match=r"atoms closer than 0.1 Å in frame\(s\) 3;.*\(overlapping atoms: remove "
                                        r"these frames\)$"):
        load_npz(write(tmp_path, overlapping, "overlap.npz"))


def test_a_structure_in_nm_is_named_as_such():
    from physnetjax.validation import validate_structure

    z = np.array([8, 1, 1])
    r = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    with pytest.raises(PhysNetInputError, match=r"atoms sit 0\.1\d× the covalent bond length .*are they in nm "
                                                r"\(multiply by 10\)\?"):
        validate_structure(z, r / 10.0, 10)
    with pytest.raises(PhysNetInputError, match=r"check the coordinates \(units Å, duplicated atoms"):
        validate_structure(np.array([8, 1, 1, 1]), np.vstack([r, r[1] + 0.01]), 10)


def test_frames_without_a_charge_beside_charged_ones_warn(tmp_path, raw):
    """The total charge is a model input: on main the frames of a file without 'Q' joined to cations were
    trained as neutral silently (and the extxyz frames lacking info['charge'] likewise)."""
    cations = dict(raw, Q=np.ones(64))
    plain = dict({k: raw[k][:3] for k in ("Z", "N", "E", "F")}, R=raw["R"][:3] + 0.01)
    paths = [write(tmp_path, cations, "cations.npz"), write(tmp_path, plain, "unknown.npz")]
    with pytest.warns(UserWarning, match=r"3 frame\(s\) carry no total charge .*\(frames 64, 65, 66, e.g. .*unknown.npz\[0\]"
                                         r"\), while 64 carry a non-zero one \(e.g. 1 e in .*cations.npz\[0\]\)"):
        data = load_dataset(paths)
    np.testing.assert_array_equal(data.Q[64:], 0.0)
    with warnings_as_errors():
        load_dataset([DATA, paths[1]])  # known charges all 0: the unknown ones are as good as neutral


@pytest.mark.parametrize("value, line", [(True, "charge=T"), (np.array([0, 1, 2]), 'charge="0 1 2"'),
                                         ("abc", "charge=abc")])
def test_an_extxyz_charge_that_is_not_one_number_is_refused(tmp_path, value, line):
    """charge=T was read as a total charge of +1 e (and trained as such with --charges); "0 1 2" and "abc" ended in
    a raw TypeError or ValueError that named neither the file nor the frame."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], info={"charge": value})
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((3, 3)))
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, atoms)
    assert line in path.read_text()
    with pytest.raises(DataError, match=r"frames.extxyz: frame 0: info 'charge' must be one number, the total charge "
                                        r"in e, received "):
        load_dataset(path)


@pytest.mark.parametrize("header, match", [
    ("energy=abc", r"key 'energy' frame 1: must be a number, received 'abc'"),
    ("energy=T", r"key 'energy' frame 1: must be a number, received (np\.)?(True|bool)"),
    ('energy=-1.0 dipole="0.1 0.2"', r"key 'dipole' frame 1: expected shape \(3,\), received \(2,\)"),
])
def test_an_extxyz_label_that_is_not_numbers_names_file_and_frame(tmp_path, header, match):
    """energy=abc ended in 'could not convert string to float: 'abc'', naming neither the file nor the frame;
    energy=T was read as 1 eV."""
    good = "3\nProperties=species:S:1:pos:R:3 energy=-1.0\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"
    path = tmp_path / "frames.extxyz"
    path.write_text(good + good.replace("energy=-1.0", header))
    with pytest.raises(DataError, match=r"frames\.extxyz: " + match):
        load_dataset(path)


def test_the_heaviest_element_is_read(tmp_path, raw):
    """Z = 118 is in range (a sweep found only 119 and beyond tested)."""
    heavy = raw["Z"].copy()
    heavy[:, 8] = 118
    assert (load_npz(write(tmp_path, {**raw, "Z": heavy}, "og.npz")).Z[:, 8] == 118).all()


def test_a_one_frame_file_is_read_and_a_non_integer_atomic_number_names_its_frame(tmp_path, raw):
    """Gaps of a sweep of load_npz: no test read a file of one frame or of one atom per frame (refusing either as "no
    frames or no atoms" passed), nor one whose non-integer atomic number sits in a later frame than the first."""
    one = load_npz(write(tmp_path, {key: value[3:4] for key, value in raw.items()}, "one.npz"))
    assert len(one) == 1
    np.testing.assert_array_equal(one.R[0], raw["R"][3])
    assert one.E[0] == raw["E"][3]
    isolated = {"R": np.zeros((2, 1, 3)), "Z": np.array([[1], [8]]), "E": np.array([-13.6, -2041.0]),
                "F": np.zeros((2, 1, 3))}
    atoms = load_npz(write(tmp_path, isolated, "atoms.npz"))
    assert atoms.R.shape == (2, 1, 3) and atoms.E.tolist() == [-13.6, -2041.0]
    z = raw["Z"].astype(np.float64)
    z[3, 4] = 6.5
    with pytest.raises(DataError, match=r"key 'Z' frame 3: atomic numbers must be integers, received \[.*6\.5"):
        load_npz(write(tmp_path, {**raw, "Z": z}))


def test_total_charges_are_read_in_e_whatever_the_energy_unit(tmp_path, raw):
    """Q is no energy: a file in kcal/mol keeps its cations' +1 e (a sweep found no test reading a charged npz
    frame's Q beside a unit conversion)."""
    charges = np.where(np.arange(len(raw["E"])) % 2, 1.0, 0.0)
    data = load_npz(write(tmp_path, {**raw, "E": raw["E"] / KCAL_PER_MOL_IN_EV, "Q": charges}, "cations.npz"),
                    energy_unit="kcal/mol")
    np.testing.assert_array_equal(data.Q, charges)
    np.testing.assert_allclose(data.E, raw["E"], rtol=1e-13)


def test_float32_energies_are_judged_at_their_largest_magnitude_in_ev(tmp_path, raw):
    """The warning of energies rounded by float32 looks at the largest |E| (one frame of -1e5 eV among ethanol's
    -310 eV), and at the spacing in eV: -23,310 kcal/mol (1011 eV) lie 0.002 kcal/mol = 8.5e-5 eV apart in
    float32, below the 1e-4 eV it allows; the same numbers in eV, 0.002 eV apart, are not."""
    one_large = raw["E"].copy()
    one_large[5] = -1e5
    with pytest.warns(PhysNetInputWarning, match=r"key 'E' is float32: at \|E\| up to 100000 .* 0\.0078 eV apart"):
        load_npz(write(tmp_path, {**raw, "E": one_large.astype(np.float32)}))
    kcal = (raw["E"] - 23000.0).astype(np.float32)
    with warnings_as_errors():
        load_npz(write(tmp_path, {**raw, "E": kcal}, "kcal.npz"), energy_unit="kcal/mol")
    with pytest.warns(PhysNetInputWarning, match=r"key 'E' is float32: at \|E\| up to 2330\d\.\d .* 0\.002 eV apart"):
        load_npz(write(tmp_path, {**raw, "E": kcal}, "ev.npz"))


def test_precision_and_charges_lost_before_reading_are_named(tmp_path, raw):
    """From a data-reader probe: energies of -1e5 eV stored as float32 (7.8 meV steps), fractional total charges
    (summed partial charges), Z + 2**32 (wrapped to Z by the int32 cast), an upper-case .NPZ (read by ASE, which
    failed) and one path given twice as the same object were all taken without a word."""
    with pytest.warns(PhysNetInputWarning, match=r"key 'E' is float32: at \|E\| up to 100\d{3}.* its values lie "
                                                 r"0\.0078 eV apart.*store energies as float64"):
        load_npz(write(tmp_path, {**raw, "E": (raw["E"] - 1e5).astype(np.float32)}))
    with warnings_as_errors():  # ethanol's -300 eV in float32: 3e-5 eV steps, fine
        load_npz(write(tmp_path, {**raw, "E": raw["E"].astype(np.float32)}))
    with pytest.warns(PhysNetInputWarning, match=r"total charges that are not whole numbers of e in 64 frame\(s\) "
                                                 r"\(frames 0, 1, 2, 3, 4 \(and 59 more\), e\.g\. 0\.45 e in"):
        load_dataset(write(tmp_path, {**raw, "Q": np.full(len(raw["E"]), 0.45)}))
    with pytest.raises(DataError, match=r"key 'Z' has atomic numbers outside \[0, 118\] in frame\(s\) 0, 1, 2"):
        load_npz(write(tmp_path, {**raw, "Z": raw["Z"].astype(np.int64) + 2**32}))
    upper = tmp_path / "SIX.NPZ"
    with open(upper, "wb") as handle:  # np.savez would add ".npz" to the name
        np.savez(handle, **raw)
    assert load_dataset(upper).R.shape == raw["R"].shape
    with pytest.warns(PhysNetInputWarning, match=r"is given twice"):
        load_dataset([upper, upper])


def test_atomic_charges_give_or_check_the_total_charge(tmp_path):
    """data.generate writes atomic charges 'Qa': an anion's file without 'Q' was read as neutral (eval: energy
    MAE 2.2 eV instead of 0.5), and one with Q = 0 beside Qa summing to -1 e read as neutral too, without a word;
    an extxyz frame's info['charge'] = 0 beside initial charges summing to -1 e likewise (the calculator and MD
    warn about that conflict)."""
    import ase
    import ase.io

    r = np.array([[[0.0, 0.0, 0.0], [0.97, 0.0, 0.0], [0.0, 0.0, 0.0]]] * 2)
    r[1, 1, 0] = 0.99
    z = np.array([[8, 1, 0]] * 2)
    qa = np.array([[-1.3, 0.3, 0.0], [-1.25, 0.25, 0.7]])  # the padded slot's value is not an atom's
    base = dict(R=r, Z=z, N=np.array([2, 2]), E=np.array([-100.0, -100.1]), Qa=qa)
    np.savez(tmp_path / "anion.npz", **base)
    data = load_npz(tmp_path / "anion.npz")
    np.testing.assert_allclose(data.Q, [-1.0, -1.0], atol=1e-12)
    assert data.has_Q.all()
    np.savez(tmp_path / "contradicting.npz", **base, Q=np.array([-1.0, 0.0]))
    with pytest.raises(DataError, match=r"key 'Q' \(total charge\) differs from the sum of the atomic charges 'Qa' "
                                        r"in 1 frame\(s\) \(e\.g\. frame 1: Q = 0 e, ΣQa = -1 e\)"):
        load_npz(tmp_path / "contradicting.npz")
    atoms = ase.Atoms("OH", positions=r[0, :2], charges=[-1.3, 0.3])
    atoms.info["charge"] = 0
    atoms.info["energy"] = -100.0
    ase.io.write(tmp_path / "anion.extxyz", atoms)
    with pytest.raises(DataError, match=r"frame 0: atoms\.info\['charge'\] = 0 differs from the sum -1 of the "
                                        "initial charges"):
        load_dataset(tmp_path / "anion.extxyz")
    atoms.set_initial_charges([-1.0, 0.0])  # one atom's initial charge left at 0: still compared
    ase.io.write(tmp_path / "anion.extxyz", atoms)
    with pytest.raises(DataError, match=r"atoms\.info\['charge'\] = 0 differs from the sum -1 of the initial"):
        load_dataset(tmp_path / "anion.extxyz")
    atoms.info["charge"] = -1
    for initial in ([-1.3, 0.3], [0.0, 0.0]):  # agreeing, or all 0 (ASE's default, no charges given): read
        atoms.set_initial_charges(initial)
        ase.io.write(tmp_path / "anion.extxyz", atoms)
        assert load_dataset(tmp_path / "anion.extxyz").Q[0] == pytest.approx(-1.0), initial


def test_frames_with_a_cell_but_pbc_cleared_whose_atoms_meet_their_images_warn_that_they_are_not_isolated(tmp_path,
                                                                                                          raw):
    """A bulk frame written with its cell but pbc=False (pbc cleared because training refuses periodic frames) was
    read as an isolated cluster without a word: a model trained on labels of a periodic calculation then fits image
    interactions it cannot see (probe: force MAE 0.235 against 0.077 eV/Å). Reading stays silent (the reader knows no
    cutoff); batching for training or eval warns with the model's reach, alike for extxyz and .npz, naming the frames
    and the first one's closest would-be image. Ethanol in a 30 Å box (images beyond the 5 Å cutoff) stays silent."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from physnetjax import PhysNet
    from physnetjax.train.batching import batch_shapes

    def frames(cell):
        out = []
        for k in range(3):
            n = int(raw["N"][k])
            atoms = ase.Atoms(numbers=raw["Z"][k, :n], positions=raw["R"][k, :n], cell=cell, pbc=False)
            atoms.calc = SinglePointCalculator(atoms, energy=raw["E"][k], forces=raw["F"][k, :n])
            out.append(atoms)
        return out

    cell = np.diag([6.0, 7.0, 8.0])
    n = int(raw["N"][0])
    r = raw["R"][0, :n]
    shifts = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)])
    closest = np.linalg.norm(r[:, None, None] - r[None, :, None] + (shifts @ cell)[None, None], axis=-1).min()
    assert closest < 5.0
    ase.io.write(tmp_path / "bulk.extxyz", frames(cell))
    write(tmp_path, {**{k: raw[k][:3] for k in ("R", "Z", "N", "E", "F")}, "cell": cell, "pbc": [False] * 3},
          "bulk.npz")
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=5.0,
                    max_atomic_number=8, charges=False, zbl=False, n_res=1)
    for name in ("bulk.extxyz", "bulk.npz"):
        with warnings_as_errors():
            data = load_dataset(tmp_path / name)
        assert not data.cell.any()
        with pytest.warns(PhysNetInputWarning) as caught:
            batch_shapes(data, model, 2)
        assert [str(w.message) for w in caught] == [
            "3 frame(s) carry a cell but pbc F F F, and their atoms would lie within 5 Å (the model's cutoff) of their "
            f"own periodic images were the cell periodic (frames 0, 1, 2; e.g. {tmp_path / name}[0], cell "
            f"[[6.0, 0.0, 0.0], [0.0, 7.0, 0.0], [0.0, 0.0, 8.0]] Å: closest image at {closest:.3g} Å): they are read "
            "as isolated clusters. If their labels come from a periodic calculation (a crystal, a liquid), these "
            "frames are not isolated and the model would fit image interactions it cannot see: set pbc True in the "
            "file (extxyz pbc=\"T T T\", .npz key pbc) to train and evaluate them as periodic cells"]
    ase.io.write(tmp_path / "boxed.extxyz", frames([30.0, 30.0, 30.0]))
    write(tmp_path, {**{k: raw[k][:3] for k in ("R", "Z", "N", "E", "F")}, "cell": np.eye(3) * 30.0, "pbc": [0, 0, 0]},
          "boxed.npz")
    for name in ("boxed.extxyz", "boxed.npz"):
        data = load_dataset(tmp_path / name)
        assert data.unused_cell.any()
        with warnings_as_errors():
            batch_shapes(data, model, 2)


def test_one_frame_whose_unused_cell_reaches_its_images_among_others_is_the_one_named(tmp_path, raw):
    """Among frames read as isolated (pbc F F F) whose cells keep the images out of reach, or that carry no cell, the
    one frame whose images would be in reach is counted, listed and given as the example, with its own cell and
    closest image (brute force over the 26 neighbouring images)."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from physnetjax.data.dataset import warn_unused_cells

    cells = [[30.0, 30.0, 30.0], None, [6.0, 7.0, 8.0], [30.0, 30.0, 30.0]]
    frames = []
    for k, cell in enumerate(cells):
        n = int(raw["N"][k])
        atoms = ase.Atoms(numbers=raw["Z"][k, :n], positions=raw["R"][k, :n], cell=cell, pbc=False)
        atoms.calc = SinglePointCalculator(atoms, energy=raw["E"][k], forces=raw["F"][k, :n])
        frames.append(atoms)
    ase.io.write(tmp_path / "mixed.extxyz", frames)
    with warnings_as_errors():
        data = load_ase(tmp_path / "mixed.extxyz")
    n = int(raw["N"][2])
    r = raw["R"][2, :n]
    shifts = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)])
    closest = np.linalg.norm(r[:, None, None] - r[None, :, None] + (shifts @ np.diag(cells[2]))[None, None],
                             axis=-1).min()
    with pytest.warns(PhysNetInputWarning) as caught:
        warn_unused_cells(data, 5.0, "5 Å")
    assert [str(w.message) for w in caught] == [
        "1 frame(s) carry a cell but pbc F F F, and their atoms would lie within 5 Å of their own periodic images were "
        f"the cell periodic (frames 2; e.g. {tmp_path / 'mixed.extxyz'}[2], cell "
        f"[[6.0, 0.0, 0.0], [0.0, 7.0, 0.0], [0.0, 0.0, 8.0]] Å: closest image at {closest:.3g} Å): they are read as "
        "isolated clusters. If their labels come from a periodic calculation (a crystal, a liquid), these frames are "
        "not isolated and the model would fit image interactions it cannot see: set pbc True in the file (extxyz "
        "pbc=\"T T T\", .npz key pbc) to train and evaluate them as periodic cells"]
