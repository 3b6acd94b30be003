"""The hand-derived derivative of the two-body D3(BJ) energy, and the halves layout of pair lists.

``d3_two_body_energy`` (custom JVP) must give the same energy, forces, stress, damping-
parameter gradients and second derivatives as JAX's automatic differentiation of the
plain formula (``d3_two_body_autodiff``), in float64, on periodic cells (the dense
per-atom C6 projection and the per-pair grid) and padded molecule batches. The dftd3
agreement of the same path is in tests/test_dispersion.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk, molecule

from physnetjax import PhysNet, apply_batch, batch_molecules, batch_periodic, init_params
from physnetjax.neighbors.halves import check_pair_halves, halves_layout
from physnetjax.neighbors.periodic import periodic_pairs
from physnetjax.physics.dispersion import (
    D3_MAX_ATOMIC_NUMBER,
    d3_bj_parameters,
    d3_two_body_autodiff,
    d3_two_body_energy,
    one_direction,
)

PBE0 = d3_bj_parameters("pbe0")
DAMPING = {name: getattr(PBE0, name) for name in ("s6", "s8", "a1", "a2")}


def _silicon_carbide(cutoff):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=3)
    atoms.numbers[[0, 5]] = 6
    dst, src, shifts = periodic_pairs(atoms.positions, np.asarray(atoms.cell), cutoff)
    return atoms.numbers, atoms.positions, dst, src, shifts, np.zeros(len(atoms), np.int32), 1


def _molecule_batch(cutoff):
    numbers, positions, dst, src, segments = [], [], [], [], []
    offset = 0
    for b, name in enumerate(("CH3CH2OH", "H2O")):
        atoms = molecule(name)
        n = len(atoms)
        i, j = np.nonzero(~np.eye(n, dtype=bool))
        dst.append(i + offset)
        src.append(j + offset)
        numbers.append(atoms.numbers)
        positions.append(atoms.positions)
        segments.append(np.full(n, b))
        offset += n
    dst, src = np.concatenate(dst), np.concatenate(src)
    return (np.concatenate(numbers), np.concatenate(positions), dst, src, np.zeros((len(dst), 3)),
            np.concatenate(segments).astype(np.int32), 2)


def _half_list(system, padding):
    """Half list (each unordered pair once) with ``padding`` masked slots pointing at the last atom."""
    numbers, positions, dst, src, shifts, segments, num_molecules = system
    last = len(numbers) - 1
    dst = np.concatenate([dst, np.full(padding, last)])
    src = np.concatenate([src, np.full(padding, last)])
    shifts = np.concatenate([shifts, np.zeros((padding, 3))])
    mask = np.arange(len(dst)) < len(dst) - padding
    half, half_mask = one_direction(jnp.asarray(dst), jnp.asarray(src), jnp.asarray(shifts), jnp.asarray(mask))
    half = np.asarray(half)
    return dst[half], src[half], shifts[half], np.asarray(half_mask)


@pytest.mark.parametrize("case", ["dense cell", pytest.param("sparse cell", marks=pytest.mark.slow),
                                  "padded molecules"])
def test_two_body_derivatives_equal_autodiff_of_the_plain_formula(case):
    jax.config.update("jax_enable_x64", True)
    cutoff = {"dense cell": 11.0, "sparse cell": 5.0, "padded molecules": 15.0}[case]
    system = _molecule_batch(cutoff) if case == "padded molecules" else _silicon_carbide(cutoff)
    numbers, positions, _, _, _, segments, num_molecules = system
    dst, src, shifts, mask = _half_list(system, padding=5)
    dense = len(numbers) * (D3_MAX_ATOMIC_NUMBER + 1) < len(dst)
    assert dense == (case == "dense cell")
    z, dst, src, mask, segments = map(jnp.asarray, (numbers, dst, src, mask, segments))
    shifts, positions = jnp.asarray(shifts), jnp.asarray(positions)
    width = 0.2 * cutoff

    def vectors(r, strain):
        deformation = jnp.eye(3) + 0.5 * (strain + strain.T)
        return (r[src] - r[dst] + shifts) @ deformation

    def fast(r, strain, damping):
        return d3_two_body_energy(num_molecules, cutoff, cutoff, width, z, vectors(r, strain), dst, src, mask,
                                  segments, damping)

    def plain(r, strain, damping):
        return d3_two_body_autodiff(z, vectors(r, strain), dst, src, mask, segments, num_molecules, damping,
                                    cutoff=cutoff, cn_cutoff=cutoff, switch_width=width)[0]

    damping = {name: jnp.asarray(value) for name, value in DAMPING.items()}
    strain = jnp.zeros((3, 3))
    weights = jnp.arange(1.0, num_molecules + 1.0)
    direction = jnp.cos(jnp.arange(positions.size, dtype=float)).reshape(positions.shape)

    def derivatives(energy):
        def total(r, e, d):
            return jnp.sum(weights * energy(r, e, d))

        value, gradients = jax.value_and_grad(total, argnums=(0, 1, 2))(positions, strain, damping)
        hessian_direction = jax.jvp(lambda r: jax.grad(total)(r, strain, damping), (positions,), (direction,))[1]
        force_loss = jax.grad(lambda d: jnp.sum(jax.grad(total)(positions, strain, d) ** 2))(damping)
        return (energy(positions, strain, damping), value, *gradients, hessian_direction, force_loss)

    results = {name: jax.jit(lambda energy=energy: derivatives(energy))()
               for name, energy in (("fast", fast), ("plain", plain))}

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * max(1.0, float(np.max(np.abs(b)))))

    (e_fast, v_fast, g_fast, s_fast, p_fast, h_fast, l_fast) = results["fast"]
    (e_plain, v_plain, g_plain, s_plain, p_plain, h_plain, l_plain) = results["plain"]
    close(e_fast, e_plain)
    close(v_fast, v_plain)
    close(g_fast, g_plain)
    close(s_fast, s_plain)
    close(h_fast, h_plain)
    for name in DAMPING:
        close(p_fast[name], p_plain[name])
        close(l_fast[name], l_plain[name])
    assert float(jnp.max(jnp.abs(g_plain))) > 1e-3 and float(jnp.max(jnp.abs(s_plain))) > 1e-3


@pytest.fixture(scope="module")
def dispersion_model():
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, cutoff=4.0, zbl=True, dispersion="d3bj",
                    dispersion_cutoff=9.0)
    return model, init_params(model, 0)


def test_builders_store_the_pair_list_in_halves_and_results_are_unchanged(dispersion_model):
    model, params = dispersion_model
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=0)
    batch = batch_periodic([atoms.numbers], [atoms.positions], [np.asarray(atoms.cell)], 4.0, pair_cutoff=9.0,
                           num_pairs=1300, dtype=np.float64)
    assert batch.pair_halves
    half = batch.pair_dst.shape[0] // 2
    check_pair_halves(batch.pair_dst, batch.pair_src, batch.pair_mask, batch.pair_shifts)
    np.testing.assert_array_equal(batch.pair_dst[:half], batch.pair_src[half:])
    assert int(np.sum(batch.pair_mask)) == 1258
    apply = jax.jit(lambda p, b: apply_batch(model, p, b))
    with_halves = apply(params, batch)
    without = apply(params, dataclasses.replace(batch, pair_halves=False))
    for key in ("energy", "dispersion", "forces", "stress"):
        np.testing.assert_allclose(with_halves[key], without[key], rtol=0, atol=1e-12)
    assert float(abs(without["dispersion"][0])) > 1.0

    mols = [molecule("CH3CH2OH"), molecule("H2O")]
    odd = batch_molecules([a.numbers for a in mols], [a.positions for a in mols], 4.0, pair_cutoff=9.0,
                          num_pairs=81, dtype=np.float64)
    assert not odd.pair_halves
    three_body = batch_molecules([a.numbers for a in mols], [a.positions for a in mols], 4.0, pair_cutoff=9.0,
                                 three_body_cutoff=9.0, dtype=np.float64)
    assert not three_body.pair_halves


def test_pair_halves_on_another_layout_is_refused(dispersion_model):
    model, params = dispersion_model
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    dst, src, shifts = periodic_pairs(atoms.positions, np.asarray(atoms.cell), 9.0)
    batch = batch_periodic([atoms.numbers], [atoms.positions], [np.asarray(atoms.cell)], 4.0, pair_cutoff=9.0,
                           dtype=np.float64)
    sorted_list = dataclasses.replace(batch, pair_dst=dst, pair_src=src, pair_shifts=shifts,
                                      pair_mask=np.ones(len(dst), bool))
    with pytest.raises(ValueError, match="not the reverse of slot"):
        apply_batch(model, params, sorted_list)
    # Pair 0 in both directions in the first half (and so twice in each direction overall).
    half = batch.pair_dst.shape[0] // 2
    twice = {key: np.array(getattr(batch, key)) for key in ("pair_dst", "pair_src", "pair_mask", "pair_shifts")}
    for key in twice:
        twice[key][1], twice[key][half + 1] = twice[key][half], twice[key][0]
    with pytest.raises(ValueError, match="twice"):
        check_pair_halves(twice["pair_dst"], twice["pair_src"], twice["pair_mask"], twice["pair_shifts"])
    with pytest.raises(ValueError, match="halves"):
        halves_layout(dst[1:], src[1:], shifts[1:], 2 * len(dst), 0, np.float64)
    with pytest.raises(ValueError, match="halves"):
        halves_layout(dst, src, shifts, len(dst) + 1, 0, np.float64)
    with pytest.raises(ValueError, match="pair_halves=True describes the separate pair list"):
        model.apply(params, batch.atomic_numbers, batch.positions, batch.dst_idx, batch.src_idx, pair_halves=True)
