"""Label plausibility before training (physnetjax.data.sanity): force scale, force sign and E/F unit mismatch.

On main each of these data sets trained silently. The reference labels are the
bundled GFN2-xTB ethanol trajectory (consistent by construction: E and F = −dE/dR
from the same calculator); the faulty sets are made from it by the mistakes named.
"""

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.data.sanity import check_label_sanity, energy_force_slope, force_virial, nearest_frame_pairs
from physnetjax.train.config import TrainConfig
from physnetjax.validation import PhysNetInputWarning

KCAL_PER_MOL_IN_EV = 4.184e3 / 6.02214076e23 / 1.602176634e-19


@pytest.fixture(scope="module")
def ethanol():
    data = load_dataset(bundled_dataset_path())
    keep = np.arange(300)  # consecutive frames, 10 fs apart
    return dataclasses.replace(data, **{f.name: getattr(data, f.name)[keep] for f in dataclasses.fields(data)})


def test_consistent_labels_pass_with_slope_one(ethanol):
    slope, correlation, pairs = energy_force_slope(ethanol)
    assert pairs >= 100 and correlation > 0.9 and abs(slope - 1) < 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_label_sanity(ethanol) == []


def test_flipped_force_sign_is_detected_and_force_sign_fixes_it(ethanol, tmp_path):
    flipped = dataclasses.replace(ethanol, F=-ethanol.F)
    with pytest.warns(PhysNetInputWarning, match=r"opposite sign .* s = -(0\.9|1\.0)\d* .*--force-sign -1"):
        check_label_sanity(flipped)
    path = tmp_path / "gradients.npz"
    np.savez(path, R=flipped.R, Z=flipped.Z, E=flipped.E, F=flipped.F)
    fixed = load_dataset(path, force_sign=-1)
    np.testing.assert_array_equal(fixed.F, ethanol.F)
    assert TrainConfig(force_sign=-1).force_sign == -1
    with pytest.raises(ValueError, match="force_sign"):
        TrainConfig(force_sign=2)


def test_kcal_per_mol_read_as_ev_is_detected(ethanol):
    both = dataclasses.replace(ethanol, E=ethanol.E / KCAL_PER_MOL_IN_EV, F=ethanol.F / KCAL_PER_MOL_IN_EV)
    with pytest.warns(PhysNetInputWarning) as record:
        check_label_sanity(both)
    messages = " | ".join(str(w.message) for w in record)
    assert re.search(r"RMS force component 2\d\.\d eV/Å is implausibly large", messages)
    assert "energies scatter" not in messages  # 0.015 eV/atom × 23 = 0.34: within the plausible range


def test_kj_per_mol_energies_without_forces_are_detected(ethanol):
    """Only energies, in kJ/mol read as eV: the scatter about the per-element fit is 96× that of eV data."""
    energies = dataclasses.replace(ethanol, E=ethanol.E * 96.485, has_F=np.zeros(len(ethanol), bool))
    with pytest.warns(PhysNetInputWarning, match=r"energies scatter by 1\.\d+ eV/atom .* --energy-unit"):
        check_label_sanity(energies)
    forces_only = dataclasses.replace(ethanol, F=ethanol.F / KCAL_PER_MOL_IN_EV)
    with pytest.warns(PhysNetInputWarning) as record:   # kcal/mol forces: too large, and not -dE/dR in scale
        check_label_sanity(forces_only)
    messages = " | ".join(str(w.message) for w in record)
    assert re.search(r"do not match in scale: .* s = 0\.04\d", messages)
    assert re.search(r"RMS force component 2\d\.\d eV/Å is implausibly large", messages)


def test_nearest_pairs_respect_the_displacement_limit():
    positions = np.zeros((3, 2, 3))
    positions[1, :, 0] = 0.1  # RMS 0.1 Å from frame 0
    positions[2, :, 0] = 5.0  # far from both
    assert nearest_frame_pairs(positions, 0.3).tolist() == [[0, 1]]


def test_gradients_without_nearby_frames_are_detected_by_the_virial():
    """64 frames 30 fs apart have no nearby pairs, so on main flipped forces (gradients) trained silently; their
    virial Σ (R − R̄)·F averages about +3(N−1) k_B T instead of −3(N−1) k_B T (−1.03 eV for ethanol at 500 K)."""
    data = load_dataset(Path(__file__).parent / "data" / "train_ethanol64.npz")
    assert energy_force_slope(data) is None
    mean, error, frames = force_virial(data)
    assert frames == 64 and mean < -3 * error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_label_sanity(data) == []
    flipped = dataclasses.replace(data, F=-data.F)
    with pytest.warns(PhysNetInputWarning, match=r"push the atoms apart .* averages \+2\.\d+ ± .*--force-sign -1"):
        check_label_sanity(flipped)


def test_hartree_per_bohr_forces_read_as_ev_per_angstrom_are_detected(ethanol):
    """Ha/bohr forces of the 500 K set read as eV/Å have an RMS of 0.019 eV/Å: above main's 0.01 eV/Å bound."""
    hartree_in_ev, bohr_in_angstrom = 27.211386245988, 0.529177210903
    atomic = dataclasses.replace(ethanol, E=ethanol.E / hartree_in_ev, F=ethanol.F * bohr_in_angstrom / hartree_in_ev)
    with pytest.warns(PhysNetInputWarning, match=r"RMS force component 0\.01\d+ eV/Å is implausibly small"):
        check_label_sanity(atomic)
