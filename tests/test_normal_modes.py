"""Normal-mode sampling (physnetjax.data.normal_modes): harmonic Boltzmann displacements around a minimum.

References, independent of the code under test:

* a Hessian built by hand for a bent triatomic from three springs (two bonds and the
  1–3 distance) is exactly translation- and rotation-invariant, so displacements
  along its vibrations keep the centre of mass and (to first order) the orientation:
  Σ m_i ΔR_i = 0 and Σ m_i R_i × ΔR_i = 0 (Eckart conditions), to rounding;
* equipartition: ⟨½ ΔRᵀ H ΔR⟩ = (M_vib / 2) k_B T with k_B typed in from CODATA, within
  the statistical error of the sample mean (each mode's energy has standard deviation
  k_B T / √2, so the mean over S samples of the sum has σ = k_B T √(M_vib / 2 / S)).
"""

import numpy as np
import pytest

from physnetjax.data.normal_modes import normal_mode_displacements, vibrational_modes

KB_EV_PER_K = 1.380649e-23 / 1.602176634e-19  # CODATA 2018


def spring_hessian(positions, pairs_and_constants):
    """H = Σ_springs k u uᵀ ⊗ [[1, −1], [−1, 1]] (eV/Å²), u the unit vector of the pair: a minimum at R."""
    n = positions.shape[0]
    hessian = np.zeros((3 * n, 3 * n))
    for (i, j), k in pairs_and_constants:
        u = positions[j] - positions[i]
        u /= np.linalg.norm(u)
        block = k * np.outer(u, u)
        for a, b, sign in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
            hessian[3 * a:3 * a + 3, 3 * b:3 * b + 3] += sign * block
    return hessian


@pytest.fixture(scope="module")
def triatomic():
    positions = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    masses = np.array([15.999, 1.008, 1.008])
    hessian = spring_hessian(positions, [((0, 1), 50.0), ((0, 2), 45.0), ((1, 2), 8.0)])
    return positions, masses, hessian


def test_displacements_keep_centre_of_mass_and_orientation(triatomic):
    positions, masses, hessian = triatomic
    displacements = normal_mode_displacements(hessian, masses, 300.0, 50, np.random.default_rng(0))
    assert displacements.shape == (50, 3, 3) and np.abs(displacements).max() > 1e-3
    momentum = np.einsum("i,sia->sa", masses, displacements)
    centre = np.einsum("i,ia->a", masses, positions) / masses.sum()
    angular = np.einsum("i,sia->sa", masses, np.cross(positions[None] - centre, displacements))
    assert np.abs(momentum).max() < 1e-12 and np.abs(angular).max() < 1e-12


def test_harmonic_energy_follows_equipartition(triatomic):
    _, masses, hessian = triatomic
    temperature, samples = 250.0, 20000
    displacements = normal_mode_displacements(hessian, masses, temperature, samples, np.random.default_rng(1))
    flat = displacements.reshape(samples, -1)
    energies = 0.5 * np.einsum("si,ij,sj->s", flat, hessian, flat)
    num_vibrations = 3
    kt = KB_EV_PER_K * temperature
    sigma = kt * np.sqrt(num_vibrations / 2.0 / samples)
    assert abs(energies.mean() - num_vibrations * kt / 2.0) < 4.0 * sigma
    eigenvalues, _ = vibrational_modes(hessian, masses)
    assert eigenvalues.shape == (3,) and (eigenvalues > 0).all()


def test_bad_input_is_refused_with_the_reason(triatomic):
    positions, masses, hessian = triatomic
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="not a minimum"):
        normal_mode_displacements(-hessian, masses, 300.0, 5, rng)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        normal_mode_displacements(hessian, masses, 0.0, 5, rng)
    with pytest.raises(ValueError, match="count must be >= 1"):
        normal_mode_displacements(hessian, masses, 300.0, 0, rng)
    with pytest.raises(ValueError, match="shape"):
        normal_mode_displacements(hessian[:6, :6], masses, 300.0, 5, rng)
    with pytest.raises(ValueError, match="finite"):
        normal_mode_displacements(hessian, np.array([1.0, -1.0, 1.0]), 300.0, 5, rng)


def test_generate_normal_modes_labels_frames_around_the_relaxed_structure():
    pytest.importorskip("tblite")
    from physnetjax.data.generate import generate

    data = generate("H2O", frames=4, temperature=300.0, seed=3, sampling="normal-modes")
    assert str(data["sampling"]) == "normal-modes" and data["R"].shape == (4, 3, 3)
    distances = np.linalg.norm(data["R"][:, 1:] - data["R"][:, :1], axis=-1)
    assert np.all(np.abs(distances - distances.mean()) < 0.1) and np.all((distances > 0.85) & (distances < 1.1))
    assert np.abs(data["F"]).max() > 1e-3 and np.all(np.isfinite(data["E"]))


def test_generate_cli_refuses_a_non_positive_temperature(tmp_path, capsys):
    from physnetjax.data.generate import main

    assert main(["--out", str(tmp_path / "d.npz"), "--sampling", "normal-modes", "--temperature", "0"]) == 2
    assert "--temperature must be finite and > 0 K, received 0.0" in capsys.readouterr().err


def test_the_limits_of_the_input_from_both_sides(triatomic):
    """One atom in an isotropic harmonic well (H = k·1, k = 0.5 eV/Å², no rigid-body motion): num_rigid = 0 is
    allowed and its three eigenvalues are k/m (below 1, which must pass); one sample at 0.5 K is drawn. A flat
    direction (eigenvalue exactly 0) is no minimum; num_rigid outside [0, 3N), a zero, NaN or infinite mass, a NaN
    in the Hessian and masses of the wrong shape are refused."""
    _, masses, hessian = triatomic
    rng = np.random.default_rng(0)
    eigenvalues, vectors = vibrational_modes(0.5 * np.eye(3), np.array([1.008]), num_rigid=0)
    np.testing.assert_allclose(eigenvalues, np.full(3, 0.5 / 1.008), rtol=1e-14)
    assert vectors.shape == (3, 3)
    assert normal_mode_displacements(0.5 * np.eye(3), np.array([1.008]), 0.5, 1, rng, num_rigid=0).shape == (1, 1, 3)
    with pytest.raises(ValueError, match=r"vibrational eigenvalue 0\.000e\+00 .* <= 0: the geometry is not a minimum"):
        vibrational_modes(np.diag([0.5, 0.5, 0.0]), np.array([1.008]), num_rigid=0)
    for num_rigid in (-1, 9):
        with pytest.raises(ValueError, match=rf"^num_rigid must be in \[0, 9\), received {num_rigid}$"):
            vibrational_modes(hessian, masses, num_rigid)
    assert vibrational_modes(hessian, masses, 8)[0].shape == (1,)
    for bad_masses in (np.array([15.999, 0.0, 1.008]), np.array([15.999, np.nan, 1.008]), np.array([np.inf, 1, 1])):
        with pytest.raises(ValueError, match=r"^hessian and masses must be finite and masses > 0$"):
            vibrational_modes(hessian, bad_masses)
    with_nan = hessian.copy()
    with_nan[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"^hessian and masses must be finite"):
        vibrational_modes(with_nan, masses)
    with pytest.raises(ValueError, match=r"^hessian must have shape \(3N, 3N\) = \(9, 9\) for 3 masses"):
        vibrational_modes(hessian, masses[:, None])
