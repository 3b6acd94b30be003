"""Label plausibility before training (physnetjax.data.sanity): force scale, force sign and E/F unit mismatch.

On main each of these data sets trained silently. The reference labels are the
bundled GFN2-xTB ethanol trajectory (consistent by construction: E and F = −dE/dR
from the same calculator), DFT frames of a DNA base (tests/data/dft_base_t_pairs.npz:
the 97 of 100 frames of the shared reference set basepairs/t.npz that have a neighbour
within 0.3 Å RMS, positions and forces rounded to float32) and a Morse triatomic
written here; the faulty sets are made from them by the mistakes named.
"""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import warnings_as_errors

from physnetjax import units
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.data.sanity import (
    ENERGY_FORCE_SLIPS,
    MAX_PAIR_RMSD,
    QUANTITY_SLIPS,
    check_label_sanity,
    energy_force_slope,
    force_virial,
    likely_unit_slip,
    nearest_frame_pairs,
    nearest_slip,
    read_ratios,
    weighted_slope,
)
from physnetjax.train.config import TrainConfig
from physnetjax.validation import PhysNetInputWarning

KCAL_PER_MOL_IN_EV = 4.184e3 / 6.02214076e23 / 1.602176634e-19
HARTREE_IN_EV, BOHR_IN_ANGSTROM = 27.211386245988, 0.529177210903
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def ethanol():
    data = load_dataset(bundled_dataset_path())
    keep = np.arange(300)  # consecutive frames, 10 fs apart
    return dataclasses.replace(data, **{f.name: getattr(data, f.name)[keep] for f in dataclasses.fields(data)})


def test_consistent_labels_pass_with_slope_one(ethanol):
    fit = energy_force_slope(ethanol)
    assert fit.pairs >= 20 and fit.correlation > 0.9 and abs(fit.slope - 1) < 0.1 and fit.error < 0.1
    with warnings_as_errors():
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
    assert re.search(r"do not match in scale, as for energies in eV with forces in kcal/mol/Å: .* s = 0\.04\d",
                     messages)
    assert re.search(r"RMS force component 2\d\.\d eV/Å is implausibly large", messages)


def test_nearest_pairs_respect_the_displacement_limit():
    positions = np.zeros((4, 2, 3))
    positions[1, :, 0] = 0.1  # RMS 0.1 Å from frame 0
    positions[2, :, 0] = 5.0  # far from both
    positions[3] = positions[2]  # a copy of frame 2 is not a pair
    pairs, rmsd = nearest_frame_pairs(positions, 0.3)
    assert pairs.tolist() == [[0, 1]]
    np.testing.assert_allclose(rmsd, [0.1])


def test_gradients_without_nearby_frames_are_detected_by_the_virial():
    """64 frames 30 fs apart have no nearby pairs, so on main flipped forces (gradients) trained silently; their
    virial Σ (R − R̄)·F averages about +3(N−1) k_B T instead of −3(N−1) k_B T (−1.03 eV for ethanol at 500 K)."""
    data = load_dataset(DATA / "train_ethanol64.npz")
    assert energy_force_slope(data) is None
    mean, error, frames = force_virial(data)
    assert frames == 64 and mean < -3 * error
    with warnings_as_errors():
        assert check_label_sanity(data) == []
    flipped = dataclasses.replace(data, F=-data.F)
    with pytest.warns(PhysNetInputWarning, match=r"push the atoms apart .* averages \+2\.\d+ ± .*--force-sign -1"):
        check_label_sanity(flipped)


def test_hartree_per_bohr_forces_read_as_ev_per_angstrom_are_detected(ethanol):
    """Ha/bohr forces of the 500 K set read as eV/Å have an RMS of 0.019 eV/Å: above main's 0.01 eV/Å bound."""
    atomic = dataclasses.replace(ethanol, E=ethanol.E / HARTREE_IN_EV, F=ethanol.F * BOHR_IN_ANGSTROM / HARTREE_IN_EV)
    with pytest.warns(PhysNetInputWarning, match=r"RMS force component 0\.01\d+ eV/Å is implausibly small .*"
                                                 r"in the units given; .*explain it: hartree/bohr read as eV/Å "
                                                 r"\(×51\.4: RMS 0\.9\d eV/Å\)"):
        check_label_sanity(atomic)


def test_eV_forces_read_as_kcal_per_mol_name_that_slip_first(ethanol):
    """eV data given --energy-unit kcal/mol read 23× too small. The hint was a fixed 'hartree/bohr read as eV/Å:
    pass --energy-unit hartree', which would make them smaller still; it now names every slip that brings the RMS
    into 0.3-3 eV/Å, either way round, the one nearest 1 eV/Å first."""
    slipped = dataclasses.replace(ethanol, E=ethanol.E * KCAL_PER_MOL_IN_EV, F=ethanol.F * KCAL_PER_MOL_IN_EV)
    with pytest.warns(PhysNetInputWarning) as record:
        check_label_sanity(slipped)
    message = next(str(w.message) for w in record if "RMS force component" in str(w.message))
    slips = message.split("explain it: ")[1]
    assert slips.startswith("eV/Å read as kcal/mol/Å (×23.1: RMS 0.9")
    assert "hartree/bohr read as eV/Å (×51.4" in slips and "pass --energy-unit hartree" not in message
    too_large = dataclasses.replace(ethanol, F=ethanol.F / KCAL_PER_MOL_IN_EV)
    with pytest.warns(PhysNetInputWarning) as record:
        check_label_sanity(too_large)
    message = next(str(w.message) for w in record if "RMS force component" in str(w.message))
    assert message.split("explain it: ")[1].startswith("kcal/mol/Å read as eV/Å (×0.0434: RMS 0.9")



MORSE_MINIMUM = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-0.3, 0.95, 0.0]])


def _morse(positions):
    """(E, F = −dE/dR) of bent triatomics (M, 3, 3) in Å: E = Σ_{i<j} D (1 − exp(−a (r_ij − r0_ij)))², eV.

    D = 4 eV, a = 2 /Å, r0_ij the distances in :data:`MORSE_MINIMUM`.
    """
    energies = np.zeros(len(positions))
    forces = np.zeros_like(positions)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        length = np.linalg.norm(MORSE_MINIMUM[i] - MORSE_MINIMUM[j])
        bond = positions[:, i] - positions[:, j]
        r = np.linalg.norm(bond, axis=1)
        x = np.exp(-2.0 * (r - length))
        energies += 4.0 * (1.0 - x) ** 2
        gradient = (16.0 * x * (1.0 - x) / r)[:, None] * bond  # dE/dR_i = dE/dr · (R_i − R_j)/r
        forces[:, i] -= gradient
        forces[:, j] += gradient
    return energies, forces


def _morse_dataset(path, positions):
    """Dataset of :func:`_morse` labels of the triatomics ``positions`` (M, 3, 3) in Å, through an npz file."""
    energies, forces = _morse(positions)
    np.savez(path, R=positions, Z=np.tile(np.array([8, 1, 1], np.int8), (len(positions), 1)), E=energies, F=forces)
    return load_dataset(path)


def _morse_frames(path, spread, centres=4, frames_per_centre=50, seed=0):
    """:func:`_morse` frames scattered by ``spread`` Å per coordinate around ``centres`` geometries 0.1 Å (per
    coordinate) from the minimum."""
    rng = np.random.default_rng(seed)
    middles = MORSE_MINIMUM + rng.normal(0.0, 0.1, (centres, 1, 3, 3))
    positions = middles + rng.normal(0.0, spread, (centres, frames_per_centre, 3, 3))
    return _morse_dataset(path, positions.reshape(-1, 3, 3))


@pytest.fixture
def morse(tmp_path):
    return _morse_frames(tmp_path / "morse.npz", spread=0.02)


def test_morse_forces_are_minus_the_energy_gradient(morse):
    """The test potential is right (so s = 1 is the answer): its forces match central differences of its energy."""
    positions, delta = np.asarray(morse.R[:3], np.float64), 1e-6
    steps = np.zeros((9,) + positions.shape)
    steps.reshape(9, 3, 9)[np.arange(9), :, np.arange(9)] = delta
    numeric = np.stack([(_morse(positions + step)[0] - _morse(positions - step)[0]) / (2 * delta) for step in steps])
    np.testing.assert_allclose(-numeric.T.reshape(positions.shape), _morse(positions)[1], atol=1e-6)


def test_morse_frames_give_slope_one(morse):
    fit = energy_force_slope(morse)
    assert fit.pairs >= 50 and fit.correlation > 0.99 and abs(fit.slope - 1) < 0.02
    with warnings_as_errors():
        assert check_label_sanity(morse) == []


@pytest.mark.parametrize("energy_scale, force_scale, named", [
    (1.0, BOHR_IN_ANGSTROM, r"as for forces per bohr read as per Å .* s = 1\.8\d"),
    (1.0, 1 / KCAL_PER_MOL_IN_EV, r"as for energies in eV with forces in kcal/mol/Å: .* s = 0\.04\d"),
    (1 / KCAL_PER_MOL_IN_EV, 1.0, r"as for energies in kcal/mol with forces in eV/Å: .* s = 2[23](\.\d+)? ±"),
    (1 / HARTREE_IN_EV, 1.0, r"as for energies in hartree with forces in eV/Å: .* s = 0\.03\d"),
    (1 / HARTREE_IN_EV, BOHR_IN_ANGSTROM / HARTREE_IN_EV, r"as for forces per bohr read as per Å"),
    (1.0, 1.5, r"do not match in scale: .* s = 0\.6\d"),
    (1.0, 1 / 1.5, r"do not match in scale: .* s = 1\.[45]\d* ±"),
])
def test_unit_slips_of_morse_frames_are_named(morse, energy_scale, force_scale, named):
    """Energies and forces in units a factor 1.5 or more apart (here: the E and F of one file scaled apart)."""
    slipped = dataclasses.replace(morse, E=morse.E * energy_scale, F=morse.F * force_scale)
    with pytest.warns(PhysNetInputWarning, match=named + ".*--energy-unit and --force-unit"):
        check_label_sanity(slipped)


def test_slope_abstains_on_frames_far_apart(tmp_path):
    """Frames turned about a point 3 Å away have no pair within MAX_PAIR_RMSD (no alignment is made): no slope,
    whatever the units."""
    rng = np.random.default_rng(3)
    frames = MORSE_MINIMUM + [3.0, 0.0, 0.0] + rng.normal(0.0, 0.02, (40, 3, 3))
    turns = np.linalg.qr(rng.normal(size=(40, 3, 3)))[0]
    turns *= np.sign(np.linalg.det(turns))[:, None, None]  # proper rotations
    turned = _morse_dataset(tmp_path / "turned.npz", np.einsum("mij,maj->mai", turns, frames))
    assert nearest_frame_pairs(np.asarray(turned.R), 2 * MAX_PAIR_RMSD)[0].size == 0
    assert energy_force_slope(turned) is None
    assert energy_force_slope(dataclasses.replace(turned, F=turned.F * BOHR_IN_ANGSTROM)) is None


def test_forces_per_bohr_in_real_data_are_detected(ethanol):
    """eV/bohr forces (0.529× the eV/Å numbers) give s = 1.89: inside main's accepted range 0.5–2, so they trained
    silently."""
    per_bohr = dataclasses.replace(ethanol, F=ethanol.F * BOHR_IN_ANGSTROM)
    with pytest.warns(PhysNetInputWarning, match=r"as for forces per bohr read as per Å .* s = 1\.8\d"):
        check_label_sanity(per_bohr)


def test_dft_frames_up_to_point_three_angstrom_apart_give_slope_one():
    """DFT frames of a DNA base: pairs 0.15–0.3 Å apart carry a large trapezoid error (the plain least-squares
    slope over pairs up to 0.3 Å is 0.58); weighted towards the closest pairs the slope is 1, and eV/bohr is
    still found."""
    data = load_dataset(DATA / "dft_base_t_pairs.npz")
    fit = energy_force_slope(data)
    assert fit.correlation > 0.95 and abs(fit.slope - 1) < 0.1 and fit.effective_pairs >= 3
    with warnings_as_errors():
        assert check_label_sanity(data) == []
    with pytest.warns(PhysNetInputWarning, match=r"as for forces per bohr read as per Å .* s = 1\.8\d"):
        check_label_sanity(dataclasses.replace(data, F=data.F * BOHR_IN_ANGSTROM))


def test_queries_bound_the_pair_search():
    positions = np.cumsum(np.random.default_rng(0).normal(0.0, 0.01, (2000, 3, 3)), axis=0)  # a slow walk
    pairs, rmsd = nearest_frame_pairs(positions, max_queries=25)
    assert 0 < len(pairs) <= 25 and np.all(rmsd <= MAX_PAIR_RMSD)
    assert len(nearest_frame_pairs(positions)[0]) > 400


def test_likely_unit_slip_names_common_mixups():
    assert likely_unit_slip(1.89) == "forces per bohr read as per Å (e.g. eV/bohr, hartree/bohr)"
    assert likely_unit_slip(22.0) == "energies in kcal/mol with forces in eV/Å"
    assert likely_unit_slip(51.0) == "energies in eV with forces in hartree/bohr"
    assert likely_unit_slip(1.5) is None and likely_unit_slip(-1.0) is None
    assert likely_unit_slip(25.0, error=2.0) == ("energies in eV with forces in hartree/Å, or energies in kcal/mol "
                                                 "with forces in eV/Å")


SLIPS = [(quantity, name, c) for quantity, slips in QUANTITY_SLIPS.items() for name, c in slips]


@pytest.mark.parametrize("quantity, name, c", SLIPS, ids=[name for _, name, _ in SLIPS])
def test_each_unit_slip_is_named_by_its_ratio(quantity, name, c):
    """Labels in a slipped unit read 1/c × their right values; a ratio 10 % off still names the same slip."""
    for off in (1.0, 1.1, 1 / 1.1):
        assert nearest_slip(off / c, read_ratios(quantity)) == name


def test_a_ratio_no_slip_gives_names_none():
    assert nearest_slip(5.0, read_ratios("energies")) is None and nearest_slip(-23.06, read_ratios("energies")) is None


# The units a slip may name, by the names slips write, with their factors from the constants of physnetjax.units.
ENERGIES = {"eV": 1.0, "kcal/mol": units.KCAL_PER_MOL, "kJ/mol": units.KJ_PER_MOL, "hartree": units.HARTREE,
            "meV": 1e-3}
LENGTHS = {"Å": 1.0, "bohr": units.BOHR, "nm": 10.0}
DIPOLES = {"e·Å": 1.0, "Debye": units.DEBYE, "e·bohr": units.BOHR}


def _factor(unit: str) -> float:
    """A unit named by a slip (energy, energy/length or dipole) in eV, eV/Å or e·Å, from the tables above; it is
    also one the readers' --energy-unit, --force-unit and --dipole-unit accept, with that factor."""
    if unit in DIPOLES:
        assert units.dipole_factor(unit) == pytest.approx(DIPOLES[unit], rel=1e-12)
        return DIPOLES[unit]
    if unit in ENERGIES:
        assert units.energy_factor(unit) == pytest.approx(ENERGIES[unit], rel=1e-12)
        return ENERGIES[unit]
    energy, length = unit.rsplit("/", 1)
    assert units.force_factor(energy, length) == pytest.approx(ENERGIES[energy] / LENGTHS[length], rel=1e-12)
    return ENERGIES[energy] / LENGTHS[length]


def test_both_slip_tables_are_the_unit_tables_of_physnetjax_units():
    """Each unit --energy-unit, --force-unit and --dipole-unit accept is named by the slip tables: every energy unit
    (per Å for forces) read as eV in both, every length and dipole unit both ways; and each slip's ratio is the ratio
    of its units' factors, computed here. A unit added to physnetjax.units fails here until it is added above."""
    for table, named in ((units.ENERGY_UNITS, ENERGIES), (units.LENGTH_UNITS, LENGTHS), (units.DIPOLE_UNITS, DIPOLES)):
        assert set(table.values()) == set(named.values())  # every accepted spelling is a unit named above
    read = {quantity: set() for quantity in QUANTITY_SLIPS}
    for quantity, slips in QUANTITY_SLIPS.items():
        for name, c in slips:
            labels, taken = name.split(" read as ")
            assert c == pytest.approx(_factor(labels) / _factor(taken), rel=1e-12), name
            read[quantity].add((labels, taken))
    assert {(unit, "eV") for unit in set(ENERGIES) - {"eV"}} <= read["energies"]
    assert {(f"{unit}/Å", "eV/Å") for unit in set(ENERGIES) - {"eV"}} <= read["forces"]
    assert {pair for length in set(LENGTHS) - {"Å"} for pair in ((f"eV/{length}", "eV/Å"), ("eV/Å", f"eV/{length}"))
            } | {("hartree/bohr", "eV/Å")} <= read["forces"]
    assert {pair for unit in set(DIPOLES) - {"e·Å"} for pair in ((unit, "e·Å"), ("e·Å", unit))} <= read["dipoles"]
    mixed, lengths = set(), set()
    for s, words in ENERGY_FORCE_SLIPS:
        if match := re.fullmatch(r"energies in (\S+) with forces in (\S+)", words):
            energy, force = match.groups()
            assert s == pytest.approx(_factor(force) / _factor(energy), rel=1e-12), words
            mixed.add((energy, force))
        elif match := re.fullmatch(r"forces per (\S+) read as per Å \(e\.g\. eV/\1, hartree/\1\)", words):
            assert s == pytest.approx(1.0 / LENGTHS[match[1]], rel=1e-12), words
            lengths.add((match[1], "Å"))
        else:
            length = re.fullmatch(r"forces per Å read as per (\S+), or positions in \1", words)[1]
            assert s == pytest.approx(LENGTHS[length], rel=1e-12), words
            lengths.add(("Å", length))
    assert {(one, f"{other}/Å") for one in ENERGIES for other in ENERGIES if one != other} <= mixed
    assert {(energy, "hartree/bohr") for energy in ENERGIES if energy != "hartree"} <= mixed
    assert {pair for length in set(LENGTHS) - {"Å"} for pair in ((length, "Å"), ("Å", length))} == lengths


def test_slips_named_before_the_tables_were_derived_are_still_named():
    names = {name for slips in QUANTITY_SLIPS.values() for name, _ in slips}
    assert {"kcal/mol read as eV", "kJ/mol read as eV", "hartree read as eV", "kcal/mol/Å read as eV/Å",
            "kJ/mol/Å read as eV/Å", "hartree/bohr read as eV/Å", "eV/bohr read as eV/Å", "eV/Å read as eV/bohr",
            "Debye read as e·Å", "e·Å read as Debye", "e·bohr read as e·Å"} <= names  # was "e·bohr (au) read as e·Å"
    words = {words for _, words in ENERGY_FORCE_SLIPS}
    units_before = ("eV", "hartree", "kcal/mol", "kJ/mol")
    assert {"forces per bohr read as per Å (e.g. eV/bohr, hartree/bohr)",
            "forces per Å read as per bohr, or positions in bohr"} <= words
    assert {f"energies in {one} with forces in {other}/Å" for one in units_before for other in units_before
            if one != other} <= words
    assert {f"energies in {one} with forces in hartree/bohr" for one in units_before if one != "hartree"} <= words


@pytest.mark.parametrize("mix_up", ["energies shifted by a frame", "forces shuffled", "two atoms' forces swapped"])
def test_energies_and_forces_of_other_frames_or_atoms_are_named(mix_up):
    """Energies shifted by one frame, forces shuffled across frames or two atoms' force rows swapped passed the
    label check, and the log called them 'consistent' (correlation 0.10, effective pairs 9-15; correct: 0.99)."""
    import dataclasses

    from physnetjax.data import bundled_dataset_path

    data = load_dataset(bundled_dataset_path()).subset(np.arange(300))
    with warnings_as_errors():
        assert check_label_sanity(data, "ethanol") == []
    mixed = {"energies shifted by a frame": dict(E=np.roll(data.E, 1)),
             "forces shuffled": dict(F=data.F[np.random.default_rng(0).permutation(len(data.E))]),
             "two atoms' forces swapped": dict(F=data.F[:, [1, 0, *range(2, data.F.shape[1])]])}[mix_up]
    with pytest.warns(PhysNetInputWarning, match=r"ethanol: the energies do not follow the forces: over \d+ pairs .*\("
                                                 r"correlation -?0\.\d\d.*are energies or forces shifted, shuffled"):
        check_label_sanity(dataclasses.replace(data, **mixed), "ethanol")


def test_energies_per_atom_are_named_as_such_not_as_a_force_unit():
    """Ethanol energies divided by the atom count (s = 0.111 = 1/9) were reported as 'forces per nm read as per Å',
    whose remedy (--force-unit eV/nm) would have divided the right forces by 10."""
    import dataclasses

    from physnetjax.data import bundled_dataset_path

    data = load_dataset(bundled_dataset_path()).subset(np.arange(300))
    with pytest.warns(PhysNetInputWarning) as caught:
        check_label_sanity(dataclasses.replace(data, E=data.E / data.N), "ethanol")
    messages = [str(w.message) for w in caught if issubclass(w.category, PhysNetInputWarning)]
    assert len(messages) == 1 and re.match(r"ethanol: the energies look like energies per atom: energy differences "
                                           r"are 1/9 of the work of the forces, and every frame has 9 atoms: .*s = "
                                           r"0\.111 .*store each frame's total energy \(E × N\)$", messages[0]), messages


def _two_files(tmp_path, second_edit, first_edit=None):
    """The bundled ethanol frames 0-299 and 300-599 as two files, ``second_edit(dict of arrays)`` applied to the
    second (and ``first_edit`` to the first): returns both paths."""
    raw = dict(np.load(bundled_dataset_path()))
    paths = []
    for name, frames, edit in (("first.npz", slice(0, 300), first_edit), ("second.npz", slice(300, 600),
                                                                           second_edit)):
        arrays = {key: raw[key][frames] for key in ("R", "Z", "E", "F")}
        np.savez(tmp_path / name, **(edit(arrays) if edit else arrays))
        paths.append(str(tmp_path / name))
    return paths


def _messages(paths):
    data = load_dataset(paths)
    with pytest.warns(PhysNetInputWarning) as caught:
        returned = check_label_sanity(data, ", ".join(paths))
    assert returned == [str(w.message) for w in caught if issubclass(w.category, PhysNetInputWarning)]
    return returned


def test_gradients_in_one_of_two_files_are_named_with_a_fix_for_that_file(tmp_path):
    """Pooled with a file of forces, a file of gradients (+dE/dR) passed the label check without a word: nearby
    frames of both files blurred the slope and the virial."""
    paths = _two_files(tmp_path, lambda a: dict(a, F=-a["F"]))
    messages = _messages(paths)
    assert len(messages) == 1 and re.match(
        rf"{re.escape(paths[1])}: the forces have the opposite sign of −dE/dR: .* s = -(0\.9|1\.0)\d* .*negate F in "
        r"this file \(--force-sign applies to every file given\)$", messages[0]), messages
    with warnings_as_errors():
        assert check_label_sanity(load_dataset(_two_files(tmp_path, None)), "both") == []


def test_a_file_in_kcal_per_mol_among_files_in_ev_is_named_not_the_pool(tmp_path):
    """The pooled advice was to pass --energy-unit kcal/mol, which would convert the file in eV as well."""
    paths = _two_files(tmp_path, lambda a: dict(a, E=a["E"] / KCAL_PER_MOL_IN_EV, F=a["F"] / KCAL_PER_MOL_IN_EV))
    messages = _messages(paths)
    forces = [m for m in messages if "RMS force component" in m]
    assert len(forces) == 1 and forces[0].startswith(f"{paths[1]}: RMS force component 2") and re.search(
        r"kcal/mol/Å read as eV/Å .*: convert this file to the units of the other files \(--energy-unit and "
        r"--force-unit apply to every file given\)$", forces[0]), messages
    assert not any(m.startswith(f"{paths[0]}:") or "pass --energy-unit and --force-unit" in m for m in messages)
    others = [m for m in messages if m not in forces]  # the energy offset between the files: the pool's only
    assert len(others) == 1 and "energies scatter" in others[0] and "no file shows this alone" in others[0], messages


def test_a_finding_of_every_file_is_reported_once_with_the_reading_option(tmp_path):
    kcal = lambda a: dict(a, E=a["E"] / KCAL_PER_MOL_IN_EV, F=a["F"] / KCAL_PER_MOL_IN_EV)  # noqa: E731
    paths = _two_files(tmp_path, kcal, kcal)
    messages = _messages(paths)
    assert len(messages) == 1 and messages[0].startswith(f"{', '.join(paths)}: RMS force component 2") and \
        messages[0].endswith("pass --energy-unit and --force-unit with the units the file holds"), messages


def test_files_that_differ_only_from_each_other_are_named_as_such(tmp_path):
    """Each file alone is consistent; their energies differ by 50 eV (another energy zero): only the pool shows it."""
    paths = _two_files(tmp_path, lambda a: dict(a, E=a["E"] + 50.0))
    messages = _messages(paths)
    assert len(messages) == 1 and re.match(
        rf"{re.escape(', '.join(paths))}: energies scatter by \d\.\d+ eV/atom .*\(no file shows this alone: do the "
        r"files differ in units, reference method or energy zero\?\)$", messages[0]), messages


def test_frames_by_file_keeps_the_order_files_were_given_in():
    from physnetjax.data.sanity import frames_by_file

    files = frames_by_file(["z.npz[0]", "a[1].xyz[0]", "z.npz[1]", "a[1].xyz[1]"])
    assert list(files) == ["z.npz", "a[1].xyz"]
    np.testing.assert_array_equal(files["z.npz"], [0, 2])
    np.testing.assert_array_equal(files["a[1].xyz"], [1, 3])


def test_two_charge_states_of_one_molecule_are_judged_apart(ethanol):
    """The same frames as an 'anion' 2.9 eV above (an electron affinity, with its own forces scaled by 0.8): pooled
    with the neutral ones, the slope fit paired frames across the two states (a formate probe with its radical:
    "the energies do not follow the forces", s = 0.84 ± 1.9) and the per-element energy fit took the ionisation
    energy for a unit slip ("energies scatter by 1.05 eV/atom ... kcal/mol read as eV")."""
    from physnetjax.data.sanity import energy_residual_per_atom

    mean = ethanol.E.mean()
    anion = dataclasses.replace(ethanol, E=mean + 2.9 + 0.8 * (ethanol.E - mean), F=0.8 * ethanol.F, Q=ethanol.Q - 1.0)
    both = dataclasses.replace(ethanol, **{f.name: np.concatenate([getattr(ethanol, f.name), getattr(anion, f.name)])
                                           for f in dataclasses.fields(ethanol)})
    fit = energy_force_slope(both)
    assert fit.correlation > 0.9 and abs(fit.slope - 1) < 0.1
    assert energy_residual_per_atom(both) < 2 * energy_residual_per_atom(ethanol)
    with warnings_as_errors():
        assert check_label_sanity(both) == []


def test_weighted_slope_counts_equal_pairs_as_pairs_and_one_dominant_pair_as_one():
    """Kish's effective number of pairs, (Σ u)² / Σ u² with u = w² / max(rmsd, floor)⁴: six pairs of equal weight
    count 6 and give the exact slope with correlation 1 and error 0; one pair 10× closer (10⁴× the weight) leaves
    1.001 effective pairs, and the fit abstains (None) rather than report a slope from it."""
    w = np.array([1.0, -1.0, 2.0, -2.0, 0.5, -0.5])
    rmsd = 0.2 * np.abs(w) ** 0.5  # u = w² / rmsd⁴ = 1 / 0.2⁴ for every pair
    fit = weighted_slope(rmsd, w, 0.7 * w)
    assert fit.effective_pairs == pytest.approx(6.0, rel=1e-12) and fit.pairs == 6
    assert fit.slope == pytest.approx(0.7, rel=1e-12) and fit.correlation == pytest.approx(1.0, rel=1e-12)
    assert fit.error == pytest.approx(0.0, abs=1e-12)
    closest_first = np.where(np.arange(6) == 0, 0.05, 0.5)  # u: 0.05⁻⁴ = 160000 against 0.5⁻⁴ = 16
    assert weighted_slope(closest_first, np.ones(6), np.linspace(1.0, 2.0, 6)) is None
