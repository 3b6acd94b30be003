"""Apparent atomic charges of dipole labels (physnetjax.data.dipole_charges) and the Debye check built on them."""

import dataclasses

import numpy as np
import pytest

from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.data.dipole_charges import (ApparentCharges, apparent_charges, fit_apparent_charges,
                                            implausible_charges)
from physnetjax.data.sanity import check_label_sanity
from physnetjax.errors import PhysNetInputWarning
from physnetjax.units import DEBYE


def _kkt_charges(positions, dipoles, total_charge):
    """The constrained least-squares charges from the Lagrange (KKT) system, solved directly."""
    m, n, _ = positions.shape
    a = positions.transpose(0, 2, 1).reshape(3 * m, n)
    b = dipoles.reshape(3 * m)
    kkt = np.block([[2 * a.T @ a, np.ones((n, 1))], [np.ones((1, n)), np.zeros((1, 1))]])
    return np.linalg.solve(kkt, np.append(2 * a.T @ b, total_charge))[:n]


@pytest.mark.parametrize("total_charge", [0.0, 1.0])
def test_fit_recovers_known_charges_within_its_errors_and_equals_the_kkt_solution(total_charge):
    rng = np.random.default_rng(7)
    charges = np.array([-0.7, 0.35, 0.45, -0.1])
    charges += (total_charge - charges.sum()) / 4
    base = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [0.3, 0.2, 1.4]])
    positions = base + 3.0 + rng.normal(scale=0.08, size=(200, 4, 3))
    noise = 0.002
    dipoles = np.einsum("i,kij->kj", charges, positions) + rng.normal(scale=noise, size=(200, 3))
    fitted, errors = fit_apparent_charges(positions, dipoles, total_charge)
    np.testing.assert_allclose(fitted.sum(), total_charge, atol=1e-12)
    np.testing.assert_allclose(fitted, _kkt_charges(positions, dipoles, total_charge), atol=1e-10)
    assert np.all(np.abs(fitted - charges) < 4 * errors)
    assert np.all(errors < 0.05) and np.all(errors > 0)
    # The charge eliminated by the constraint is the last atom's: its error, Var(Q − Σ_free q), needs the
    # covariances of the free charges. With the atoms in reverse order another charge is eliminated; the
    # charges and every error must come out the same.
    reversed_fit, reversed_errors = fit_apparent_charges(positions[:, ::-1], dipoles, total_charge)
    np.testing.assert_allclose(reversed_fit[::-1], fitted, atol=1e-10)
    np.testing.assert_allclose(reversed_errors[::-1], errors, rtol=1e-8)


def test_a_diatomics_charge_error_is_the_standard_error_of_a_regression_through_the_origin():
    """One free charge q₁ (q₂ = Q − q₁): μ_k − Q r₂ = q₁ (r₁ − r₂) over the 3M components is a regression through
    the origin, whose standard error is √(Σe² / (3M − 1) / Σx²) (e residuals, x the regressor); q₂ has the same."""
    rng = np.random.default_rng(11)
    positions = np.array([[0.0, 0.0, 0.0], [0.92, 0.0, 0.0]]) + rng.normal(scale=0.1, size=(4, 2, 3))
    total_charge = 1.0
    dipoles = 0.6 * positions[:, 0] + 0.4 * positions[:, 1] + rng.normal(scale=0.01, size=(4, 3))
    fitted, errors = fit_apparent_charges(positions, dipoles, total_charge)
    x = (positions[:, 0] - positions[:, 1]).ravel()
    y = (dipoles - total_charge * positions[:, 1]).ravel()
    slope = x @ y / (x @ x)
    residuals = y - slope * x
    standard_error = np.sqrt(residuals @ residuals / (len(x) - 1) / (x @ x))
    np.testing.assert_allclose(fitted, [slope, total_charge - slope], rtol=1e-12)
    np.testing.assert_allclose(errors, [standard_error, standard_error], rtol=1e-10)


def test_reference_dipoles_pass_and_the_same_in_debye_are_named():
    data = load_dataset(bundled_dataset_path())
    (fit,) = apparent_charges(data)
    assert 0.4 < np.abs(fit.charges).max() < 1.0 and not fit.implausible
    assert implausible_charges(data) is None
    assert not any("dipoles" in message for message in check_label_sanity(data, "ethanol"))
    in_debye = dataclasses.replace(data, D=data.D / DEBYE)
    with pytest.warns(PhysNetInputWarning, match=r"ethanol: the dipoles are implausibly large .* frames of C2H6O .*"
                                                 r"pass --dipole-unit debye"):
        messages = check_label_sanity(in_debye, "ethanol")
    assert len([m for m in messages if "dipoles" in m]) == 1
    suspect = implausible_charges(in_debye)
    np.testing.assert_allclose(np.abs(suspect.charges).max(), np.abs(fit.charges).max() / DEBYE, rtol=1e-9)
    assert check_label_sanity(in_debye, "ethanol", skip=["dipoles"]) == []


def test_frames_of_one_geometry_do_not_pin_the_charges_and_are_not_judged():
    """Six atoms (five free charges) jittered by 1e-4 Å around one geometry: the three dipole components cannot
    separate the charges, and their errors keep the check silent however large the fitted values."""
    rng = np.random.default_rng(1)
    base = np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [-0.5, 0.9, 0.0], [-0.5, -0.9, 0.1], [1.7, 0.9, 0.2],
                     [1.7, -0.9, -0.2]])
    positions = base + rng.normal(scale=1e-4, size=(50, 6, 3))
    dipoles = np.array([0.3, 0.2, 0.1]) / DEBYE + rng.normal(scale=0.01, size=(50, 3))
    charges, errors = fit_apparent_charges(positions, dipoles, 0.0)
    k = int(np.argmax(np.abs(charges)))
    assert abs(charges[k]) > 2.0 and abs(charges[k]) - 2 * errors[k] < 2.0


def test_a_small_molecule_whose_static_dipole_needs_large_charges_is_named():
    """Three atoms (two free charges) in one geometry: the in-plane dipole alone fixes them, so a 1.7 e·Å dipole
    on a water geometry (8.3 D, read from Debye) needs ~2.8 e, a finding with a small error."""
    rng = np.random.default_rng(1)
    base = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    positions = base + rng.normal(scale=1e-4, size=(50, 3, 3))
    dipoles = np.array([0.3, 0.2, 0.0]) / DEBYE + rng.normal(scale=0.01, size=(50, 3))
    charges, errors = fit_apparent_charges(positions, dipoles, 0.0)
    np.testing.assert_allclose(base.T @ charges, dipoles.mean(axis=0), atol=0.01)
    k = int(np.argmax(np.abs(charges)))
    assert abs(charges[k]) - 2 * errors[k] > 2.0


def test_too_few_frames_and_periodic_frames_are_left_out():
    """Ethanol has 8 free charges: 3 frames each, 24, are fitted; 23 are not."""
    data = load_dataset(bundled_dataset_path())
    in_debye = dataclasses.replace(data, D=data.D / DEBYE)
    assert apparent_charges(in_debye.subset(np.arange(23))) == []
    assert [fit.frames for fit in apparent_charges(in_debye.subset(np.arange(24)))] == [24]
    periodic = dataclasses.replace(data, D=data.D / DEBYE, cell=np.broadcast_to(30 * np.eye(3), data.cell.shape))
    assert apparent_charges(periodic) == []


@pytest.mark.parametrize("charge, error, implausible", [
    (2.5, 0.24, True),  # 2.5 − 2 × 0.24 = 2.02 > 2 e
    (2.5, 0.25, False),  # exactly 2 e: not beyond
    (-2.5, 0.3, False),  # 1.9 e: within two standard errors of 2 e
    (2.01, 0.0, True),
])
def test_a_charge_is_implausible_beyond_two_e_by_two_standard_errors(charge, error, implausible):
    """ApparentCharges.implausible: |q| − CHARGE_SIGMAS σ > MAX_APPARENT_CHARGE for the largest |q|, whatever sign."""
    fit = ApparentCharges(atomic_numbers=np.array([3, 9]), charges=np.array([charge, -0.5 * charge]),
                          errors=np.array([error, 0.0]), frames=10, first_frame=0)
    assert bool(fit.implausible) == implausible
    assert fit.total_charge == 0.0 and not fit.about_centre


@pytest.mark.parametrize("point, sign", [("centroid", -1), ("centre of mass", -1), ("centroid", 1)])
def test_ion_dipoles_about_another_reference_point_are_named_as_such_not_as_debye(point, sign):
    """An anion's dipoles taken about each frame's centroid (or centre of mass), 55 Å from the origin: the check
    said "implausibly large ... pass --dipole-unit debye" (−31.7 e), a remedy that makes them worse. The labels
    are exact for known charges about that point (either fits, as the module docstring says); about the origin they
    are fine. The same for the cation of opposite charges; and dipoles about the origin in Debye are not plausible
    about the centre either: those are named as Debye."""
    from ase.data import atomic_masses

    rng = np.random.default_rng(3)
    numbers = np.array([6, 8, 8, 1])
    charges = sign * np.array([-0.4, 0.75, 0.75, -0.1])  # formate-like, Q = -1 (sign -1)
    base = np.array([[0.0, 0.0, 0.0], [1.25, 0.0, 0.0], [-0.6, 1.1, 0.0], [-0.6, -0.95, 0.1]])
    positions = base + 55.0 + rng.normal(scale=0.08, size=(120, 4, 3))
    about_origin = np.einsum("i,kij->kj", charges, positions)
    weights = np.ones(4) if point == "centroid" else atomic_masses[numbers]
    centre = np.einsum("i,kij->kj", weights, positions) / weights.sum()
    data = load_dataset(bundled_dataset_path()).subset(np.arange(120))
    ion = dataclasses.replace(data, Z=np.tile(numbers, (120, 1)), R=positions, N=np.full(120, 4),
                              Q=np.full(120, float(sign)), D=about_origin - sign * centre)
    suspect = implausible_charges(ion)
    assert suspect.about_centre
    message = suspect.finding("ion.npz", ion.sources)
    assert "plausible charges about each frame's own centre" in message and "add Q·c" in message
    assert "pass --dipole-unit" not in message
    assert implausible_charges(dataclasses.replace(ion, D=about_origin)) is None
    in_debye = implausible_charges(dataclasses.replace(ion, D=about_origin / DEBYE))
    assert not in_debye.about_centre and "pass --dipole-unit debye" in in_debye.finding("ion.npz", ion.sources)


def _diatomics(numbers, charge, bond, count, rng):
    """``count`` frames of a diatomic with charges (+charge, −charge) e, bond lengths around ``bond`` Å, random
    orientations: positions (count, 2, 3) Å and exact dipoles about the origin (count, 3) e·Å."""
    axes = rng.normal(size=(count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    first = 2.0 + rng.normal(scale=0.1, size=(count, 3))
    second = first + (bond + rng.normal(scale=0.05, size=(count, 1))) * axes
    positions = np.stack([first, second], axis=1)
    return np.tile(numbers, (count, 1)), positions, charge * (first - second)


def test_diatomic_dipoles_in_debye_are_named_and_the_largest_finding_is_the_one_reported():
    """LiF (±0.80 e) and NaCl (±0.75 e) frames whose e·Å dipoles were written in Debye: apparent charges of ±3.8 e
    and ±3.6 e, both implausible. Diatomics have one free charge and are judged (skipped as too small, a diatomic
    data set's unit slip would go unnoticed); of two findings the larger (LiF) is the one reported."""
    rng = np.random.default_rng(5)
    lif = _diatomics([3, 9], 0.80, 1.56, 40, rng)
    nacl = _diatomics([11, 17], 0.75, 2.36, 40, rng)
    data = load_dataset(bundled_dataset_path()).subset(np.arange(80))
    exact = dataclasses.replace(data, Z=np.concatenate([lif[0], nacl[0]]), R=np.concatenate([lif[1], nacl[1]]),
                                N=np.full(80, 2), Q=np.zeros(80), D=np.concatenate([lif[2], nacl[2]]))
    fits = apparent_charges(exact)
    assert [fit.atomic_numbers.tolist() for fit in fits] == [[3, 9], [11, 17]]
    np.testing.assert_allclose([fit.charges for fit in fits], [[0.80, -0.80], [0.75, -0.75]], atol=1e-10)
    assert implausible_charges(exact) is None
    suspect = implausible_charges(dataclasses.replace(exact, D=exact.D / DEBYE))
    assert suspect.atomic_numbers.tolist() == [3, 9]
    assert f"frames of FLi (e.g. {exact.sources[0]}) need" in suspect.finding("lif.npz", exact.sources)
    np.testing.assert_allclose(suspect.charges, [0.80 / DEBYE, -0.80 / DEBYE], rtol=1e-10)
