"""Harmonic analysis (physnetjax.spectra): autodiff Hessian, normal modes, IR intensities, CLI.

References used here, none produced by the code under test:

* closed forms for a diatomic (harmonic and Morse bond): ν̃ = √(k/μ)/(2πc), ZPE = ½hcν̃,
  A = N_A/(12 ε_0 c²) q²/μ, with the constants typed in from CODATA 2018;
* central finite differences of the model's forces and dipole through the ASE calculator
  (a different edge set: neighbor list, padded batch);
* ASE ``Infrared`` (finite-difference Hessian and dipole derivatives, no projection).

The charge model is the shipped ethanol model with a charge head grafted on (bias per
element plus a small weight on the learned features), so its surface keeps ethanol's
minimum and its charges vary with the geometry.
"""

import importlib
import json
import math
import tomllib
import warnings

import ase
import ase.data
import ase.io
import ase.units
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.vibrations import Infrared

from conftest import warnings_as_errors

from physnetjax import PhysNet, load_checkpoint, save_checkpoint
from physnetjax.calculator import PhysNetCalculator
from physnetjax.errors import PhysNetInputError, PhysNetInputWarning, RunStoppedError
from physnetjax.pretrained import example_geometry_path, example_model_path
from physnetjax.spectra import (
    NonMinimumWarning,
    OptimizationError,
    ZeroModeWarning,
    harmonic,
    harmonic_analysis,
    md_spectrum,
    minimize,
    optimize_geometry,
)
from physnetjax.spectra.__main__ import main as spectra_main
from physnetjax.spectra.harmonic import ZERO_MODE_CM1
from physnetjax.spectra.rigid_body import (axis_distance, check_linear_tolerance, is_linear, principal_moments,
                                           rigid_body_basis)
from physnetjax.validation import check_length_unit

# CODATA 2018, typed in independently of physnetjax.units.
E = 1.602176634e-19  # C
C = 299792458.0  # m/s
AMU = 1.66053906660e-27  # kg
NA = 6.02214076e23  # 1/mol
EPS0 = 8.8541878128e-12  # F/m
H = 6.62607015e-34  # J s
BOHR_IN_ANGSTROM = 0.529177210903

# Isotopic masses (amu, AME/NIST).
M_H, M_D, M_CL = 1.00782503223, 2.01410177812, 34.968852682


def wavenumber_cm1(k_ev_per_a2, mu_amu):
    """ν̃ = √(k/μ)/(2πc) in cm⁻¹ for k in eV/Å² and μ in amu (SI in between)."""
    return math.sqrt(k_ev_per_a2 * E / 1e-20 / (mu_amu * AMU)) / (2.0 * math.pi * C) / 100.0


@pytest.fixture(scope="module")
def charge_model():
    """(model, params, Z, R) of the ethanol model with a grafted charge head (float32 params)."""
    base, params = load_checkpoint(example_model_path())
    config = base.config()
    config["charges"] = True
    model = PhysNet.from_config(config)
    layers = dict(params["params"])
    bias = np.zeros(base.max_atomic_number + 1, np.float32)
    bias[[1, 6, 8]] = [0.1, -0.15, -0.3]
    layers["charge_bias"] = bias
    feature_weights = 0.01 * np.random.default_rng(0).standard_normal((base.features, 1))
    layers["Dense_6"] = {"0+": {"kernel": feature_weights.astype(np.float32)}}
    layers["Dense_7"] = {"kernel": np.ones((1, 1), np.float32)}
    atoms = ase.io.read(example_geometry_path())
    return model, {"params": layers}, atoms.numbers, atoms.positions


@pytest.fixture(scope="module")
def charged_result(charge_model):
    model, params, z, r = charge_model
    return harmonic(model, params, z, r, fmax=1e-8)


@pytest.fixture(scope="module")
def calculator(charge_model):
    model, params, _, _ = charge_model
    return PhysNetCalculator(model, params, dtype="float64")


def central_difference(function, positions, delta):
    """(3N, ...) derivative of ``function(positions)`` by the 4-point stencil (error O(δ⁴))."""
    rows = []
    for index in range(positions.size):
        values = []
        for step in (-2, -1, 1, 2):
            displaced = positions.copy().ravel()
            displaced[index] += step * delta
            values.append(np.asarray(function(displaced.reshape(positions.shape))))
        rows.append((values[0] - 8.0 * values[1] + 8.0 * values[2] - values[3]) / (12.0 * delta))
    return np.stack(rows)


def test_hessian_and_dipole_derivatives_equal_central_differences_of_the_model(charge_model, charged_result,
                                                                                calculator):
    _, _, z, _ = charge_model
    atoms = ase.Atoms(numbers=z, positions=charged_result.positions)
    atoms.calc = calculator

    def forces_and_dipole(positions):
        atoms.positions = positions
        return np.concatenate([-atoms.get_forces().ravel(), atoms.get_dipole_moment()])

    # 4-point stencil, δ = 1e-3 Å: truncation (δ⁴/30)|∂⁵E| ~ 1e-12 · O(10²) eV/Å², round-off
    # ε|F|/δ ~ 1e-13 eV/Å²; both far below the 1e-6 relative asked for.
    derivatives = central_difference(forces_and_dipole, charged_result.positions, 1e-3)
    hessian_fd, dipole_fd = derivatives[:, :-3], derivatives[:, -3:].reshape(-1, 3, 3)
    scale = np.max(np.abs(charged_result.hessian))
    assert np.max(np.abs(charged_result.hessian - hessian_fd)) <= 1e-6 * scale
    np.testing.assert_array_equal(charged_result.hessian, charged_result.hessian.T)  # symmetrised, not just close
    assert np.max(np.abs(charged_result.dipole_derivatives - dipole_fd)) <= 1e-6 * np.max(np.abs(dipole_fd))


def test_derivatives_taken_a_few_displacements_at_a_time_equal_those_taken_at_once(charge_model, charged_result,
                                                                                    monkeypatch):
    """All 3N displacements at once needed 29 GB for 120 atoms; in chunks (the last one padded) nothing changes."""
    harmonic_module = importlib.import_module("physnetjax.spectra.harmonic")  # the package's `harmonic` is the function
    assert [harmonic_module.displacements_at_once(n) for n in (9, 44, 45, 120, 600)] == [27, 132, 129, 18, 1]
    model, params, z, _ = charge_model
    at_once = harmonic(model, params, z, charged_result.positions, optimize=False)
    monkeypatch.setattr(harmonic_module, "HESSIAN_PAIR_DIRECTIONS", 5 * 81 + 10)  # 5 of ethanol's 27 at a time
    assert harmonic_module.displacements_at_once(9) == 5
    chunked = harmonic(model, params, z, charged_result.positions, optimize=False)
    np.testing.assert_allclose(chunked.hessian, at_once.hessian, rtol=0, atol=1e-12 * np.abs(at_once.hessian).max())
    np.testing.assert_allclose(chunked.dipole_derivatives, at_once.dipole_derivatives, rtol=0,
                               atol=1e-12 * np.abs(at_once.dipole_derivatives).max())
    np.testing.assert_allclose(chunked.frequencies_cm1, charged_result.frequencies_cm1, rtol=1e-10)


def test_frequencies_and_intensities_equal_ase_infrared(charge_model, charged_result, calculator, tmp_path):
    _, _, z, _ = charge_model
    atoms = ase.Atoms(numbers=z, positions=charged_result.positions)
    atoms.calc = calculator
    # ASE: nfree=4 central differences of the forces and dipole, δ = 5e-4 Å, truncation error
    # (δ⁴/30)·∂⁵ (halving δ from 1e-3 changes ASE's frequencies and intensities by < 1e-8
    # relative), round-off ε|F|/δ ~ 1e-12. ASE does not project out the rotations: a residual
    # max |F| mixes them into the modes at first order, and a rotation turns the dipole, so
    # the intensities differ by ~ max|F|/(1 eV/Å) relative (5e-7 measured at max |F| = 1e-6);
    # hence the fixture's fmax = 1e-8 and the tolerance 1e-7 (4e-9 measured).
    infrared = Infrared(atoms, name=str(tmp_path / "ir"), delta=5e-4, nfree=4)
    infrared.run()
    ase_frequencies = infrared.get_frequencies()
    assert np.all(np.abs(ase_frequencies[:6]) < 1.0)  # ASE's six rigid-body modes
    np.testing.assert_allclose(charged_result.frequencies_cm1, ase_frequencies[6:].real, rtol=1e-7)
    # ASE intensities are in (D/Å)²/amu: × Debye² gives |∂μ/∂Q|² in e²/amu, × the SI factor km/mol.
    factor = NA / (12.0 * EPS0 * C**2) * E**2 / AMU / 1000.0
    ase_intensities = infrared.intensities[6:] * ase.units.Debye**2 * factor
    np.testing.assert_allclose(charged_result.intensities_km_mol, ase_intensities, rtol=1e-7)
    assert ase_intensities.max() > 10.0  # the comparison is not between zeros


def test_rigid_body_modes_vanish_at_a_minimum(charged_result):
    assert charged_result.max_force <= 1e-8
    assert not charged_result.linear and charged_result.frequencies_cm1.shape == (21,)
    assert np.all(np.abs(charged_result.rigid_body_cm1) < 1.0)
    # Unprojected mass-weighted Hessian (checked against finite differences above): six
    # eigenvalues within 1 cm⁻¹ of zero, the other 21 are the projected frequencies.
    inv_sqrt_m = np.repeat(charged_result.masses**-0.5, 3)
    eigenvalues = np.linalg.eigvalsh(inv_sqrt_m[:, None] * charged_result.hessian * inv_sqrt_m[None, :])
    cm1 = np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues) * E / 1e-20 / AMU) / (2 * math.pi * C * 100)
    assert np.all(np.abs(cm1[:6]) < 1.0)
    np.testing.assert_allclose(cm1[6:], charged_result.frequencies_cm1, rtol=1e-9)
    assert not charged_result.imaginary.any()
    zpe = 0.5 * H * C * 100.0 / E * charged_result.frequencies_cm1.sum()
    assert charged_result.zero_point_energy == pytest.approx(zpe, rel=1e-12)
    modes = charged_result.normal_modes.reshape(21, -1)
    np.testing.assert_allclose(np.linalg.norm(modes, axis=1), 1.0, rtol=1e-12)
    # μ_k = 1/|M^{-1/2} e_k|² where e_k = M^{1/2} d_k/|M^{1/2} d_k| for the unit Cartesian mode d_k.
    sqrt_m = np.repeat(charged_result.masses**0.5, 3)
    reduced = np.sum((sqrt_m * modes) ** 2, axis=1)
    np.testing.assert_allclose(charged_result.reduced_masses, reduced, rtol=1e-10)


def test_zero_charge_model_has_zero_intensities(charge_model):
    model, params, z, r = charge_model
    layers = dict(params["params"])
    layers["charge_bias"] = np.zeros_like(layers["charge_bias"])
    layers["Dense_7"] = {"kernel": np.zeros((1, 1), np.float32)}
    result = harmonic(model, {"params": layers}, z, r)
    assert result.intensities_km_mol is not None
    assert np.all(result.intensities_km_mol == 0.0)
    assert np.all(result.frequencies_cm1 > 100.0)


def test_a_minimum_given_as_is_needs_no_optimisation_and_no_warning(charge_model, charged_result):
    model, params, z, _ = charge_model
    with warnings_as_errors():
        result = harmonic(model, params, z, charged_result.positions, optimize=False, fmax=1e-6)
    assert result.optimization is None
    np.testing.assert_array_equal(result.positions, charged_result.positions)
    np.testing.assert_allclose(result.frequencies_cm1, charged_result.frequencies_cm1, rtol=1e-12)


def test_unconverged_optimisation_keeps_the_last_geometry(charge_model):
    model, params, z, r = charge_model
    with pytest.raises(OptimizationError, match="after max_steps=2; raise max_steps") as caught:
        optimize_geometry(model, params, z, r, max_steps=2)
    error = caught.value
    assert str(error).endswith("; the last geometry is kept in the error's .positions")
    assert isinstance(error, RunStoppedError)  # CLI exit 4 (physnetjax.cli_errors)
    assert error.positions.shape == (9, 3) and np.isfinite(error.positions).all()
    assert error.steps == 2 and error.fmax > 1e-4 and np.isfinite(error.energy)
    assert not np.allclose(error.positions, r)
    with pytest.raises(OptimizationError, match="did not reach"):
        harmonic(model, params, z, r, max_steps=2)


def test_nan_geometry_and_bad_masses_are_clear_errors(charge_model):
    model, params, z, r = charge_model
    bad = r.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf at atom\(s\) 4 "):
        harmonic(model, params, z, bad)
    with pytest.raises(ValueError, match="NaN or Inf"):
        optimize_geometry(model, params, z, bad)
    with pytest.raises(ValueError, match=r"masses must have shape \(9,\)"):
        harmonic(model, params, z, r, masses=np.ones(8))
    with pytest.raises(ValueError, match="masses must be finite and > 0"):
        harmonic(model, params, z, r, masses=np.r_[np.ones(8), -1.0])
    with pytest.raises(PhysNetInputError, match=r"^1 atom\(s\): a molecule of at least 2 atoms is needed \(a single atom "
                                         r"has no bonds, forces or vibrations\)$"):  # it spoke of an 'edge set'
        harmonic(model, params, z[:1], r[:1])


@pytest.fixture(scope="module")
def linear_co2():
    """Linear, centrosymmetric CO2 along a skew axis, and a fresh charge model."""
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    positions = np.array([0.3, -0.2, 0.1]) + np.outer([-1.16, 0.0, 1.16], axis)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=8, charges=True, zbl=False, n_res=1)
    return model, random_params(model, seed=3), np.array([8, 6, 8]), positions, axis


def random_params(model, seed, scale=0.3):
    """Normal(0, scale²) weights of the right shapes (from tracing init, no compilation)."""
    z = jnp.array([1, 1])
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), z, jnp.array([[0.0, 0, 0], [0.74, 0, 0]]),
                            jnp.array([0, 1]), jnp.array([1, 0]))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: (scale * rng.standard_normal(leaf.shape)).astype(leaf.dtype), shapes)


def test_linear_molecule_has_3n_minus_5_modes_and_a_dark_symmetric_stretch(linear_co2):
    model, params, z, positions, axis = linear_co2
    with pytest.warns(NonMinimumWarning, match=r"max \|F\| = .* eV/Å > fmax=1.0e-04 eV/Å; .* \(use optimize=True\)$"):
        result = harmonic(model, params, z, positions, optimize=False)
    assert result.linear
    assert result.frequencies_cm1.shape == (4,) and result.rigid_body_cm1.shape == (5,)
    # The symmetric stretch (carbon at rest, oxygens opposite along the axis) keeps μ = 0
    # by symmetry: zero intensity. The antisymmetric stretch and the bends are IR active.
    carbon_at_rest = np.linalg.norm(result.normal_modes[:, 1], axis=1) < 1e-8
    assert carbon_at_rest.sum() == 1
    stretch = result.normal_modes[carbon_at_rest][0]
    np.testing.assert_allclose(np.abs(stretch[0] @ axis), 1 / math.sqrt(2), rtol=1e-8)
    assert result.intensities_km_mol[carbon_at_rest][0] < 1e-12 * result.intensities_km_mol.max()
    assert np.all(result.intensities_km_mol[~carbon_at_rest] > 1e-6)


def test_model_without_charges_has_no_intensities(linear_co2):
    _, _, z, positions, _ = linear_co2
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=8, charges=False, zbl=False, n_res=1)
    params = random_params(model, seed=4)
    with pytest.raises(ValueError, match="IR intensities need the dipole.*charges=False"):
        harmonic(model, params, z, positions, optimize=False, intensities=True)
    with pytest.warns(NonMinimumWarning):
        result = harmonic(model, params, z, positions, optimize=False)
    assert result.intensities_km_mol is None and result.dipole_derivatives is None
    assert result.frequencies_cm1.shape == (4,)


def test_atoms_beyond_the_cutoff_are_separate_fragments_even_with_coulomb_coupling(charge_model):
    # O and H 50 Å apart: only the charges' bare Coulomb term couples them (a non-zero
    # Hessian block), yet beyond the 5 Å cutoff they are separate fragments.
    model, params, _, _ = charge_model
    with pytest.warns(ZeroModeWarning, match=r"2 separate fragments \(atoms 0 \| 1; no atom within the model "
                      r"cutoff of 5 Å of another fragment, closest atoms 50\.00 Å apart\)"):
        result = harmonic(model, params, [8, 1], [[0.0, 0.0, 0.0], [30.0, 40.0, 0.0]], optimize=False, fmax=1.0)
    assert np.abs(result.hessian[:3, 3:]).max() > 1e-9 * np.abs(result.hessian).max()
    assert result.frequencies_cm1.shape == (1,) and result.zero_modes.tolist() == [True]
    assert abs(result.frequencies_cm1[0]) < 10.0 and result.zero_point_energy == 0.0


def diatomic(kind, r0=1.2746, k=32.0, depth=4.6):
    """Energy function of a bond (harmonic or Morse with the same curvature k = 2 D a²) in eV."""
    a = math.sqrt(k / (2.0 * depth))

    def energy(positions):
        r = jnp.linalg.norm(positions[1] - positions[0])
        if kind == "harmonic":
            return 0.5 * k * (r - r0) ** 2
        return depth * (1.0 - jnp.exp(-a * (r - r0))) ** 2

    return energy


def bond_positions(r):
    axis = np.array([0.3, -0.8, 0.52]) / np.linalg.norm([0.3, -0.8, 0.52])
    return np.array([[0.4, 0.1, -0.7], [0.4, 0.1, -0.7] + r * axis]), axis


def with_distant_atom(positions, axis, distance):
    """The bond's two atoms plus a third ``distance`` Å from their centre, perpendicular to the bond ``axis``."""
    side = np.cross(axis, [1.0, 0.0, 0.0])
    return np.vstack([positions, positions.mean(axis=0) + distance * side / np.linalg.norm(side)])


@pytest.mark.parametrize("kind", ["harmonic", "morse"])
def test_diatomic_frequency_intensity_and_zpe_are_exact(kind):
    r0, k, charge = 1.2746, 32.0, 0.2
    positions, axis = bond_positions(r0)

    def dipole(positions):  # fixed charges −q on H, +q on Cl: μ = q (R_Cl − R_H)
        return charge * (positions[1] - positions[0])

    result = harmonic_analysis(diatomic(kind, r0, k), positions, [M_H, M_CL], dipole_fn=dipole)
    mu = M_H * M_CL / (M_H + M_CL)
    expected = wavenumber_cm1(k, mu)
    assert result.linear and result.frequencies_cm1.shape == (1,)
    assert result.frequencies_cm1[0] == pytest.approx(expected, rel=1e-6)
    # Anchor for the helper itself: k = 32 eV/Å² = 512.7 N/m (HCl: 516 N/m, 2991 cm⁻¹).
    assert result.frequencies_cm1[0] == pytest.approx(2980.453, rel=1e-6)
    # Reduced mass of the unit Cartesian mode (both atoms move, COM fixed): m₁m₂M/(m₁² + m₂²).
    mode_mass = M_H * M_CL * (M_H + M_CL) / (M_H**2 + M_CL**2)
    assert result.reduced_masses[0] == pytest.approx(mode_mass, rel=1e-10)
    np.testing.assert_allclose(np.abs(result.normal_modes[0] @ axis), [M_CL, M_H] / np.hypot(M_H, M_CL),
                               rtol=1e-10)
    assert result.zero_point_energy == pytest.approx(0.5 * H * C * 100.0 * expected / E, rel=1e-6)
    # |∂μ/∂Q| = q/√μ (Q = √μ·Δr): A = N_A/(12 ε_0 c²) q² e²/(μ amu), in km/mol.
    intensity = NA / (12.0 * EPS0 * C**2) * (charge * E) ** 2 / (mu * AMU) / 1000.0
    assert result.intensities_km_mol[0] == pytest.approx(intensity, rel=1e-10)
    assert np.all(np.abs(result.rigid_body_cm1) < 1e-3)


def test_imaginary_frequency_is_negative_flagged_and_left_out_of_the_zpe():
    r0, k = 1.2746, 32.0
    positions, _ = bond_positions(r0)
    saddle = harmonic_analysis(lambda p: -diatomic("harmonic", r0, k)(p), positions, [M_H, M_CL])
    expected = wavenumber_cm1(k, M_H * M_CL / (M_H + M_CL))
    assert saddle.frequencies_cm1[0] == pytest.approx(-expected, rel=1e-6)
    assert saddle.imaginary.tolist() == [True] and saddle.zero_point_energy == 0.0


def test_isotope_substitution_scales_as_the_reduced_mass():
    positions, _ = bond_positions(1.2746)
    energy = diatomic("morse")
    hcl = harmonic_analysis(energy, positions, [M_H, M_CL]).frequencies_cm1[0]
    dcl = harmonic_analysis(energy, positions, [M_D, M_CL]).frequencies_cm1[0]
    mu_h, mu_d = M_H * M_CL / (M_H + M_CL), M_D * M_CL / (M_D + M_CL)
    assert dcl / hcl == pytest.approx(math.sqrt(mu_h / mu_d), rel=1e-10)


def test_a_separate_atom_adds_flagged_zero_modes_and_leaves_the_vibration_unchanged():
    # HCl and an H atom 20 Å from its centre, off the bond axis, that the energy does not see:
    # 3N − 6 = 3 modes, of which 5 + 3 − 6 = 2 are relative motions (zero Hessian coupling).
    r0, k, charge = 1.2746, 32.0, 0.2
    positions, axis = bond_positions(r0)
    apart = with_distant_atom(positions, axis, 20.0)

    def dipole(positions):
        return charge * (positions[1] - positions[0])

    alone = harmonic_analysis(diatomic("morse", r0, k), positions, [M_H, M_CL], dipole_fn=dipole)
    with pytest.warns(ZeroModeWarning, match=r"^2 zero-frequency mode\(s\) besides the 6 rigid-body motions, not "
                      r"vibrations .*2 separate fragments \(atoms 0-1 \| 2; no coupling between them in the "
                      r"Hessian, closest atoms 20\.\d\d Å apart\), so 2 mode"):
        result = harmonic_analysis(diatomic("morse", r0, k), apart, [M_H, M_CL, M_H], dipole_fn=dipole)
    assert not result.linear and result.frequencies_cm1.shape == (3,)
    assert [atoms.tolist() for atoms in result.fragments] == [[0, 1], [2]]
    assert result.zero_modes.sum() == 2 and np.all(np.abs(result.frequencies_cm1[result.zero_modes]) < 1e-3)
    vibration = ~result.zero_modes
    np.testing.assert_allclose(result.frequencies_cm1[vibration], alone.frequencies_cm1, rtol=1e-10)
    np.testing.assert_allclose(result.intensities_km_mol[vibration], alone.intensities_km_mol, rtol=1e-10)
    assert result.zero_point_energy == pytest.approx(alone.zero_point_energy, rel=1e-10)
    assert not alone.zero_modes.any() and len(alone.fragments) == 1


def test_weakly_coupled_fragment_motions_are_flagged_and_left_out_of_the_zpe():
    # HCl and an H atom 20 Å away, tied to HCl's centre by a weak spring (k = 2e-4 eV/Å²): with the
    # fragments set by a 5 Å cutoff, the spring's stretch (≈ 7 cm⁻¹, above the 1 cm⁻¹ zero-mode
    # threshold) and the two flat swings are the fragments' relative motions, flagged and left out of the ZPE.
    r0, k, spring = 1.2746, 32.0, 2e-4
    positions, axis = bond_positions(r0)
    apart = with_distant_atom(positions, axis, 20.0)
    bond = diatomic("morse", r0, k)

    def energy(positions):
        return bond(positions[:2]) + 0.5 * spring * (jnp.linalg.norm(positions[2] - positions[:2].mean(0)) - 20.0) ** 2

    alone = harmonic_analysis(bond, positions, [M_H, M_CL])
    with pytest.warns(ZeroModeWarning, match=r"2 separate fragments \(atoms 0-1 \| 2; no atom within the model "
                      r"cutoff of 5 Å"):
        result = harmonic_analysis(energy, apart, [M_H, M_CL, M_H], fragment_cutoff=5.0)
    assert result.zero_modes.tolist() == [True, True, False]
    assert result.frequencies_cm1[1] > 5 * ZERO_MODE_CM1
    assert result.frequencies_cm1[2] == pytest.approx(alone.frequencies_cm1[0], rel=1e-6)
    assert result.zero_point_energy == pytest.approx(alone.zero_point_energy, rel=1e-6)


BENT = np.array([[0.95, 0.1, -0.2], [0.0, 0.0, 0.0], [-0.45, 1.6, 0.3]])
"""Å: an unsymmetric bent triatomic (HOCl's atoms), no symmetry to hide an off-centre axis."""


def test_principal_moments_are_taken_about_the_centre_of_mass():
    """HCl: (0, μd², μd²) with the reduced mass μ; a bent, unsymmetric molecule: ASE's moments of inertia (both
    amu·Å², ascending). About the geometric centre HCl's would be (m_H + m_Cl) d²/4, 9× too large."""
    d, unit = 1.2746, np.array([0.3, 0.4, np.sqrt(0.75)])
    moments, axes = principal_moments([[0.0, 0.0, 0.0], d * unit], [M_H, M_CL])
    reduced = M_H * M_CL / (M_H + M_CL)
    np.testing.assert_allclose(moments, [0.0, reduced * d**2, reduced * d**2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.abs(axes[:, 0]), unit, rtol=1e-12)
    hocl = ase.Atoms("HOCl", positions=BENT)
    moments, _ = principal_moments(hocl.positions, hocl.get_masses())
    np.testing.assert_allclose(moments, np.sort(hocl.get_moments_of_inertia()), rtol=1e-12)


def test_rigid_body_basis_is_orthonormal_and_rotates_about_the_centre_of_mass():
    """The columns (3 translations, 3 or 2 rotations about principal axes) are orthonormal as documented (the
    fragment analysis projects with Bᵀ directly), for an unsymmetric bent molecule and a tilted OCS (linear,
    unequal end masses); each rotation column, divided by √m_i, is ω × (r_i − c) about the centre of mass c
    (about another point it would carry a translation)."""
    bent = np.vstack([BENT, [0.4, -1.1, 0.8]])
    ocs = np.array([[-1.16], [0.0], [1.56]]) * np.array([0.3, 0.4, np.sqrt(0.75)]) + [0.5, -0.2, 0.1]
    for positions, masses, linear in ((bent, np.array([1.008, 15.995, 34.969, 12.0]), False),
                                      (ocs, np.array([15.995, 12.0, 31.972]), True)):
        basis = rigid_body_basis(positions, masses, linear)
        assert basis.shape == (3 * len(masses), 5 if linear else 6)
        np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-12)
        arm = positions - masses @ positions / masses.sum()
        generators = np.stack([np.cross(axis, arm).ravel() for axis in np.eye(3)], axis=1)  # ω ↦ ω × arm
        for column in basis.T[3:]:
            velocity = (column.reshape(-1, 3) / np.sqrt(masses)[:, None]).ravel()
            omega = np.linalg.lstsq(generators, velocity, rcond=None)[0]
            np.testing.assert_allclose(generators @ omega, velocity, atol=1e-12)


def test_linear_means_all_atoms_on_one_line_whatever_the_extent():
    """On main a molecule was linear when I_min ≤ 1e-4 I_max: I_max grows as the square of the system's extent,
    so HCl with a separate H atom 200 Å off its axis, CO2 with an atom 200 Å away and a 12-carbon chain with
    an H 0.5 Å off its axis all counted as linear (5 rigid-body motions). Now: every atom within 0.02 Å of
    the axis."""
    r0, k = 1.2746, 32.0
    positions, axis = bond_positions(r0)
    apart = with_distant_atom(positions, axis, 200.0)
    with pytest.warns(ZeroModeWarning, match=r"^2 zero-frequency mode\(s\) besides the 6 rigid-body motions"):
        result = harmonic_analysis(diatomic("morse", r0, k), apart, [M_H, M_CL, M_H])
    assert not result.linear and result.frequencies_cm1.shape == (3,) and result.rigid_body_cm1.shape == (6,)
    co2 = np.array([[-1.16, 0.0, 0.0], [0.0, 0.0, 0.0], [1.16, 0.0, 0.0]])
    masses = [16.0, 12.0, 16.0, 40.0]
    assert not is_linear(np.vstack([co2, [0.0, 200.0, 0.0]]), masses)
    assert is_linear(np.vstack([co2, [50.0, 0.0, 0.0]]), masses)
    assert is_linear(co2 + [[0.0, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 0.0]], masses[:3])  # imperfect optimum
    assert not is_linear(co2 + [[0.0, 0.0, 0.0], [0.0, 0.05, 0.0], [0.0, 0.0, 0.0]], masses[:3])
    chain = np.array([[1.3 * i, 0.0, 0.0] for i in range(12)] + [[15.6, 0.5, 0.0]])
    assert not is_linear(chain, [12.0] * 12 + [M_H])
    assert is_linear(100.0 * co2, masses[:3]) and is_linear(co2, [1e3, 1.0, 1e3])
    # the default tolerance, 0.02 Å from the axis (the carbon's offset × 32/44 here), on both sides of it
    near, past = (co2 + [[0.0, 0.0, 0.0], [0.0, offset, 0.0], [0.0, 0.0, 0.0]] for offset in (0.0268, 0.0282))
    assert axis_distance(near, masses[:3]) < 0.0195 and 0.0205 < axis_distance(past, masses[:3]) < 0.021
    assert is_linear(near, masses[:3]) and not is_linear(past, masses[:3])
    assert check_linear_tolerance(1e-3) == 1e-3
    with pytest.raises(PhysNetInputError, match=r"linear_tolerance must be finite and >= 0\.001 Å"):
        check_linear_tolerance(9.9e-4)


def test_a_flat_direction_is_flagged_as_zero_modes():
    # Two bonds and no bending term: the two bends of the linear triatomic have zero curvature.
    def bonds(positions):
        return sum(16.0 * (jnp.linalg.norm(positions[i + 1] - positions[i]) - 1.16) ** 2 for i in (0, 1))

    axis = np.array([0.2, 0.9, -0.4]) / np.linalg.norm([0.2, 0.9, -0.4])
    with pytest.warns(ZeroModeWarning, match=r"^2 zero-frequency mode\(s\) besides the 5 rigid-body motions.*: "
                      r"2 mode\(s\) have \|wavenumber\| < 1 cm\^-1.*check that the molecule has not dissociated"):
        result = harmonic_analysis(bonds, np.outer([-1.16, 0.0, 1.16], axis), [16.0, 12.0, 16.0])
    assert result.linear and len(result.fragments) == 1
    assert result.zero_modes.tolist() == [True, True, False, False]
    # The stretches are those of the linear triatomic: ω² = k/m_O and k (1/m_O + 2/m_C), k = 32 eV/Å².
    expected = [wavenumber_cm1(32.0, 16.0), wavenumber_cm1(32.0, 1.0 / (1.0 / 16.0 + 2.0 / 12.0))]
    np.testing.assert_allclose(result.frequencies_cm1[2:], expected, rtol=1e-8)
    assert result.zero_point_energy == pytest.approx(0.5 * H * C * 100.0 * sum(expected) / E, rel=1e-8)


def test_minimize_finds_the_bond_length_and_reports_non_convergence():
    r0 = 1.2746
    start, _ = bond_positions(1.6)
    morse = diatomic("morse", r0)
    result = minimize(morse, start, fmax=1e-9)
    assert result.fmax <= 1e-9
    # |F| = k |r − r0| near the minimum, so r is within fmax/k = 3e-11 Å of r0.
    assert np.linalg.norm(result.positions[1] - result.positions[0]) == pytest.approx(r0, abs=1e-9)
    with pytest.raises(OptimizationError, match="after max_steps=1; raise max_steps") as caught:
        minimize(morse, start, fmax=1e-9, max_steps=1)
    assert caught.value.steps == 1 and caught.value.fmax > 1e-9
    with pytest.raises(ValueError, match="^fmax must be finite and > 0 eV/Å, received 0.0$"):
        minimize(morse, start, fmax=0.0)
    with pytest.raises(ValueError, match="^fmax must be finite and > 0 eV/Å, received inf$"):  # main: start kept
        minimize(morse, start, fmax=np.inf)
    with pytest.raises(PhysNetInputError, match="^max_steps must be an integer >= 1, received 0$"):
        minimize(morse, start, max_steps=0)
    with pytest.raises(PhysNetInputError, match=r"^max_steps must be an integer >= 1, received 2.0 \(float\)$"):
        minimize(morse, start, max_steps=2.0)  # main: accepted, where every other count refuses a float


def test_minimize_returns_only_geometries_within_fmax_whatever_step_it_stops_at():
    """Stopped after 1, 2, ... L-BFGS steps on an anisotropic quartic well: each call either returns a geometry whose
    max |F| (recomputed here by autodiff) is ≤ fmax, or raises with the max |F| it stopped at, above fmax, including
    stops within 10 × fmax (the ones a loose acceptance test would pass as converged)."""
    stiffness = jnp.array([[0.5, 3.0, 20.0], [1.0, 7.0, 40.0], [2.0, 0.7, 90.0]])

    def well(positions):
        x = positions - jnp.array([[0.1, -0.2, 0.3], [1.0, 0.5, -0.4], [-0.7, 0.2, 0.9]])
        return jnp.sum(stiffness * x**2) + 0.3 * jnp.sum(x**4)

    fmax, start, stopped_near = 1e-4, np.zeros((3, 3)), []
    for steps in range(1, 60):
        try:
            result = minimize(well, start, fmax=fmax, max_steps=steps)
        except OptimizationError as stopped:
            assert stopped.fmax > fmax
            if stopped.fmax <= 10 * fmax:
                stopped_near.append(steps)
        else:
            with jax.enable_x64(True):
                forces = -np.asarray(jax.grad(well)(jnp.asarray(result.positions)))
            assert result.fmax == pytest.approx(np.linalg.norm(forces, axis=1).max(), rel=1e-9) and result.fmax <= fmax
            break
    else:
        pytest.fail("no convergence within 59 steps")
    assert stopped_near, "no stop between fmax and 10 fmax: the sweep does not test what it is for"


@pytest.mark.parametrize("max_step", [0.2, 0.05])
def test_no_atom_moves_further_than_max_step_in_one_step(max_step):
    """A bound on each step keeps the optimisation in the basin of its start (ASE's maxstep): a stiff well 5 Å away
    is approached in steps of exactly max_step (the L-BFGS step, bounded, satisfies the sufficient decrease in a
    convex well), never in one jump (optax's zoom line search, used before, lengthened its first step to 10 Å)."""
    minimum = np.array([[5.0, 0.0, 0.0], [6.0, 0.0, 0.0]])

    def well(positions):
        return 30.0 * jnp.sum((positions - minimum) ** 2)

    start = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    moved = []
    for steps in (1, 2, 3):
        with pytest.raises(OptimizationError, match=f"after max_steps={steps}") as stopped:
            minimize(well, start, max_steps=steps, max_step=max_step)
        moved.append(np.linalg.norm(stopped.value.positions - start, axis=1).max())
    np.testing.assert_allclose(moved, max_step * np.arange(1, 4), rtol=1e-12)
    assert minimize(well, start, max_step=max_step).positions == pytest.approx(minimum, abs=1e-5)
    with pytest.raises(ValueError, match=r"^max_step must be finite and > 0 Å, received 0\.0$"):
        minimize(well, start, max_step=0.0)


def test_a_start_on_a_concave_slope_relaxes_into_the_well():
    """E = x⁴/4 − x²/2 + y² + z² per atom (wells at x = ±1, a ridge at x = 0) from x = 0.1, where E is concave along the
    first steps (s·y < 0): an L-BFGS update from such a pair makes the inverse Hessian negative and the next
    direction uphill; such pairs are left out, and the atoms reach x = 1 exactly."""

    def double_well(positions):
        x = positions[:, 0]
        return jnp.sum(x**4 / 4.0 - x**2 / 2.0) + jnp.sum(positions[:, 1:] ** 2)

    start = np.array([[0.1, 0.0, 0.0], [0.2, 0.05, 0.0]])
    result = minimize(double_well, start, fmax=1e-9)
    np.testing.assert_allclose(result.positions, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-8)


def sorted_distances(positions):
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return np.sort(distances[np.triu_indices(len(positions), 1)])


@pytest.mark.parametrize("molecule", ["co2", "ethanol"])
def test_starts_a_tenth_of_an_angstrom_off_relax_back_to_the_minimum_as_with_ase_bfgs(molecule):
    """The shipped models' minima displaced by 0.1 Å (normal noise per coordinate, seeds 0-7: MD snapshots, say):
    from every start where ASE's BFGS (maxstep 0.2 Å, the oracle) relaxes back to the minimum, so does the
    optimisation. With optax's zoom line search, which lengthened its steps freely, CO2 from 2 of these starts and
    ethanol from 1 reached collapsed spurious minima of the model (C–O 0.61 Å; two atoms 0.40 Å apart), refused by
    the collapse check, passed as converged before it. (The shipped CO2 model has spurious minima 0.1-0.3 Å from its true one, which BFGS
    reaches from 3 of the 8 CO2 starts.)"""
    from ase.optimize import BFGS

    from physnetjax.pretrained import co2_geometry_path, co2_model_path

    model_path, geometry_path = ((co2_model_path(), co2_geometry_path()) if molecule == "co2"
                                 else (example_model_path(), example_geometry_path()))
    model, params = load_checkpoint(model_path)
    numbers = ase.io.read(geometry_path).numbers
    minimum = optimize_geometry(model, params, numbers, ase.io.read(geometry_path).positions)
    oracle_reached = []
    with jax.enable_x64(True):
        calculator = PhysNetCalculator(model, params, dtype=np.float64)
        for seed in range(8):
            start = minimum.positions + np.random.default_rng(seed).normal(0.0, 0.1, minimum.positions.shape)
            atoms = ase.Atoms(numbers, positions=start, calculator=calculator)
            assert BFGS(atoms, maxstep=0.2, logfile=None).run(fmax=1e-4, steps=1000)
            if abs(atoms.get_potential_energy() - minimum.energy) > 1e-6:
                continue  # the start lies in another basin of the model
            oracle_reached.append(seed)
            relaxed = optimize_geometry(model, params, numbers, start)
            assert relaxed.energy == pytest.approx(minimum.energy, abs=1e-6), seed
            np.testing.assert_allclose(sorted_distances(relaxed.positions), sorted_distances(minimum.positions),
                                       atol=1e-3)
    assert len(oracle_reached) >= 5, oracle_reached


def test_a_far_start_reaches_the_minimum_ase_bfgs_reaches():
    """A bent CO2 (C–O 1.21 / 1.33 Å, max |F| 1.7 eV/Å) far from the shipped model's minimum: the optimisation ends
    where ASE's BFGS (maxstep 0.2 Å), driving the calculator, ends (C–O 1.28 / 1.78 Å, a minimum of this model);
    optax's zoom line search reached C–O 0.43 Å in one step."""
    from ase.optimize import BFGS

    from physnetjax.pretrained import co2_geometry_path, co2_model_path

    model, params = load_checkpoint(co2_model_path())
    start = np.array([[0.0, 0.0, 0.0], [0.0, 1.1, 0.5], [0.0, -0.3, -1.3]])
    atoms = ase.Atoms(ase.io.read(co2_geometry_path()).numbers, positions=start)
    ours = optimize_geometry(model, params, atoms.numbers, start, fmax=1e-4)
    with jax.enable_x64(True):
        atoms.calc = PhysNetCalculator(model, params, dtype=np.float64)
        assert BFGS(atoms, maxstep=0.2, logfile=None).run(fmax=1e-4, steps=500)
        np.testing.assert_allclose(sorted_distances(ours.positions), sorted_distances(atoms.positions), atol=1e-3)
        assert ours.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-6)


@jax.custom_jvp
def energy_with_wrong_gradient(positions):
    return jnp.sum(positions**2)


@energy_with_wrong_gradient.defjvp
def _shifted_gradient(primals, tangents):
    (positions,), (displacement,) = primals, tangents
    return jnp.sum(positions**2), jnp.sum((2.0 * positions + 2.0) * displacement)


def test_minimize_stops_when_the_line_search_finds_no_decrease():
    # E = Σ r² but the "gradient" 2r + 2 vanishes at r = −1, uphill: near r = 0 no step lowers E.
    with pytest.raises(OptimizationError, match="no lower energy.*gradient does not match") as caught:
        minimize(energy_with_wrong_gradient, np.full((2, 3), 0.5), fmax=1e-6)
    assert caught.value.steps < 10 and caught.value.fmax > 1.0


def test_optimize_geometry_validates_the_total_charge_as_harmonic_does(charge_model):
    """A NaN charge was an OptimizationError (run stopped, exit 4) after a NaN energy, and +100 e on ethanol
    (ΣZ = 26) optimised without a word; both are input errors, as in harmonic()."""
    model, params, z, r = charge_model
    for charge, message in ((float("nan"), "total_charge must be finite"),
                            (100.0, "larger than the number of electrons")):
        for function in (optimize_geometry, harmonic):
            with pytest.raises(PhysNetInputError, match=message):
                function(model, params, z, r, total_charge=charge)


def test_a_molecule_in_bohr_read_as_angstrom_warns(charge_model):
    """Ethanol's coordinates × 1.8897: the shipped ethanol_ir model has a spurious minimum with neighbours 2.3-3.2 Å
    apart there, and `spectra harmonic` reported its ZPE (0.58 eV) and modes from 76 cm^-1 without a word."""
    model, params, z, r = charge_model
    in_bohr = r / BOHR_IN_ANGSTROM
    message = r"atoms sit 1\.[89]\d× the covalent bond length .* are they in bohr \(multiply by 0\.529177\)\?"
    with pytest.warns(PhysNetInputWarning, match=message), pytest.warns(NonMinimumWarning):
        harmonic(model, params, z, in_bohr, optimize=False)
    with pytest.warns(PhysNetInputWarning, match=message), pytest.raises(OptimizationError):
        optimize_geometry(model, params, z, in_bohr, max_steps=1)
    with pytest.warns(PhysNetInputWarning, match=message), pytest.raises(ValueError, match="temperature_K"):
        md_spectrum(model, params, z, in_bohr, temperature_K=-1.0, time_ps=1.0)  # warns before the settings check
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        check_length_unit(z, r)  # the molecule in Å
        check_length_unit([8, 1], [[0.0, 0.0, 0.0], [0.0, 0.0, 50.0]])  # atoms apart: fragments, not bohr
        check_length_unit([8], [[0.0, 0.0, 0.0]])


@pytest.mark.slow
def test_an_optimised_geometry_far_from_bonding_distances_warns():
    """CO2⁺ with the shipped CO2 model (trained on neutral CO2 only), started stretched (C–O 2.6 Å): the optimisation
    ends at a spurious minimum with the atoms 2.1× the covalent bond length apart (C–O 3.0 Å, modes below
    300 cm^-1), reported without a word."""
    from physnetjax.pretrained import co2_geometry_path, co2_model_path

    from physnetjax.training_record import TrainingRecord

    model, params, metadata = load_checkpoint(co2_model_path(), with_metadata=True)
    atoms = ase.io.read(co2_geometry_path())
    with pytest.warns(PhysNetInputWarning, match=r"the optimised geometry has its atoms 2\.1\d× the covalent bond "
                                                 r"length .* a minimum of the model far from any bonded molecule"
                      ) as caught:
        cation = harmonic(model, params, atoms.numbers, 2.3 * atoms.positions, total_charge=1.0,
                          training_record=TrainingRecord.from_metadata(metadata))
    assert cation.frequencies_cm1.max() < 300.0
    assert [str(w.message) for w in caught].count(  # the charge state was never trained: said before any work
        "total charge +1 e never occurred in this model's training data (trained on total charge 0 e); its energy, "
        "forces and charges for this charge state are an extrapolation; add frames of this charge state to the "
        "training data") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        harmonic(model, params, atoms.numbers, atoms.positions)  # the neutral molecule it was trained on


def test_an_optimisation_that_collapses_the_molecule_is_refused():
    """CO2 in nm read as Å (C–O 0.11 Å) relaxed with the shipped CO2 model to a spurious minimum of the model (C–O
    0.42 Å, 0.05 eV *below* the true minimum; 0.24 Å with bounded steps), and `spectra harmonic` reported its modes
    (two imaginary) with exit 0. (A bent CO2 relaxed so to 0.43 Å while the line search could lengthen its steps:
    test_a_far_start_reaches_the_minimum_ase_bfgs_reaches.)"""
    from physnetjax.pretrained import co2_geometry_path, co2_model_path

    message = (r"collapsed geometry: atoms 0-\d at 0\.\d+ Å, 0\.\d+× their covalent bond length.*the start has its atoms "
               r"0\.0\d× the covalent bond length apart: positions must be in Å: are they in nm \(multiply by 10\)\?")
    model, params = load_checkpoint(co2_model_path())
    atoms = ase.io.read(co2_geometry_path())
    positions = atoms.positions * 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhysNetInputWarning)  # the nm start's close contacts
        with pytest.raises(OptimizationError, match=message) as error:
            optimize_geometry(model, params, atoms.numbers, positions)
        assert np.linalg.norm(error.value.positions[0] - error.value.positions[1]) < 0.5  # the collapsed geometry
        with pytest.raises(OptimizationError, match="collapsed geometry"):
            harmonic(model, params, atoms.numbers, positions)


def test_a_loose_fmax_warns_that_the_analysed_geometry_is_no_minimum():
    """--fmax 1e6 analysed a CO2 at max |F| = 4.9 eV/Å (asymmetric stretch 2247 instead of 2594 cm^-1) and fmax 1.0
    at 0.106 eV/Å without a word: only optimize=False compared the forces with fmax."""
    from physnetjax.pretrained import co2_geometry_path, co2_model_path

    model, params = load_checkpoint(co2_model_path())
    atoms = ase.io.read(co2_geometry_path())
    stretched = atoms.positions.copy()
    stretched[1, 2] += 0.02  # one C–O bond 0.02 Å longer: max |F| = 2.1 eV/Å
    with pytest.warns(NonMinimumWarning, match=r"analysed at max \|F\| = 2\.\d+e\+00 eV/Å \(optimised to fmax=1\.0e\+06 "
                                               r"eV/Å\).* rigid-body block, 0 at a minimum, reaches .*give "
                                               r"fmax <= 0\.001 \(default 0\.0001\)"):
        loose = harmonic(model, params, atoms.numbers, stretched, fmax=1e6)
    assert loose.optimization.steps == 0 and loose.max_force > 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonMinimumWarning)
        tight = harmonic(model, params, atoms.numbers, stretched, fmax=1e-3)
    assert tight.max_force <= 1e-3


def test_a_geometry_in_bohr_is_refused_after_its_spurious_minimum():
    """CO2 in bohr read as Å: the shipped model relaxes it to C–O 1.96 Å (below the optimised-geometry warning's
    1.5× ratio), 1.43 eV above its true minimum, and `spectra harmonic` printed a 71 cm^-1 bend and exit 0 after one
    warning about the start; the ethanol model's 2.4× minimum was not flagged (its warning was skipped when the start
    had warned). Relaxed again from the positions × 0.529177, both reach a lower minimum: the start is refused."""
    from physnetjax.pretrained import co2_geometry_path, co2_model_path

    model, params = load_checkpoint(co2_model_path())
    atoms = ase.io.read(co2_geometry_path())
    bohr = atoms.positions / ase.units.Bohr
    with pytest.warns(PhysNetInputWarning, match="are they in bohr"), pytest.raises(
            PhysNetInputError, match=r"the positions look like bohr \(atoms 1\.52× .*minimum of the model 1\.4\d eV "
                                     r"above the one reached from them × 0\.529177"):
        harmonic(model, params, atoms.numbers, bohr)
    with pytest.warns(PhysNetInputWarning, match="are they in bohr"), pytest.raises(PhysNetInputError,
                                                                                    match="look like bohr"):
        optimize_geometry(model, params, atoms.numbers, bohr)


def test_a_total_charge_for_a_model_without_charges_warns_in_the_spectra():
    """The shipped ethanol model has no charges: `spectra harmonic --total-charge 1` reported the neutral
    molecule's modes for the cation without a word. Each call warns before its (here failing) settings check."""
    model, params = load_checkpoint(example_model_path())
    atoms = ase.io.read(example_geometry_path())
    z, r = atoms.numbers, atoms.positions
    message = r"total charge 1 e given to a model without charges \(charges=False\)"
    with pytest.warns(PhysNetInputWarning, match=message), pytest.raises(ValueError, match="IR intensities need"):
        harmonic(model, params, z, r, total_charge=1.0, intensities=True)
    with pytest.warns(PhysNetInputWarning, match=message), pytest.raises(ValueError, match="fmax must be finite"):
        optimize_geometry(model, params, z, r, total_charge=1.0, fmax=-1.0)
    with pytest.warns(PhysNetInputWarning, match=message), pytest.raises(ValueError, match="temperature_K"):
        md_spectrum(model, params, z, r, total_charge=1.0, temperature_K=-1.0, time_ps=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        with pytest.raises(ValueError, match="IR intensities need"):
            harmonic(model, params, z, r, intensities=True)


# -- command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_inputs(charge_model, tmp_path_factory):
    model, params, z, r = charge_model
    root = tmp_path_factory.mktemp("cli")
    save_checkpoint(root / "model", model, params)
    ase.io.write(root / "ethanol.extxyz", ase.Atoms(numbers=z, positions=r))
    return root


def run_cli(capsys, *argv):
    status = spectra_main(["harmonic", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_writes_json_table_and_png(cli_inputs, charged_result, capsys):
    out = cli_inputs / "out"
    status, stdout, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                     cli_inputs / "ethanol.extxyz", "--out", out, "--fmax", "1e-6")
    assert status == 0, stderr
    document = json.loads((out / "harmonic.json").read_text())
    for key in ("frequencies_cm1", "intensities_km_mol", "zero_point_energy_eV", "optimized_positions"):
        assert key in document
    np.testing.assert_allclose(document["frequencies_cm1"], charged_result.frequencies_cm1, rtol=1e-6)
    np.testing.assert_allclose(document["intensities_km_mol"], charged_result.intensities_km_mol, rtol=1e-4)
    assert np.shape(document["optimized_positions"]) == (9, 3)
    assert document["model"] == {"ensemble_members": 1, "analysed": "the model's energy and dipole"}
    assert (out / "harmonic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in stdout.splitlines() if line.strip()[:2].strip().isdigit()]
    assert len(rows) == 21 and "km/mol" in stdout


def test_cli_warns_in_one_line_at_a_non_minimum(cli_inputs, capsys, tmp_path):
    status, stdout, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                     cli_inputs / "ethanol.extxyz", "--out", tmp_path, "--no-optimize", "--no-plot")
    assert status == 0
    assert stderr.startswith("python -m physnetjax.spectra: warning: the geometry is not a minimum: max |F| = ") and stderr.count("\n") == 1
    # main: "> fmax = 1.0e-04 eV/Å; ... (use optimize=True)", the Python keywords
    assert stderr.endswith(" eV/Å > --fmax 1.0e-04 eV/Å; frequencies at a non-stationary point are not those of the "
                           "molecule (leave out --no-optimize to optimise first)\n")
    document = json.loads((tmp_path / "harmonic.json").read_text())
    assert document["optimized"] is False and document["max_force_eV_per_A"] > 1e-4
    assert not (tmp_path / "harmonic.png").exists()
    used = tomllib.loads((tmp_path / "config.toml").read_text())
    assert (used["no_optimize"], used["no_plot"], used["geometry"]) == (True, True, str(cli_inputs / "ethanol.extxyz"))


def test_cli_removes_the_results_of_an_earlier_run_into_the_same_out(cli_inputs, capsys, tmp_path):
    """A plot this run does not draw, or results of another geometry beside this run's settings after it failed,
    passed for this run's (the probe found an old harmonic.png beside a new harmonic.json). Files of those names
    without an earlier run's config.toml are the user's: refused, kept (a user's spectrum.csv was deleted by
    spectra ir --out .)."""
    (tmp_path / "harmonic.png").write_bytes(b"an earlier plot")
    (tmp_path / "harmonic.json").write_text("{}")
    status, _, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                cli_inputs / "ethanol.extxyz", "--out", tmp_path, "--no-optimize", "--no-plot")
    assert status == 3 and stderr.endswith(f"--out {tmp_path} holds harmonic.json, harmonic.png but no earlier run of "
                                           "python -m physnetjax.spectra harmonic (no config.toml of it): this run "
                                           "would replace them; choose another --out, or move them out of it\n")
    assert (tmp_path / "harmonic.png").read_bytes() == b"an earlier plot"  # a user's files: kept
    (tmp_path / "config.toml").write_text("# Options used by this run of python -m physnetjax.spectra harmonic "
                                          "(TOML).\n")  # an earlier run's, beside its results
    status, stdout, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                     cli_inputs / "ethanol.extxyz", "--out", tmp_path, "--no-optimize", "--no-plot")
    assert status == 0, stderr
    assert f"removed {tmp_path / 'harmonic.png'}, written by an earlier run into this --out" in stdout
    assert not (tmp_path / "harmonic.png").exists() and json.loads((tmp_path / "harmonic.json").read_text())
    status, stdout, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                     cli_inputs / "ethanol.extxyz", "--out", tmp_path, "--max-steps", "1")
    assert status == 4 and not (tmp_path / "harmonic.json").exists()  # the failed run leaves no stale results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "unconverged.xyz"]


def test_cli_ir_keeps_a_users_spectrum_csv_in_out(cli_inputs, capsys, tmp_path):
    """spectra ir --out . in a folder holding an experimental spectrum.csv removed it before its MD."""
    (tmp_path / "spectrum.csv").write_text("wavenumber,absorbance\n")
    status = spectra_main(["ir", "--checkpoint", str(cli_inputs / "model"), "--geometry",
                           str(cli_inputs / "ethanol.extxyz"), "--out", str(tmp_path), "--temperature", "300",
                           "--time-ps", "1"])
    assert status == 3 and capsys.readouterr().err.endswith(
        f"--out {tmp_path} holds spectrum.csv but no earlier run of python -m physnetjax.spectra ir (no config.toml "
        "of it): this run would replace them; choose another --out, or move them out of it\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spectrum.csv"]
    assert (tmp_path / "spectrum.csv").read_text() == "wavenumber,absorbance\n"


def test_cli_refuses_options_a_choice_leaves_unused(cli_inputs, capsys, tmp_path):
    """--no-optimize --max-steps 5 ran without a word (the optimiser's options set nothing), as did
    --equilibration-ps 0 --friction 0.05 for spectra ir; a config file's value counts too."""
    common = ("--checkpoint", cli_inputs / "model", "--geometry", cli_inputs / "ethanol.extxyz", "--out", tmp_path)
    status, _, stderr = run_cli(capsys, *common, "--no-optimize", "--max-steps", "5", "--max-step", "0.1")
    assert status == 2 and stderr.endswith("error: --no-optimize does not use --max-steps, --max-step: remove them "
                                           "or leave out --no-optimize\n")
    config = tmp_path / "steps.toml"
    config.write_text("max_steps = 5\n")
    status, _, stderr = run_cli(capsys, *common, "--no-optimize", "--config", config)
    assert status == 2 and stderr.endswith(f"error: --no-optimize does not use --max-steps (set in --config {config}): "
                                           "remove it or leave out --no-optimize\n")
    status = spectra_main(["ir", *map(str, common), "--temperature", "300", "--time-ps", "1", "--equilibration-ps", "0",
                           "--friction", "0.05"])
    assert status == 2 and capsys.readouterr().err.endswith(
        "error: --equilibration-ps 0 does not use --friction (Langevin equilibration only): remove it or give an "
        "--equilibration-ps > 0\n")
    assert not (tmp_path / "harmonic.json").exists() and not (tmp_path / "config.toml").exists()


def test_cli_json_records_the_total_charge_from_the_geometry(charge_model, capsys, tmp_path):
    """A cation by info['charge']: harmonic.json held no total charge (and config.toml none either: it was not an
    option), so the file did not say which charge state its frequencies and intensities are of."""
    model, params, z, r = charge_model
    save_checkpoint(tmp_path / "model", model, params)
    ase.io.write(tmp_path / "cation.extxyz", ase.Atoms(numbers=z, positions=r, info={"charge": 1}))
    status, _, stderr = run_cli(capsys, "--checkpoint", tmp_path / "model", "--geometry", tmp_path / "cation.extxyz",
                                "--out", tmp_path / "out", "--no-optimize", "--no-plot")
    assert status == 0, stderr
    document = json.loads((tmp_path / "out" / "harmonic.json").read_text())
    assert document["total_charge_e"] == 1.0 and document["units"]["total_charge_e"] == "e"
    with pytest.warns(NonMinimumWarning):
        expected = harmonic(model, params, z, r, total_charge=1.0, optimize=False)
    assert expected.total_charge == 1.0
    np.testing.assert_allclose(document["frequencies_cm1"], expected.frequencies_cm1, rtol=1e-9)


def test_cli_warns_for_elements_outside_the_training_data(charge_model, cli_inputs, capsys, tmp_path):
    """As md does: the checkpoint's trained_elements (here H and C only) make the oxygen of ethanol warn."""
    model, params, _, _ = charge_model
    save_checkpoint(tmp_path / "model", model, params, {"trained_elements": [1, 6]})
    status, _, stderr = run_cli(capsys, "--checkpoint", tmp_path / "model", "--geometry",
                                cli_inputs / "ethanol.extxyz", "--out", tmp_path / "out", "--no-optimize", "--no-plot")
    assert status == 0
    assert "warning: " in stderr and "O (Z=8)" in stderr and "never occurred in this model's training data" in stderr


@pytest.mark.parametrize("r2, caveat", [(0.13, True), (0.95, False)])
def test_cli_says_beside_the_intensities_when_the_recorded_dipole_r2_makes_them_unreliable(
        charge_model, cli_inputs, capsys, tmp_path, r2, caveat):
    """Intensities of a model whose dipole missed its geometry dependence (formaldehyde: frequencies within 0.25 %,
    C=O stretch 2.5 km/mol against xTB's 151) were printed without a word; the trainer's record now says so.
    (Without a record: test_cli_warns_in_one_line_at_a_non_minimum, whose only warning is the non-minimum one.)"""
    from physnetjax.dipole_surface import DIPOLE_SURFACE_KEY

    model, params, _, _ = charge_model
    fit = {"r2": r2, "frames": 40, "compositions": 1, "spread_rms": 0.014, "error_rms": 0.013}
    save_checkpoint(tmp_path / "model", model, params, {"source_metadata": {DIPOLE_SURFACE_KEY: {"valid": None,
                                                                                                 "test": fit}}})
    status, stdout, stderr = run_cli(capsys, "--checkpoint", tmp_path / "model", "--geometry",
                                     cli_inputs / "ethanol.extxyz", "--out", tmp_path / "out", "--no-optimize",
                                     "--no-plot")
    assert status == 0 and "km/mol" in stdout
    said = (f"python -m physnetjax.spectra: warning: the model's dipole follows the geometry poorly: dipole R² in "
            f"the molecular frame {r2:.2f} on the test split")
    assert (said in stderr) is caveat and ("IR intensities" in stderr) is caveat


@pytest.mark.slow
def test_cli_warns_that_two_atoms_beyond_the_cutoff_have_a_zero_mode_and_no_vibration(capsys, tmp_path):
    """The shipped ethanol model (5 Å cutoff) on O and H 50 Å apart: the one mode is their free relative motion.
    (The model, trained on ethanol alone, also says that the absolute energy of HO carries an E0 offset, and that
    O and H without a neighbour within its cutoff lie outside its training distances, at the input and optimised.)"""
    ase.io.write(tmp_path / "apart.xyz", ase.Atoms("OH", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 50.0]]))
    status, stdout, stderr = run_cli(capsys, "--checkpoint", example_model_path(), "--geometry",
                                     tmp_path / "apart.xyz", "--out", tmp_path / "out", "--no-plot")
    assert status == 0, stderr
    zero_mode = [line for line in stderr.splitlines() if "zero-frequency" in line]
    assert len(zero_mode) == 1 and zero_mode[0].startswith(
        "python -m physnetjax.spectra: warning: 1 zero-frequency mode(s) besides the 5 rigid-body motions, not "
        "vibrations")
    assert "2 separate fragments (atoms 0 | 1; no atom within the model cutoff of 5 Å" in zero_mode[0]
    assert stderr.count("\n") == 4 and "composition(s) HO are not combinations of the training compositions" in stderr
    for where in ("", "optimised geometry: "):
        assert (f"python -m physnetjax.spectra: warning: {where}atom 0 (O) has no neighbour within the cutoff 5 Å; the "
                "training data's longest nearest-neighbour distance of O was 1.09 Å (and 1 more such atom(s))") in stderr
    row = [line for line in stdout.splitlines() if line.startswith("   1 ")]
    assert len(row) == 1 and row[0].endswith("zero mode")
    assert "1 zero mode(s): not vibrations but free motions of 2 separate fragments" in stdout
    document = json.loads((tmp_path / "out" / "harmonic.json").read_text())
    assert document["zero_modes"] == [True] and document["fragments"] == [[0], [1]]
    assert document["zero_point_energy_eV"] == 0.0


def test_cli_refuses_a_folder_that_is_no_checkpoint_before_writing_out(capsys, tmp_path):
    """A --checkpoint folder that exists but holds no checkpoint was named only after --out and its config.toml had
    been written."""
    from physnetjax.pretrained import co2_model_path

    status, _, stderr = run_cli(capsys, "--checkpoint", co2_model_path().parent, "--geometry", example_geometry_path(),
                                "--out", tmp_path / "out", "--no-plot")
    assert status == 2 and "is not a checkpoint" in stderr
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_periodic_geometry_before_any_work(capsys, tmp_path):
    """Ethanol in a 5 Å cubic cell (pbc T T T): harmonic and ir analysed it as an isolated molecule, ignoring the
    cell and the periodic images within the 5 Å cutoff, and wrote the spectra without a word."""
    periodic = ase.io.read(example_geometry_path())
    periodic.cell, periodic.pbc = [5.0, 5.0, 5.0], True
    ase.io.write(tmp_path / "periodic.extxyz", periodic)
    common = ["--checkpoint", example_model_path(), "--geometry", tmp_path / "periodic.extxyz", "--no-plot"]
    for command, extra in (("harmonic", []), ("ir", ["--temperature", "300", "--time-ps", "1"])):
        out = tmp_path / command
        status = spectra_main([command, *map(str, common + extra), "--out", str(out)])
        stderr = capsys.readouterr().err
        assert status == 2 and stderr.count("\n") == 1
        assert stderr == (f"python -m physnetjax.spectra: error: --geometry {tmp_path / 'periodic.extxyz'} is periodic "
                          "(pbc=[True, True, True]); the spectra are of an isolated molecule and would ignore the cell "
                          "and the periodic images: write the molecule with pbc=False\n")
        assert not out.exists()


def test_cli_refuses_an_output_file_that_is_a_directory_before_any_work(capsys, tmp_path):
    """OUT/harmonic.json (OUT/spectrum.csv) as a directory: the whole analysis (and MD) ran, then writing failed
    with '[Errno 21] Is a directory'. Now it is refused with the other output checks (exit 3)."""
    common = ["--checkpoint", example_model_path(), "--geometry", example_geometry_path(), "--no-plot"]
    for command, name, extra in (("harmonic", "harmonic.json", []),
                                 ("ir", "spectrum.csv", ["--temperature", "300", "--time-ps", "1"])):
        out = tmp_path / command
        (out / name).mkdir(parents=True)
        status = spectra_main([command, *map(str, common + extra), "--out", str(out)])
        stderr = capsys.readouterr().err
        assert status == 3 and stderr == (f"python -m physnetjax.spectra: error: --out {out}: {out / name} is a "
                                          f"directory where the output file {name} goes; remove it or choose another "
                                          "--out\n")
        assert sorted(path.name for path in out.iterdir()) == [name]  # not even config.toml


def test_cli_errors_are_one_line(cli_inputs, capsys, tmp_path):
    model, xyz = cli_inputs / "model", cli_inputs / "ethanol.extxyz"
    junk = tmp_path / "junk.xyz"
    junk.write_text("not a geometry\n")
    nan_xyz = tmp_path / "nan.xyz"
    nan_xyz.write_text("2\n\nH 0.0 0.0 0.0\nH nan 0.0 0.74\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    blocker.with_name("notes.txt").write_text("H 0 0 0\n")
    prefix = "python -m physnetjax.spectra: error: "
    cases = [  # exit codes of physnetjax.cli_errors: 2 bad input, 4 run stopped
        (["--checkpoint", tmp_path / "missing", "--geometry", xyz], "does not exist", 2),
        (["--checkpoint", model, "--geometry", junk], f"--geometry {junk}: ASE cannot read it", 2),
        # main: "cannot read --geometry notes.txt: txt"
        (["--checkpoint", model, "--geometry", blocker.with_name("notes.txt")], "notes.txt: ASE cannot read it: it "
         "does not know this file format (txt); give a structure file ASE reads, e.g. .xyz, .extxyz, .traj or .pdb", 2),
        (["--checkpoint", model, "--geometry", xyz, "--masses", "1", "2"], "--masses must have shape (9,), one mass "
                                                                            "per atom, received shape (2,)", 2),
        (["--checkpoint", model, "--geometry", nan_xyz], "NaN or Inf", 2),
        (["--checkpoint", model, "--geometry", xyz, "--total-charge", "nan"], "--total-charge must be finite", 2),
        (["--checkpoint", model, "--geometry", xyz, "--max-steps", "2"], "after --max-steps 2; raise --max-steps", 4),
    ]
    for argv, message, expected_status in cases:
        status, _, stderr = run_cli(capsys, *argv, "--out", tmp_path / "out", "--no-plot")
        assert status == expected_status, (message, status)
        assert stderr.startswith(prefix) and message in stderr and stderr.count("\n") == 1, stderr
    status, _, stderr = run_cli(capsys, "--checkpoint", model, "--geometry", xyz, "--out", blocker / "sub")
    assert status == 3 and stderr.startswith(f"{prefix}--out {blocker / 'sub'}: {blocker} is a file, not a folder the "
                                             "directory can be created in; choose another --out")
    assert stderr.count("\n") == 1
    status, _, stderr = run_cli(capsys, "--checkpoint", tmp_path / "missing", "--geometry", xyz,
                                "--out", tmp_path / "out", "--verbose")
    assert status == 2 and "Traceback" in stderr and stderr.rstrip().splitlines()[-1].startswith(prefix)


def test_cli_writes_the_last_geometry_of_an_unconverged_optimisation(cli_inputs, charge_model, charged_result,
                                                                     capsys, tmp_path):
    """On main the command line said "the last geometry is kept in the error's .positions" and kept it nowhere."""
    model, params, z, r = charge_model
    with pytest.raises(OptimizationError) as caught:
        optimize_geometry(model, params, z, r, max_steps=2)
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                cli_inputs / "ethanol.extxyz", "--out", out, "--max-steps", "2", "--no-plot")
    last = out / "unconverged.xyz"
    assert status == 4 and stderr.count("\n") == 1 and ".positions" not in stderr
    assert stderr.rstrip().endswith(
        f"after --max-steps 2; raise --max-steps (last energy {caught.value.energy:.8f} eV); the last geometry is "
        f"kept in {last}: continue from it with --geometry {last}")
    written = ase.io.read(last)
    np.testing.assert_array_equal(written.numbers, z)
    np.testing.assert_allclose(written.positions, caught.value.positions, rtol=0, atol=1e-8)  # extxyz: 8 decimals
    assert written.info["steps"] == 2 and written.info["energy_eV"] == pytest.approx(caught.value.energy, abs=1e-9)
    assert written.info["charge"] == 0.0
    assert not (out / "harmonic.json").exists()
    # the file keeps the charge it ran at: without it, continuing from it ran the cation as the neutral molecule
    status, _, _ = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry", cli_inputs / "ethanol.extxyz",
                           "--out", tmp_path / "cation", "--max-steps", "2", "--no-plot", "--total-charge", "1")
    assert status == 4 and ase.io.read(tmp_path / "cation" / "unconverged.xyz").info["charge"] == 1.0
    status, _, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry", last, "--out", out,
                                "--fmax", "1e-8", "--no-plot")
    assert status == 0, stderr
    document = json.loads((out / "harmonic.json").read_text())
    # the minimum charged_result reached from r: at max |F| <= 1e-8 eV/Å the energies agree to round-off
    assert document["energy_eV"] == pytest.approx(charged_result.energy, abs=1e-9)
    assert last.is_file()  # the run's own --geometry: an input is kept
    status, printed, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                      cli_inputs / "ethanol.extxyz", "--out", out, "--no-plot")
    # main left the earlier run's unconverged.xyz beside this run's converged harmonic.json
    assert status == 0 and not last.exists(), stderr
    assert f"removed {last}, the unconverged geometry of an earlier run into this --out" in printed


def test_cli_shows_the_input_warnings_before_an_optimisation_error(capsys, tmp_path):
    """A warning recorded during the analysis was printed only after a successful one: --total-charge 1 for the
    shipped ethanol model (trained on neutral frames only) and an optimisation cut at one step printed the error
    alone."""
    status, _, stderr = run_cli(capsys, "--checkpoint", example_model_path(), "--geometry", example_geometry_path(),
                                "--out", tmp_path / "out", "--total-charge", "1", "--max-steps", "1", "--no-plot")
    assert status == 4
    assert "total charge +1 e never occurred in this model's training data" in stderr
    assert stderr.rstrip().splitlines()[-1].startswith("python -m physnetjax.spectra: error: geometry optimisation")


@pytest.mark.parametrize("options, message", [
    # main: "fmax must be > 0 eV/Å" / "max_steps must be >= 1" / "masses must be finite and > 0 amu", after loading
    # the model and writing OUT/config.toml
    (["--fmax", "0"], "--fmax must be finite and > 0 eV/Å, received 0.0"),
    (["--fmax", "inf"], "--fmax must be finite and > 0 eV/Å, received inf"),  # main: the start geometry, unoptimised
    (["--max-steps", "0"], "--max-steps must be an integer >= 1, received 0"),
    (["--max-step", "-0.1"], "--max-step must be finite and > 0 Å, received -0.1"),
    (["--masses", *["1"] * 8, "-1"], "--masses must be finite and > 0 amu; received [-1.0] at atom indices [8]"),
    # main: "total_charge must be finite" / "total_charge 100 e is larger ...", after writing OUT/config.toml
    (["--total-charge", "nan"], "--total-charge must be finite, received nan"),
    (["--total-charge", "100"], "--total-charge 100 e is larger than the number of electrons of the neutral structure "
                                "(ΣZ = 26); is the sign right?"),
])
def test_cli_names_the_option_of_a_bad_value_before_any_work(cli_inputs, capsys, tmp_path, options, message):
    status, _, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                cli_inputs / "ethanol.extxyz", "--out", tmp_path / "out", "--no-plot", *options)
    assert status == 2 and stderr == f"python -m physnetjax.spectra: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_cli_names_the_total_charge_option_beside_the_initial_charges(charge_model, cli_inputs, capsys, tmp_path):
    """A geometry with initial charges and --total-charge: the warning said 'total_charge is 1 e; total_charge is
    used', naming the keyword."""
    _, _, z, r = charge_model
    atoms = ase.Atoms(numbers=z, positions=r, charges=np.r_[0.5, -0.5, np.zeros(len(z) - 2)])
    ase.io.write(tmp_path / "charged.extxyz", atoms)
    with pytest.warns(PhysNetInputWarning, match="the atoms' initial charges sum to 0 e but --total-charge is 1 e; "
                                                 "--total-charge is used"):
        status, _, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry",
                                    tmp_path / "charged.extxyz", "--out", tmp_path / "out", "--no-optimize",
                                    "--no-plot", "--total-charge", "1")
    assert status == 0, stderr


def test_cli_keeps_the_isotope_masses_the_geometry_file_stores(charge_model, cli_inputs, capsys, tmp_path):
    """An extxyz with the hydroxyl H as D (masses column): the analysis used the standard masses without a word,
    so the O-D file gave the O-H frequencies (md honours the same column)."""
    model, params, z, r = charge_model
    masses = ase.data.atomic_masses[z].copy()
    masses[3] = 2.014
    deuterated = ase.Atoms(numbers=z, positions=r, masses=masses)
    ase.io.write(tmp_path / "d.extxyz", deuterated)
    status, stdout, stderr = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry", tmp_path / "d.extxyz",
                                     "--out", tmp_path / "out", "--no-optimize", "--no-plot")
    assert status == 0, stderr
    assert "masses from --geometry: atom 3 (H) 2.014 amu (standard 1.008)" in stdout
    document = json.loads((tmp_path / "out" / "harmonic.json").read_text())
    np.testing.assert_allclose(document["masses_amu"], masses, rtol=1e-12)
    with pytest.warns(NonMinimumWarning):
        expected = harmonic(model, params, z, r, masses=masses, optimize=False)
    np.testing.assert_allclose(document["frequencies_cm1"], expected.frequencies_cm1, rtol=1e-9)
    status, stdout, _ = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry", tmp_path / "d.extxyz",
                                "--out", tmp_path / "given", "--no-optimize", "--no-plot",
                                "--masses", *ase.data.atomic_masses[z])
    assert status == 0 and "masses from --geometry" not in stdout
    assert json.loads((tmp_path / "given" / "harmonic.json").read_text())["masses_amu"][3] == pytest.approx(1.008)


def test_cli_warns_that_it_analyses_the_first_frame_of_a_trajectory(charge_model, cli_inputs, capsys, tmp_path):
    """A geometry file of 2 frames: the first was analysed without a word (md starts from the last)."""
    _, _, z, r = charge_model
    ase.io.write(tmp_path / "two.extxyz", [ase.Atoms(numbers=z, positions=r), ase.Atoms(numbers=z, positions=r + 0.1)])
    with pytest.warns(PhysNetInputWarning, match=r"two\.extxyz holds several frames: the analysis is of the first"):
        status, _, _ = run_cli(capsys, "--checkpoint", cli_inputs / "model", "--geometry", tmp_path / "two.extxyz",
                               "--out", tmp_path / "out", "--no-optimize", "--no-plot")
    assert status == 0
    np.testing.assert_allclose(json.loads((tmp_path / "out" / "harmonic.json").read_text())["optimized_positions"], r)


@pytest.mark.slow
def test_cli_says_an_ensemble_is_analysed_through_its_mean_energy(charge_model, cli_inputs, capsys, tmp_path):
    """An ensemble checkpoint: the table was printed as for one model, not saying whose frequencies they are; then
    harmonic.json did not say it (the printed note only), so a file of an ensemble read as one of a single model."""
    from physnetjax.ensemble import PhysNetEnsemble, stack_members

    model, params, _, _ = charge_model
    save_checkpoint(tmp_path / "ens", PhysNetEnsemble(member=model, size=2), stack_members([params, params]))
    status, stdout, stderr = run_cli(capsys, "--checkpoint", tmp_path / "ens", "--geometry",
                                     cli_inputs / "ethanol.extxyz", "--out", tmp_path / "out", "--no-optimize",
                                     "--no-plot")
    assert status == 0, stderr
    assert stdout.startswith("ensemble of 2 members: the analysis is of their mean energy and dipole (one Hessian, "
                             "the mean of theirs), not a spread over the members\n")
    document = json.loads((tmp_path / "out" / "harmonic.json").read_text())
    assert document["model"] == {"ensemble_members": 2, "analysed": "the members' mean energy and dipole"}


def test_the_json_model_entry_of_a_model_without_charges_names_no_dipole():
    """A model without charges has no dipole to analyse: its ``model`` entry names the energy alone."""
    from physnetjax.ensemble import PhysNetEnsemble
    from physnetjax.spectra.cli_harmonic import analysed_model

    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=8, charges=False, zbl=False)
    assert analysed_model(model) == {"ensemble_members": 1, "analysed": "the model's energy"}
    assert analysed_model(PhysNetEnsemble(member=model, size=3)) == {"ensemble_members": 3,
                                                                      "analysed": "the members' mean energy"}


@pytest.fixture
def drawn_sticks(monkeypatch):
    """(x, heights) of every ``Axes.vlines`` call while the test draws."""
    import matplotlib.axes

    drawn, original = [], matplotlib.axes.Axes.vlines

    def recording(self, x, ymin, ymax, *args, **kwargs):
        drawn.append((np.asarray(x, np.float64), np.asarray(ymax, np.float64)))
        return original(self, x, ymin, ymax, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "vlines", recording)
    return drawn


def test_degenerate_modes_are_one_stick_of_their_summed_intensity(tmp_path, drawn_sticks):
    """CO2's two bends were drawn on top of each other at one bend's height, half the line's intensity that
    `spectra ir` reports ("600.9 (x2) 135.47"). Modes within 1 cm⁻¹ are now one stick of their summed intensity;
    without intensities a line is as tall as its number of modes. Imaginary modes stay out."""
    from physnetjax.spectra.plot import plot_stick_spectrum

    frequencies = np.array([-30.0, 600.9, 1424.7, 600.9 + 1e-6, 2593.5])
    intensities = np.array([5.0, 67.7, 0.0, 67.8, 1069.0])
    plot_stick_spectrum(tmp_path / "ir.png", frequencies, intensities)
    plot_stick_spectrum(tmp_path / "modes.png", frequencies)
    (x, heights), (x_modes, counts) = drawn_sticks
    np.testing.assert_allclose(x, [600.9, 1424.7, 2593.5], atol=1e-5)
    np.testing.assert_allclose(heights, [135.5, 0.0, 1069.0], rtol=1e-12)
    np.testing.assert_allclose(x_modes, x)
    np.testing.assert_array_equal(counts, [2, 1, 1])


def test_ir_plot_sticks_merge_degenerate_modes(tmp_path, drawn_sticks):
    """The `spectra ir` figure's harmonic sticks, likewise: one per line, its modes' intensities summed."""
    from types import SimpleNamespace

    from physnetjax.spectra.cli_ir import plot_md_spectrum

    nu = np.linspace(0.0, 3000.0, 301)
    result = SimpleNamespace(frequencies_cm1=nu, power_spectrum=np.ones_like(nu), ir_spectrum=np.ones_like(nu))
    lines = SimpleNamespace(frequencies_cm1=np.array([0.0, 0.0, 600.9, 600.9, 1424.7, 2593.5]),
                            intensities_km_mol=np.array([9.0, 9.0, 67.7, 67.7, 0.0, 1069.0]),
                            imaginary=np.zeros(6, bool), zero_modes=np.array([True, True, False, False, False, False]))
    plot_md_spectrum(tmp_path / "spectrum.png", result, lines, np.ones(nu.shape, bool))
    (x, heights), = drawn_sticks
    np.testing.assert_allclose(x, [600.9, 1424.7, 2593.5])
    np.testing.assert_allclose(heights, [135.4, 0.0, 1069.0], rtol=1e-12)


def test_read_geometry_warns_only_of_several_frames_and_refuses_a_slab(tmp_path):
    """One frame reads without a word; a slab (periodic along x and y only) is refused as a bulk cell is."""
    from physnetjax.spectra.cli_harmonic import read_geometry

    molecule = ase.io.read(example_geometry_path())
    ase.io.write(tmp_path / "one.extxyz", molecule)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_geometry(tmp_path / "one.extxyz")) == len(molecule)
    molecule.cell, molecule.pbc = [9.0, 9.0, 9.0], [True, True, False]
    ase.io.write(tmp_path / "slab.extxyz", molecule)
    with pytest.raises(PhysNetInputError, match=r"slab\.extxyz is periodic \(pbc=\[True, True, False\]\)"):
        read_geometry(tmp_path / "slab.extxyz")


def test_mode_table_notes_one_imaginary_and_one_zero_mode_among_vibrations():
    from types import SimpleNamespace

    from physnetjax.spectra.cli_harmonic import mode_table

    result = SimpleNamespace(frequencies_cm1=np.array([-120.0, 0.5, 1500.0]), imaginary=np.array([True, False, False]),
                             zero_modes=np.array([False, True, False]), intensities_km_mol=None,
                             reduced_masses=np.ones(3), zero_point_energy=0.1, energy=-1.0, max_force=1e-4,
                             linear=False, fragments=[[0, 1, 2]])
    table = mode_table(result)
    assert "   1     120.00i" in table and "\n1 imaginary mode(s): not a minimum\n" in table
    assert table.endswith("\n1 zero mode(s): not vibrations but free motions")
