"""Closed-form checks of spectra formulas the other tests missed (found by an automated mutation sweep, 2026-12-06):
the Hessian coupling of a bond along a Cartesian axis, the tolerance boundary of a degenerate line, and the FFT
length of the autocorrelation at signal lengths T = 2^k + 1 (2T − 1 one above a power of two).

Reference values are derived here in SI (CODATA 2018), independently of physnetjax.units.
"""

import math

import numpy as np
import pytest

from conftest import warnings_as_errors
from physnetjax.spectra.autocorrelation import _fast_length, autocorrelation
from physnetjax.spectra.harmonic import modes_from_hessian
from physnetjax.spectra.lines import degenerate_groups, merged_lines
from physnetjax.spectra.md_spectrum import ROUND_OFF_SHARE, round_off_hint
from physnetjax.spectra.rigid_body import connected_components, coupled_fragments, fragments_within

E = 1.602176634e-19  # C (J per eV)
AMU = 1.66053906660e-27  # kg
C_CM = 2.99792458e10  # cm/s
M_H, M_CL = 1.00782503223, 34.968852682


def test_a_bond_along_a_cartesian_axis_couples_its_atoms_and_has_no_zero_mode():
    """A harmonic bond along x: its Hessian blocks ±k x̂x̂ᵀ have one non-zero entry (xx), the other eight 0.

    The coupling of two atoms is the largest |entry| of their 3×3 block (COUPLING_TOLERANCE), so the atoms are one
    fragment and the one vibration (3N − 5 = 1) is sqrt(k/μ)/(2πc), with no zero mode and no warning. Taking the
    smallest entry of each block instead split every molecule whose bonds lie along the axes into single atoms.
    """
    k, r0 = 32.0, 1.2746  # eV/Å², Å
    block = np.zeros((3, 3))
    block[0, 0] = k
    hessian = np.block([[block, -block], [-block, block]])
    positions = np.array([[0.0, 0.0, 0.0], [r0, 0.0, 0.0]])
    assert [atoms.tolist() for atoms in coupled_fragments(hessian)] == [[0, 1]]
    with warnings_as_errors():
        result = modes_from_hessian(hessian, positions, np.array([M_H, M_CL]))
    mu = M_H * M_CL / (M_H + M_CL) * AMU
    expected = math.sqrt(k * E / 1e-20 / mu) / (2 * math.pi * C_CM)  # k in J/m², ω in rad/s → cm⁻¹
    assert result.linear and result.frequencies_cm1.shape == (1,)
    assert result.frequencies_cm1[0] == pytest.approx(expected, rel=1e-9)  # the unit constants agree to ~1e-10
    assert not result.zero_modes.any() and len(result.fragments) == 1


@pytest.mark.parametrize("unit", [1.0, 1e-6, 1e6])
def test_a_weak_coupling_counts_relative_to_the_largest_block_in_any_unit(unit):
    """Atoms 0-1 bonded (k = 30 eV/Å²), atom 2 coupled to atom 0 by c: the verdict compares c with
    COUPLING_TOLERANCE × 30 (1e-12 relative), so it is the same whatever unit the Hessian is in (eV/Å² scaled by
    1e-6 or 1e6 here). c = 1e-11 (relative 3.3e-13) leaves atom 2 a fragment of its own; c = 1e-10 (3.3e-12) and
    a 0.1 e Coulomb pair 50 Å apart (2 k_e q²/r³ = 2.3e-6 eV/Å²) couple it. An absolute threshold divided by the
    largest block would call the first pair coupled in eV/Å² and the other two apart at 1e-6 eV/Å²."""
    k = 30.0
    bond = k * np.eye(3)
    for coupling, fragments in ((1e-11, [[0, 1], [2]]), (1e-10, [[0, 1, 2]]), (2.3e-6, [[0, 1, 2]])):
        weak = coupling * np.eye(3)
        hessian = np.block([[bond + weak, -bond, -weak], [-bond, bond, np.zeros((3, 3))],
                            [-weak, np.zeros((3, 3)), weak]])
        assert [atoms.tolist() for atoms in coupled_fragments(unit * hessian)] == fragments, (coupling, unit)


def test_the_float32_round_off_hint_starts_where_the_energy_spacing_passes_its_share_of_the_thermal_energy():
    """float32 spacing at the largest |E| of the replicas, here |−1.0| eV: 2^−23 eV. The hint names float64 once
    the spacing exceeds ROUND_OFF_SHARE × n_dof k_B T / 2, not before, and never for a float64 run."""
    spacing = 2.0**-23
    energies = np.array([0.25, -1.0])
    at_threshold = spacing / ROUND_OFF_SHARE
    assert round_off_hint(energies, at_threshold * (1 + 1e-6), np.float32) == ""
    hint = round_off_hint(energies, at_threshold * (1 - 1e-6), np.float32)
    assert hint.startswith("float32 resolves the energy only to 1.2e-07 eV, 0.0001 x n_dof k_B T / 2"), hint
    assert round_off_hint(energies, at_threshold / 10, np.float64) == ""


def test_modes_exactly_one_tolerance_apart_are_two_lines():
    """Modes *closer* than the tolerance are one line (lines.py): 1.0 cm⁻¹ apart (exact in binary) is two lines,
    0.5 cm⁻¹ apart one line of the mean wavenumber and the summed intensity (values exact in binary)."""
    assert degenerate_groups([100.0, 101.0], 1.0) == [[0], [1]]
    assert degenerate_groups([100.5, 100.0, 103.0], 1.0) == [[1, 0], [2]]
    lines, heights = merged_lines([100.0, 300.5, 101.0, 300.0], [1.0, 2.0, 4.0, 8.0], 1.0)
    np.testing.assert_array_equal(lines, [100.0, 101.0, 300.25])
    np.testing.assert_array_equal(heights, [1.0, 4.0, 10.0])


def test_fast_length_is_the_smallest_5_smooth_number_not_below_the_minimum():
    """Against a brute-force search for every minimum up to 1100: the smallest 2^a 3^b 5^c ≥ minimum. A length
    below the minimum wraps the correlation around; a larger one changes the spectrum's grid for nothing."""
    smooth = sorted(2**a * 3**b * 5**c for a in range(12) for b in range(8) for c in range(6))
    for minimum in range(1, 1101):
        assert _fast_length(minimum) == next(n for n in smooth if n >= minimum), minimum


@pytest.mark.parametrize("length", [3, 5, 9, 17, 33])
def test_autocorrelation_of_2k_plus_1_samples_equals_brute_force_loop(length):
    """T = 2^k + 1 needs an FFT of at least 2T − 1 = 2^(k+1) + 1 points (no wrap-around); unbiased estimator, all
    lags, against a float64 double loop."""
    x = np.random.default_rng(length).normal(size=(length, 2))
    expected = np.zeros((length, 2))
    for k in range(length):
        for t in range(length - k):
            expected[k] += x[t] * x[t + k]
        expected[k] /= length - k
    np.testing.assert_allclose(autocorrelation(x), expected, rtol=1e-12, atol=1e-13)


def test_fragments_are_the_connected_components_of_close_atoms():
    """Connected components of a graph whose search front holds several atoms at once (0's neighbours 2 and 4 lead
    on to 1 and 3), a second component and a lone atom; fragments of atoms closer than the cutoff, away from the
    origin (where |r_i + r_j| would pass for |r_i − r_j|)."""
    adjacency = np.zeros((8, 8), bool)
    for i, j in ((0, 2), (0, 4), (2, 1), (4, 3), (5, 6)):
        adjacency[i, j] = adjacency[j, i] = True
    assert [c.tolist() for c in connected_components(adjacency)] == [[0, 1, 2, 3, 4], [5, 6], [7]]
    positions = np.array([[10.0, 10.0, 10.0], [-5.0, 0.0, 0.0], [10.0, 10.0, 14.0], [10.0, 10.0, 10.74],
                          [10.0, 10.0, 14.74]])
    assert [f.tolist() for f in fragments_within(positions, 2.0)] == [[0, 3], [1], [2, 4]]
    assert [f.tolist() for f in fragments_within(positions, 4.0)] == [[0, 2, 3, 4], [1]]
