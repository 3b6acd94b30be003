"""Adversarial probe of the harmonic analysis (physnetjax.spectra): the cases it got wrong.

References, none produced by the code under test:

* a toy linear XY2 (two bond springs k, a bend term ½ k_θ sin²θ) with closed-form wavenumbers: bend
  ω² = 2k_θ/(l² m_Y) (1 + 2m_Y/m_X) (doubly degenerate), symmetric stretch ω² = k/m_Y, antisymmetric
  ω² = k (1 + 2m_Y/m_X)/m_Y (Herzberg's XY2 formulas, derived again for V = ½ k_θ δ²), CODATA 2018 constants typed in;
* ASE ``Vibrations`` (central finite differences of the forces of the package's ASE calculator, no projection),
  whose imaginary frequencies come back as imaginary numbers.
"""

import math

import ase
import ase.io
import jax.numpy as jnp
import numpy as np
import pytest
from ase.vibrations import Vibrations
from scipy.spatial.transform import Rotation

from physnetjax import load_checkpoint
from physnetjax.calculator import PhysNetCalculator
from physnetjax.errors import PhysNetInputError
from physnetjax.pretrained import co2_geometry_path, co2_model_path
from physnetjax.spectra import NonMinimumWarning, OptimizationError, harmonic, harmonic_analysis, optimize_geometry
from physnetjax.spectra.harmonic import modes_from_hessian

# CODATA 2018, typed in independently of physnetjax.units.
E = 1.602176634e-19  # C
C = 299792458.0  # m/s
AMU = 1.66053906660e-27  # kg

K_BOND, K_BEND, BOND = 40.0, 3.0, 1.16  # eV/Å², eV, Å
M_C, M_O = 12.0, 15.99491461957


def wavenumber_cm1(omega_squared):
    """ν̃ in cm⁻¹ of ω² in eV/(Å² amu)."""
    return math.sqrt(omega_squared * E / 1e-20 / AMU) / (2.0 * math.pi * C) / 100.0


def xy2_energy(positions):
    """Linear X–Y2 toy (atom 0 the centre): bond springs and ½ k_θ sin²θ, smooth through the linear geometry."""
    a, b = positions[1] - positions[0], positions[2] - positions[0]
    ra, rb = jnp.linalg.norm(a), jnp.linalg.norm(b)
    sin_squared = jnp.sum(jnp.cross(a, b) ** 2) / (ra * rb) ** 2
    return 0.5 * K_BOND * ((ra - BOND) ** 2 + (rb - BOND) ** 2) + 0.5 * K_BEND * sin_squared


def xy2_reference():
    """Closed-form wavenumbers (cm⁻¹, ascending) of :func:`xy2_energy` with masses M_C, M_O."""
    bend = wavenumber_cm1(2.0 * K_BEND / (BOND**2 * M_O) * (1.0 + 2.0 * M_O / M_C))
    return np.array([bend, bend, wavenumber_cm1(K_BOND / M_O),
                     wavenumber_cm1(K_BOND * (1.0 + 2.0 * M_O / M_C) / M_O)])


@pytest.fixture(scope="module")
def rotated_xy2():
    """The toy's minimum, rotated at random and moved 10³ Å off the origin (linear only to round-off)."""
    rotation = Rotation.random(random_state=1).as_matrix()
    return np.array([[0.0, 0.0, 0.0], [0.0, 0.0, BOND], [0.0, 0.0, -BOND]]) @ rotation.T + [500.0, -300.0, 700.0]


@pytest.fixture(scope="module")
def co2_model():
    return load_checkpoint(co2_model_path())


def test_a_linear_tolerance_that_round_off_decides_is_refused_not_a_lost_bend(rotated_xy2, co2_model):
    masses = [M_C, M_O, M_O]
    # The default tolerance: 3N − 5 = 4 modes, the bend doubly degenerate, equal to the closed form. Tolerance
    # 1e-10: the autodiff Hessian of a quadratic-in-displacement toy is exact; the rest is float64 round-off of
    # the positions 10³ Å off the origin (~1e-13 Å) and of the eigensolver.
    result = harmonic_analysis(xy2_energy, rotated_xy2, masses)
    assert result.linear and result.frequencies_cm1.shape == (4,)
    np.testing.assert_allclose(result.frequencies_cm1, xy2_reference(), rtol=1e-10)
    # Tolerance 0 called the rotated molecule non-linear (its atoms ~1e-14 Å off the axis): the axial "rotation"
    # normalised from round-off was projected out and a bend lost (3 modes, symmetric stretch shifted 1.6 cm⁻¹).
    for tolerance in (0.0, 1e-9, -1.0, float("nan")):
        with pytest.raises(PhysNetInputError, match=r"linear_tolerance must be finite and >= 0\.001 Å"):
            harmonic_analysis(xy2_energy, rotated_xy2, masses, linear_tolerance=tolerance)
        with pytest.raises(PhysNetInputError, match=r"linear_tolerance must be finite and >= 0\.001 Å"):
            modes_from_hessian(result.hessian, rotated_xy2, masses, linear_tolerance=tolerance)
    # harmonic() refuses it before optimising (a NaN tolerance ran the optimisation, then numpy's LinAlgError).
    model, params = co2_model
    atoms = ase.io.read(co2_geometry_path())
    with pytest.raises(PhysNetInputError, match="linear_tolerance"):
        harmonic(model, params, atoms.numbers, atoms.positions, linear_tolerance=float("nan"))


def test_modes_from_hessian_uses_the_symmetric_part_of_a_finite_difference_hessian(rotated_xy2):
    masses = [M_C, M_O, M_O]
    exact = harmonic_analysis(xy2_energy, rotated_xy2, masses).hessian
    # An asymmetric error of a finite-difference Hessian: eigh read only one triangle of it (old: off by ~6 cm⁻¹);
    # the symmetric part is the Hessian's best estimate, and its modes are unchanged by the antisymmetric part.
    antisymmetric = np.random.default_rng(0).standard_normal(exact.shape)
    antisymmetric = antisymmetric - antisymmetric.T
    perturbed = modes_from_hessian(exact + antisymmetric, rotated_xy2, masses)
    np.testing.assert_allclose(perturbed.frequencies_cm1, xy2_reference(), rtol=1e-10)
    np.testing.assert_allclose(perturbed.hessian, exact, rtol=0, atol=1e-12 * np.abs(exact).max())


def test_non_finite_dipole_derivatives_or_positions_are_refused_not_nan_intensities(rotated_xy2):
    masses = [M_C, M_O, M_O]
    hessian = harmonic_analysis(xy2_energy, rotated_xy2, masses).hessian
    derivatives = np.zeros((3, 3, 3))
    derivatives[0, 0, 0] = np.nan  # old: intensities [nan nan nan nan], no word
    with pytest.raises(ValueError, match="dipole derivatives contain NaN or Inf"):
        modes_from_hessian(hessian, rotated_xy2, masses, derivatives)
    positions = rotated_xy2.copy()
    positions[1, 2] = np.inf  # old: numpy's "Eigenvalues did not converge"
    with pytest.raises(ValueError, match="positions contain NaN or Inf"):
        modes_from_hessian(hessian, positions, masses)


@pytest.fixture(scope="module")
def collinear_coo(co2_model):
    """The CO2 model optimised from a collinear C–O–O start: collinear by symmetry all the way, a saddle point."""
    model, params = co2_model
    start = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.2], [0.0, 0.0, 2.5]])
    with pytest.warns(NonMinimumWarning, match=r"^the optimised geometry is a saddle point .*, not a minimum: 2 "
                      r"imaginary mode\(s\) \(\d+\.\di, \d+\.\di cm\^-1; .*optimise again$"):
        result = harmonic(model, params, [6, 8, 8], start, fmax=1e-6)
    return result


def test_an_optimisation_ending_on_a_saddle_point_warns_and_keeps_the_imaginary_modes_signed(co2_model, collinear_coo,
                                                                                             tmp_path):
    model, params = co2_model
    result = collinear_coo
    assert result.optimization.fmax <= 1e-6 and result.linear
    assert result.imaginary.tolist() == [True, True, False, False] and not result.zero_modes.any()
    # Reference: ASE's finite differences of the calculator's forces (4-point stencil, δ = 1e-3 Å: O(δ⁴) error);
    # its rigid-body modes (|ν̃| < 1 cm⁻¹ at max |F| <= 1e-6) are left out, the imaginary bends kept as −|ν̃|.
    atoms = ase.Atoms([6, 8, 8], positions=result.positions)
    atoms.calc = PhysNetCalculator(model, params, dtype="float64")
    vibrations = Vibrations(atoms, delta=1e-3, nfree=4, name=str(tmp_path / "vib"))
    vibrations.run()
    reference = vibrations.get_frequencies()
    signed = np.sort(np.where(np.abs(reference.imag) > 0, -np.abs(reference.imag), reference.real))
    signed = signed[np.abs(signed) > 1.0]
    np.testing.assert_allclose(result.frequencies_cm1, signed, rtol=1e-6)
    assert result.frequencies_cm1[0] < -100.0
    # The ZPE is that of the real modes only: the warning says so.
    assert result.zero_point_energy == pytest.approx(
        0.5 * 6.62607015e-34 * C * 100.0 / E * result.frequencies_cm1[2:].sum(), rel=1e-9)
    # Given as is, the same stationary point warns too (max |F| <= fmax: no other warning fired before).
    with pytest.warns(NonMinimumWarning, match=r"^the geometry is a saddle point, not a minimum: 2 imaginary .*"
                      r"\(use optimize=True\)$"):
        harmonic(model, params, [6, 8, 8], result.positions, optimize=False)


def test_an_fmax_below_force_round_off_is_named_instead_of_asking_for_more_steps(co2_model):
    model, params = co2_model
    # CO with the CO2 model: forces stall at ~5e-15 eV/Å (E = −168 eV) within 60 steps; old: "raise max_steps".
    with pytest.raises(OptimizationError, match=r"round-off of the forces .*fmax=1\.0e-30 eV/Å is below what any "
                       r"number of steps reaches; loosen fmax") as caught:
        optimize_geometry(model, params, [6, 8], [[0.0, 0.0, 0.0], [0.0, 0.0, 1.25]], fmax=1e-30, max_steps=60)
    assert "raise max_steps" not in str(caught.value) and caught.value.fmax < 1e-10


def test_harmonic_validates_its_settings_even_when_it_does_not_optimise(co2_model):
    model, params = co2_model
    atoms = ase.io.read(co2_geometry_path())
    # optimize=False: fmax only decides the NonMinimumWarning; −1 warned at the minimum, NaN silenced the check.
    for fmax in (-1.0, float("nan")):
        with pytest.raises(PhysNetInputError, match="fmax must be finite and > 0"):
            harmonic(model, params, atoms.numbers, atoms.positions, optimize=False, fmax=fmax)
    # A truthy string optimised (optimize="no") or asked for intensities (intensities="no").
    with pytest.raises(PhysNetInputError, match=r"optimize must be True or False, received 'no' \(str\)"):
        harmonic(model, params, atoms.numbers, atoms.positions, optimize="no")
    with pytest.raises(PhysNetInputError, match=r"intensities must be True or False or None, received 'no'"):
        harmonic(model, params, atoms.numbers, atoms.positions, optimize=False, intensities="no")


def test_cli_refuses_a_single_atom_in_one_line_before_writing_out(capsys, tmp_path):
    from physnetjax.spectra.__main__ import main as spectra_main

    atom = tmp_path / "atom.xyz"
    atom.write_text("1\n\nC 0.0 0.0 0.0\n")
    out = tmp_path / "out"
    # Old: --out and its config.toml written, then a warning that the lone atom has no neighbour within the cutoff
    # (the checkpoint's training record) before the error.
    status = spectra_main(["harmonic", "--checkpoint", str(co2_model_path()), "--geometry", str(atom), "--out",
                           str(out), "--no-plot"])
    stderr = capsys.readouterr().err
    assert status == 2 and stderr == ("python -m physnetjax.spectra: error: 1 atom(s): a molecule of at least 2 atoms "
                                      "is needed (a single atom has no bonds, forces or vibrations)\n")
    assert not out.exists()
