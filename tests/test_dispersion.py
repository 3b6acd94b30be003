"""D3(BJ) dispersion (physnetjax/physics/dispersion.py) against the reference dftd3 package.

The oracle is the ``dftd3`` Python package (s-dftd3, the reference D3 library). Every
comparison is in float64 with the same cutoffs on both sides: molecules smaller than
every cutoff (so the cutoff never acts), the periodic crystal with hard cutoffs
(``switch_width = 0``) set equal to dftd3's real-space cutoffs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk, molecule

from physnetjax.neighbors.periodic import periodic_pairs
from physnetjax.physics.dispersion import (
    D3_K3,
    d3_bj_parameters,
    d3_dispersion_energy,
    d3_functionals,
    d3_pair_c6,
    d3_reference_weights,
    d3_tables,
    d3_triplets,
    dispersion_switch,
    check_d3_elements,
)
from physnetjax.units import BOHR, HARTREE

# dftd3's default real-space cutoffs in Bohr (two-body, three-body, CN).
DISP2, DISP3, CN = 60.0, 40.0, 40.0

G2_NAMES = [
    "H2O", "NH3", "CH4", "CH3CH2OH", "C6H6", "LiF", "BeH", "BF3", "Na2", "AlCl3", "SiH4",
    "PH3", "SH2", "HCl", "CCl4", "SO2", "CH3CN", "HCOOH", "F2O", "ClF3", "Li2", "NaCl",
    "SiF4", "CS2", "PF3",
]
EXTRA = {
    # Noble gases, Mg and a few heavier elements (not in the G2 set), small arbitrary geometries.
    "HeNeAr": (["He", "Ne", "Ar"], [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [1.2, 3.1, 0.4]]),
    "MgH2": (["Mg", "H", "H"], [[0.0, 0.0, 0.0], [1.70, 0.0, 0.0], [-1.70, 0.05, 0.0]]),
    "HBr_KI": (["H", "Br", "K", "I"], [[0.0, 0.0, 0.0], [1.41, 0.0, 0.0], [4.5, 1.0, 0.0], [4.7, 4.2, 0.3]]),
    "ZnCl2_Fe": (["Zn", "Cl", "Cl", "Fe"], [[0.0, 0.0, 0.0], [2.07, 0.0, 0.0], [-2.07, 0.0, 0.1], [0.2, 3.0, 0.0]]),
    "SnH4_Xe": (["Sn", "H", "H", "H", "H", "Xe"],
                [[0, 0, 0], [0.98, 0.98, 0.98], [-0.98, -0.98, 0.98], [-0.98, 0.98, -0.98],
                 [0.98, -0.98, -0.98], [4.0, 0.0, 0.5]]),
}


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _systems():
    systems = []
    for name in G2_NAMES:
        atoms = molecule(name)
        systems.append((name, atoms.numbers.copy(), atoms.positions.copy()))
    for name, (symbols, positions) in EXTRA.items():
        from ase import Atoms

        atoms = Atoms(symbols, positions=positions)
        systems.append((name, atoms.numbers.copy(), atoms.positions.copy()))
    return systems


def _batched_pairs(numbers_list, positions_list):
    """All directed pairs within each molecule of a batch; returns flat arrays."""
    z, r, seg, dst, src = [], [], [], [], []
    offset = 0
    for k, (numbers, positions) in enumerate(zip(numbers_list, positions_list)):
        n = len(numbers)
        i, j = np.nonzero(~np.eye(n, dtype=bool))
        dst.append(i + offset)
        src.append(j + offset)
        z.append(numbers)
        r.append(positions)
        seg.append(np.full(n, k))
        offset += n
    return (np.concatenate(z), np.concatenate(r), np.concatenate(seg), np.concatenate(dst), np.concatenate(src))


def _parameters(functional, atm):
    params = dict(d3_bj_parameters(functional).__dict__)
    if not atm:
        params["s9"] = 0.0
    return params


def _ours(z, r, seg, dst, src, num_molecules, params, atm, *, shifts=None, cutoff=DISP2 * BOHR,
          cn_cutoff=CN * BOHR, three_body_cutoff=DISP3 * BOHR, switch_width=0.0, mask=None):
    """Energies (B,) eV, gradient (N, 3) eV/Å and strain derivative (B, 3, 3) eV."""
    mask = np.ones(len(dst), bool) if mask is None else mask
    shifts = np.zeros((len(dst), 3)) if shifts is None else shifts
    triplets = None
    if atm:
        vectors = r[src] - r[dst] + shifts
        inside = mask & (np.linalg.norm(vectors, axis=1) < three_body_cutoff)
        triplets = jnp.asarray(d3_triplets(dst, inside))
    seg_j = jnp.asarray(seg)

    def total(positions, strain):
        deformation = jnp.eye(3) + strain
        pos = jnp.einsum("ni,nij->nj", positions, deformation[seg_j])
        sh = jnp.einsum("pi,pij->pj", jnp.asarray(shifts), deformation[seg_j[dst]])
        vectors = pos[src] - pos[dst] + sh
        energy = d3_dispersion_energy(
            jnp.asarray(z), vectors, jnp.asarray(dst), jnp.asarray(src), jnp.asarray(mask), seg_j, num_molecules,
            params, cutoff=cutoff, cn_cutoff=cn_cutoff, switch_width=switch_width, triplets=triplets,
            three_body_cutoff=three_body_cutoff,
        )
        return jnp.sum(energy), energy

    (_, energy), (grad, grad_strain) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
        jnp.asarray(r), jnp.zeros((num_molecules, 3, 3)))
    return np.asarray(energy), np.asarray(grad), np.asarray(grad_strain)


def _reference(numbers, positions, functional, atm, cell=None, cutoffs=None):
    interface = pytest.importorskip("dftd3.interface")
    model = interface.DispersionModel(
        numbers, positions / BOHR, None if cell is None else np.asarray(cell) / BOHR,
        None if cell is None else np.array([True, True, True]),
    )
    if cutoffs is not None:
        model.set_realspace_cutoff(*cutoffs)
    result = model.get_dispersion(interface.RationalDampingParam(method=functional, atm=atm), grad=True)
    return (float(result["energy"]) * HARTREE, np.asarray(result["gradient"]) * HARTREE / BOHR,
            np.asarray(result["virial"]) * HARTREE)


@pytest.mark.parametrize("functional", ["pbe0", "b3lyp"])
@pytest.mark.parametrize("atm", [False, True])
def test_molecules_match_dftd3(functional, atm):
    pytest.importorskip("dftd3")
    systems = _systems()
    assert len(systems) >= 20
    elements = set(np.concatenate([s[1] for s in systems]).tolist())
    assert set(range(1, 19)) <= elements
    z, r, seg, dst, src = _batched_pairs([s[1] for s in systems], [s[2] for s in systems])
    energy, grad, grad_strain = _ours(z, r, seg, dst, src, len(systems), _parameters(functional, atm), atm)
    start = 0
    for b, (name, numbers, positions) in enumerate(systems):
        ref_energy, ref_grad, ref_virial = _reference(numbers, positions, functional, atm)
        n = len(numbers)
        assert abs(energy[b] - ref_energy) < 1e-10, (name, energy[b], ref_energy)
        np.testing.assert_allclose(grad[start:start + n], ref_grad, rtol=0, atol=1e-10, err_msg=name)
        np.testing.assert_allclose(grad_strain[b], ref_virial, rtol=0, atol=1e-10, err_msg=name)
        start += n


@pytest.mark.slow
@pytest.mark.parametrize("atm", [False, True])
def test_periodic_crystal_matches_dftd3(atm):
    pytest.importorskip("dftd3")
    crystal = bulk("NaCl", "rocksalt", a=5.64) * (1, 1, 1)
    crystal.positions += 0.07 * np.random.default_rng(0).standard_normal(crystal.positions.shape)
    cutoffs = (30.0, 16.0, 20.0)  # disp2, disp3, cn in Bohr; hard on both sides
    cell = np.asarray(crystal.cell)
    dst, src, shifts = periodic_pairs(crystal.positions, cell, cutoffs[0] * BOHR)
    z = crystal.numbers
    energy, grad, grad_strain = _ours(
        z, crystal.positions, np.zeros(len(z), int), dst, src, 1, _parameters("pbe0", atm), atm, shifts=shifts,
        cutoff=cutoffs[0] * BOHR, three_body_cutoff=cutoffs[1] * BOHR, cn_cutoff=cutoffs[2] * BOHR)
    ref_energy, ref_grad, ref_virial = _reference(z, crystal.positions, "pbe0", atm, cell, cutoffs)
    assert abs(energy[0] - ref_energy) < 1e-9, (energy[0], ref_energy)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=1e-9)
    np.testing.assert_allclose(grad_strain[0], ref_virial, rtol=0, atol=1e-9)
