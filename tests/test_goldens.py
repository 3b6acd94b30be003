"""Model outputs pinned to independent formulas (float64 NumPy loops, finite differences).

Each test here exists because a planted mutant once survived the rest of the suite:
the dipole sign, dipoles from the uncorrected charges, an ignored ``coulomb_sr_cutoff``
and the stress of a multi-cell batch divided by the first cell's volume.
"""

import math

import jax
import numpy as np
import pytest
from conftest import cast_params, perturbed_params

from physnetjax import PhysNet, init_params
from physnetjax.neighbors import apply_batch, batch_molecules, batch_periodic, model_pair_cutoff

KE = 14.399645351950548  # eV·Å/e², PhysNet's Coulomb constant


def textbook_phi(x):
    return 1.0 - 6.0 * x**5 + 15.0 * x**4 - 10.0 * x**3 if x < 1.0 else 0.0


def textbook_chi(r, sr_cut, lr_cut=None):
    """PhysNet's shielded Coulomb kernel, written out from the paper's formula."""
    s = textbook_phi(2.0 * r / sr_cut)
    shielded = math.sqrt(r * r + 1.0)
    if lr_cut is None:
        return s / shielded + (1.0 - s) / r
    if r >= lr_cut:
        return 0.0
    return (s * (1.0 / shielded + shielded / lr_cut**2 - 2.0 / lr_cut)
            + (1.0 - s) * (1.0 / r + r / lr_cut**2 - 2.0 / lr_cut))


def tiny_model(**changes):
    settings = dict(features=8, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=9, charges=True, zbl=False, param_dtype=np.float64)
    settings.update(changes)
    return PhysNet(**settings)


# -- dipoles and the short-range Coulomb cutoff ----------------------------------------

SR_CUTOFF = 2.5  # Å, deliberately not the model cutoff (4 Å)


@pytest.fixture(scope="module")
def charged_pair(molecules):
    """Ethanol (Q = +1) and methanol (Q = −1) in one padded batch, random weights, float64, r_sr = 2.5 Å."""
    model = tiny_model(coulomb_sr_cutoff=SR_CUTOFF)
    params = perturbed_params(init_params(model, 0), scale=0.3, seed=3)
    apply = jax.jit(lambda p, b: apply_batch(model, p, b))
    (z1, r1), (z2, r2) = molecules["ethanol"], molecules["methanol"]

    def run(shift_1, shift_2):
        batch = batch_molecules([z1, z2], [r1 + shift_1, r2 + shift_2], model.cutoff, total_charges=[1.0, -1.0],
                                pair_cutoff=model_pair_cutoff(model), num_atoms=20, num_molecules=3,
                                dtype=np.float64)
        return batch, apply(params, batch)

    return run


def numpy_dipoles(batch, raw_charges):
    """q_i = q̃_i + (Q_b − Σ_{j∈b} q̃_j)/N_b over real atoms, then μ_b = Σ_{i∈b} q_i r_i (loops)."""
    mask = np.asarray(batch.atom_mask)
    segments = np.asarray(batch.atom_segments)
    positions = np.asarray(batch.positions, dtype=np.float64)
    raw = np.asarray(raw_charges, dtype=np.float64)
    charges = np.zeros(len(raw))
    dipoles = np.zeros((batch.num_molecules, 3))
    for b in range(batch.num_molecules):
        atoms = [i for i in range(len(raw)) if mask[i] and segments[i] == b]
        if not atoms:
            continue
        correction = (float(batch.total_charges[b]) - sum(raw[i] for i in atoms)) / len(atoms)
        for i in atoms:
            charges[i] = raw[i] + correction
            dipoles[b] += charges[i] * positions[i]
    return charges, dipoles


def test_dipoles_equal_sum_of_corrected_charges_times_positions(charged_pair):
    batch, out = charged_pair(np.zeros(3), np.array([3.0, -1.0, 2.0]))
    raw = np.asarray(out["raw_charges"])
    mask = np.asarray(batch.atom_mask)
    for b, total in enumerate((1.0, -1.0)):
        raw_sum = raw[mask & (np.asarray(batch.atom_segments) == b)].sum()
        assert abs(raw_sum - total) > 0.05  # the correction is not a no-op
    charges, dipoles = numpy_dipoles(batch, raw)
    np.testing.assert_allclose(out["charges"], charges, rtol=0, atol=1e-13)
    np.testing.assert_allclose(out["dipoles"], dipoles, rtol=0, atol=1e-12)
    assert np.linalg.norm(dipoles[0]) > 0.1 and np.linalg.norm(dipoles[1]) > 0.1


def test_dipole_of_charged_molecule_moves_by_total_charge_times_translation(charged_pair):
    """μ(R + t) = μ(R) + Q t about the fixed origin (charges are translation invariant)."""
    t1, t2 = np.array([0.7, -1.3, 2.1]), np.array([-4.0, 0.5, 1.0])
    _, before = charged_pair(np.zeros(3), np.zeros(3))
    _, after = charged_pair(t1, t2)
    np.testing.assert_allclose(np.asarray(after["dipoles"][0]) - np.asarray(before["dipoles"][0]), 1.0 * t1,
                               rtol=0, atol=1e-11)
    np.testing.assert_allclose(np.asarray(after["dipoles"][1]) - np.asarray(before["dipoles"][1]), -1.0 * t2,
                               rtol=0, atol=1e-11)


def test_electrostatics_at_non_default_short_range_cutoff(charged_pair):
    """coulomb_sr_cutoff = 2.5 Å ≠ cutoff = 4 Å: E_elec,b = k_e Σ_{i<j∈b} q_i q_j χ(r_ij; 2.5)."""
    batch, out = charged_pair(np.zeros(3), np.array([3.0, -1.0, 2.0]))
    q = np.asarray(out["charges"])
    r = np.asarray(batch.positions)
    seg, mask = np.asarray(batch.atom_segments), np.asarray(batch.atom_mask)
    for b in range(2):
        atoms = np.nonzero(mask & (seg == b))[0]
        expected = default_kernel = 0.0
        for m, i in enumerate(atoms):
            for j in atoms[m + 1:]:
                rij = float(np.linalg.norm(r[i] - r[j]))
                expected += KE * q[i] * q[j] * textbook_chi(rij, SR_CUTOFF)
                default_kernel += KE * q[i] * q[j] * textbook_chi(rij, 4.0)
        assert abs(expected - default_kernel) > 1e-3  # the setting matters for this geometry
        assert float(out["electrostatics"][b]) == pytest.approx(expected, rel=1e-11, abs=1e-12)


# -- stress of several different cells ----------------------------------------------------

CELLS = (
    np.array([[6.0, 0.0, 0.0], [1.5, 5.6, 0.0], [0.8, 1.2, 5.3]]),
    np.array([[4.5, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 4.8]]),
    np.array([[7.2, 0.0, 0.0], [-1.0, 6.1, 0.0], [0.5, -0.4, 6.6]]),
)


def random_crystal(cell, num_atoms, seed):
    """num_atoms atoms (H, C, O) in ``cell`` at least 1 Å apart over all images."""
    rng = np.random.default_rng(seed)
    images = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]) @ cell
    positions = []
    while len(positions) < num_atoms:
        trial = rng.uniform(0, 1, 3) @ cell
        if all(np.min(np.linalg.norm(trial - p + images, axis=-1)) > 1.0 for p in positions):
            positions.append(trial)
    return rng.choice([1, 6, 8], size=num_atoms), np.asarray(positions)


def strained(batch, strain):
    """The batch under x → x (I + ε_b) for each cell b: positions, shifts, pair shifts and cells."""
    deformation = np.eye(3) + strain
    seg = np.asarray(batch.atom_segments)
    fields = dict(positions=np.einsum("ni,nij->nj", batch.positions, deformation[seg]),
                  shifts=np.einsum("pi,pij->pj", batch.shifts, deformation[seg[batch.dst_idx]]),
                  cells=np.einsum("bij,bjk->bik", batch.cells, deformation))
    if batch.pair_dst is not None:
        fields["pair_shifts"] = np.einsum("pi,pij->pj", batch.pair_shifts, deformation[seg[batch.pair_dst]])
    return batch.replace(**fields)


def test_stress_of_a_batch_of_different_cells_equals_per_cell_strain_derivative():
    """σ_b = (1/V_b) ∂E_b/∂ε_b by central differences, each cell with its own volume."""
    model = tiny_model(cutoff=3.5, zbl=True, coulomb_lr_cutoff=5.0)
    params = cast_params(perturbed_params(init_params(model, 0), scale=0.2, seed=2), np.float64)
    crystals = [random_crystal(cell, n, seed) for cell, n, seed in zip(CELLS, (8, 5, 10), (1, 2, 3))]
    batch = batch_periodic([c[0] for c in crystals], [c[1] for c in crystals], list(CELLS), model.cutoff,
                           total_charges=[0.0, 1.0, 0.0], pair_cutoff=model_pair_cutoff(model), dtype=np.float64)
    apply = jax.jit(lambda p, b: apply_batch(model, p, b))
    stress = np.asarray(apply(params, batch)["stress"])
    volumes = np.abs(np.linalg.det(np.asarray(CELLS)))
    assert np.ptp(volumes) > 20.0
    h = 1e-5
    numeric = np.zeros((3, 3, 3))
    for a in range(3):
        for b in range(3):
            strain = np.zeros((3, 3, 3))
            strain[:, a, b] += 0.5 * h
            strain[:, b, a] += 0.5 * h
            plus = np.asarray(apply(params, strained(batch, strain))["energy"])
            minus = np.asarray(apply(params, strained(batch, -strain))["energy"])
            numeric[:, a, b] = (plus - minus) / (2 * h) / volumes
    for k in range(3):
        assert np.max(np.abs(stress[k])) > 1e-4
        np.testing.assert_allclose(stress[k], numeric[k], rtol=0, atol=1e-8 * max(1.0, np.max(np.abs(stress[k]))),
                                   err_msg=f"cell {k}")
