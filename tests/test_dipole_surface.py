"""The dipole R² in the molecular frame (physnetjax.dipole_surface).

References, none produced by the code under test: a brute-force loop that aligns frames with SciPy's
``Rotation.align_vectors`` (weighted least squares by quaternions, not an SVD), and analytic cases built from
known rotations of a symmetric-stretched water molecule, whose molecular frame is known exactly.
"""


import ase.data
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import warnings_as_errors

from physnetjax.dipole_surface import (
    DIPOLE_SURFACE_KEY,
    IR_R2_THRESHOLD,
    dipole_surface_fit,
    molecular_frame_rotation,
    recorded_r2,
    unreliable_ir_message,
    warn_unreliable_ir,
)
from physnetjax.errors import PhysNetInputWarning


def water(stretch: float) -> np.ndarray:
    """(3, 3) Å: O, H, H of water in the xy plane, C2 axis along y, bonds 0.96 + ``stretch`` Å, angle 104.5°,
    centre of mass at the origin (a symmetric stretch keeps the principal axes)."""
    half = np.radians(104.5) / 2.0
    bond = 0.96 + stretch
    r = np.array([[0.0, 0.0, 0.0], [bond * np.sin(half), bond * np.cos(half), 0.0],
                  [-bond * np.sin(half), bond * np.cos(half), 0.0]])
    m = ase.data.atomic_masses[[8, 1, 1]]
    return r - m @ r / m.sum()


STRETCHES = np.array([0.01, -0.03, 0.03, -0.01, 0.02, -0.02])  # mean 0
B0 = np.array([0.1, 0.38, -0.05])  # e·Å, body-frame dipole at the reference bond length
B1 = np.array([0.0, 2.0, 0.3])  # e·Å/Å, its change with the stretch


def rotated_waters(body_dipoles, seed=0):
    """(Z, R, N, dipoles, Q) of the frames x_k = Q_k water(s_k) + t_k with dipoles Q_k body_dipoles[k] (random Q_k)."""
    rotations = Rotation.random(len(STRETCHES), random_state=seed).as_matrix()
    shifts = np.random.default_rng(seed).normal(scale=3.0, size=(len(STRETCHES), 1, 3))
    positions = np.stack([water(s) @ q.T for s, q in zip(STRETCHES, rotations)]) + shifts
    z = np.tile([8, 1, 1], (len(STRETCHES), 1))
    dipoles = np.einsum("kab,kb->ka", rotations, body_dipoles)
    return z, positions, np.full(len(STRETCHES), 3), dipoles, rotations


def test_rotation_superimposes_a_rotated_molecule_exactly():
    r = water(0.02)
    q = Rotation.random(random_state=3).as_matrix()
    u = molecular_frame_rotation(r @ q.T + [1.0, -2.0, 0.5], r, ase.data.atomic_masses[[8, 1, 1]])
    np.testing.assert_allclose(u, q.T, atol=1e-12)
    assert np.linalg.det(u) == pytest.approx(1.0, abs=1e-12)


def test_the_half_slope_model_explains_three_quarters_of_the_vibrational_spread():
    """a_k = Q_0 (B0 + B1 s_k), p_k = Q_0 (B0 + B1 s_k / 2), mean s = 0: R² = 1 − (1/4) Σ s² / Σ s² = 3/4; the
    spread is |B1| sqrt(mean s²), the error |B1| sqrt(mean s²) / 2."""
    labels_body = B0 + STRETCHES[:, None] * B1
    z, r, n, labels, rotations = rotated_waters(labels_body)
    predicted = np.einsum("kab,kb->ka", rotations, B0 + 0.5 * STRETCHES[:, None] * B1)
    fit = dipole_surface_fit(z, r, n, labels, predicted)
    spread = np.linalg.norm(B1) * np.sqrt(np.mean(STRETCHES ** 2))
    assert fit.r2 == pytest.approx(0.75, abs=1e-12)
    assert (fit.frames, fit.compositions) == (6, 1)
    assert fit.spread_rms == pytest.approx(spread, rel=1e-12)
    assert fit.error_rms == pytest.approx(spread / 2.0, rel=1e-12)
    raw_spread = np.sqrt(np.mean(np.sum((labels - labels.mean(axis=0)) ** 2, axis=1)))
    assert raw_spread > 5.0 * spread  # the rotation the MAE sees is removed


def test_a_model_equal_to_the_labels_has_r2_one():
    z, r, n, labels, _ = rotated_waters(B0 + STRETCHES[:, None] * B1, seed=1)
    assert dipole_surface_fit(z, r, n, labels, labels).r2 == 1.0


@pytest.mark.parametrize("offset", [0.0, 0.1])
def test_a_constant_dipole_in_the_molecular_frame_explains_nothing(offset):
    """p_k = Q_k c: R² = −n |c − B0|² / (|B1|² Σ s²) (mean s = 0), 0 at c = B0 and negative elsewhere."""
    z, r, n, labels, rotations = rotated_waters(B0 + STRETCHES[:, None] * B1, seed=2)
    c = B0 + [offset, 0.0, 0.0]
    predicted = rotations @ c
    expected = -len(STRETCHES) * offset ** 2 / (B1 @ B1 * np.sum(STRETCHES ** 2))
    r2 = dipole_surface_fit(z, r, n, labels, predicted).r2
    assert r2 == pytest.approx(expected, abs=1e-12) and r2 <= 1e-12


def test_pure_rotations_of_a_rigid_dipole_have_no_metric():
    """One geometry in many orientations: the labels' spread (0.4 e·Å before alignment) is all rotation, nothing
    depends on the geometry, and there is no R² to give."""
    rotations = Rotation.random(8, random_state=4).as_matrix()
    positions = np.stack([water(0.0) @ q.T for q in rotations])
    labels = rotations @ B0
    assert np.std(labels, axis=0).sum() > 0.3
    assert dipole_surface_fit(np.tile([8, 1, 1], (8, 1)), positions, np.full(8, 3), labels, labels + 0.05) is None


def brute_force(z, r, n, labels, predicted, cell):
    """R², spread and error by a loop: groups by Z order, SciPy's align_vectors onto each group's first frame."""
    groups = {}
    for k in range(len(z)):
        if np.any(cell[k] != 0):
            continue
        groups.setdefault(tuple(int(v) for v in z[k, :n[k]]), []).append(k)
    spread = error = 0.0
    frames = 0
    for composition, members in groups.items():
        if len(members) < 2:
            continue
        m = np.array([ase.data.atomic_masses[v] for v in composition])
        count = len(composition)

        def centred(x):
            return x - (m[:, None] * x).sum(axis=0) / m.sum()

        reference = centred(r[members[0], :count])
        aligned = []
        for k in members:
            rotation, _ = Rotation.align_vectors(reference, centred(r[k, :count]), weights=m)
            aligned.append(rotation.apply(labels[k]))
            error += sum((predicted[k][c] - labels[k][c]) ** 2 for c in range(3))
        mean = np.mean(aligned, axis=0)
        spread += sum(sum((a[c] - mean[c]) ** 2 for c in range(3)) for a in aligned)
        frames += len(members)
    return 1.0 - error / spread, np.sqrt(spread / frames), np.sqrt(error / frames), frames, len(
        [g for g in groups.values() if len(g) > 1])


def test_pooled_r2_equals_a_brute_force_loop_over_compositions():
    """Water and formaldehyde, a water written in another atom order (its own group), a lone methane frame
    (no spread to measure: left out), a periodic frame (left out) and zero padding; random geometries
    around each molecule and random dipoles. Per-composition means: pooling with one mean would count the
    difference between the molecules' dipoles as spread."""
    rng = np.random.default_rng(5)
    molecules = {(8, 1, 1): water(0.0),
                 (6, 8, 1, 1): np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.21], [0.94, 0.0, -0.54], [-0.94, 0.0, -0.54]]),
                 (1, 8, 1): water(0.0)[[1, 0, 2]],
                 (6, 1, 1, 1, 1): np.array([[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63],
                                            [0.63, -0.63, -0.63]], float)}
    counts = {(8, 1, 1): 7, (6, 8, 1, 1): 9, (1, 8, 1): 4, (6, 1, 1, 1, 1): 1}
    means = {(8, 1, 1): [0.0, 0.4, 0.0], (6, 8, 1, 1): [0.0, 0.0, -0.5], (1, 8, 1): [0.0, -0.4, 0.0],
             (6, 1, 1, 1, 1): [0.0, 0.0, 0.0]}
    z, r, n, labels, cell = [], [], [], [], []
    for composition, count in counts.items():
        for _ in range(count):
            geometry = molecules[composition] + rng.normal(scale=0.05, size=molecules[composition].shape)
            q = Rotation.random(random_state=rng).as_matrix()
            padded_z, padded_r = np.zeros(5, int), np.zeros((5, 3))
            padded_z[:len(composition)] = composition
            padded_r[:len(composition)] = geometry @ q.T + rng.normal(size=3)
            z.append(padded_z), r.append(padded_r), n.append(len(composition))
            labels.append(q @ (np.array(means[composition]) + rng.normal(scale=0.05, size=3)))
            cell.append(np.zeros((3, 3)))
    z.append(z[0]), r.append(r[0] + 0.1), n.append(3), labels.append(labels[0] + 1.0), cell.append(10.0 * np.eye(3))
    z, r, n, labels, cell = map(np.array, (z, r, n, labels, cell))
    predicted = labels + rng.normal(scale=0.03, size=labels.shape)
    fit = dipole_surface_fit(z, r, n, labels, predicted, cell=cell)
    r2, spread, error, frames, compositions = brute_force(z, r, n, labels, predicted, cell)
    assert (fit.frames, fit.compositions) == (frames, compositions) == (20, 3)
    np.testing.assert_allclose([fit.r2, fit.spread_rms, fit.error_rms], [r2, spread, error], rtol=1e-10)
    assert 0.2 < fit.r2 < 0.9  # neither trivially 1 nor swamped by the molecules' mean dipoles


def record(test=None, valid=None):
    def fit(r2):
        return None if r2 is None else {"r2": r2, "frames": 10, "compositions": 1, "spread_rms": 0.01,
                                        "error_rms": 0.01}

    return {DIPOLE_SURFACE_KEY: {"valid": fit(valid), "test": fit(test)}}


def test_the_recorded_r2_is_the_test_splits_else_the_validation_splits_also_in_a_resaved_checkpoint():
    assert recorded_r2(record(test=0.3, valid=0.9)) == ("test", 0.3)
    assert recorded_r2(record(valid=0.9)) == ("valid", 0.9)
    assert recorded_r2({"source_metadata": record(test=0.5)}) == ("test", 0.5)
    assert recorded_r2(record()) is None and recorded_r2({}) is None and recorded_r2(None) is None


def test_a_low_recorded_r2_warns_with_the_remedies_and_none_or_a_high_one_is_silent():
    with pytest.warns(PhysNetInputWarning, match=r"dipole R² in the molecular frame 0\.13 on the test split .*IR "
                                                 r"intensities .* unreliable.*--dipole-weight.*normal-modes"):
        warn_unreliable_ir(record(test=0.13, valid=0.95))
    with warnings_as_errors():
        warn_unreliable_ir(record(test=IR_R2_THRESHOLD))
        warn_unreliable_ir({"trained_elements": [1, 8]})
        warn_unreliable_ir(None)


@pytest.mark.parametrize("weight, advice", [(None, "raise --dipole-weight (e.g. 20), "),
                                            (5.0, "raise --dipole-weight (e.g. 20), "),
                                            (20.0, "raise --dipole-weight beyond this run's 20, "),
                                            (50.0, "raise --dipole-weight beyond this run's 50, ")])
def test_the_remedy_of_a_low_r2_starts_from_the_runs_dipole_weight(weight, advice):
    """A run trained with --dipole-weight 20 was told to "raise --dipole-weight (e.g. 20)"."""
    message = unreliable_ir_message("valid", 0.27, dipole_weight=weight)
    assert message.endswith(f"; {advice}add geometry-varied frames such as normal-mode samples (python -m "
                            "physnetjax.data.generate --sampling normal-modes), or train longer")
