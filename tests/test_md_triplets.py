"""The ATM three-body term on in-jit neighbor lists (MD) and in MoleculeBatcher batches.

Oracles: host triplet lists (:func:`pair_triplets`, a plain per-atom double loop) for the
in-jit builder; the ``dftd3`` package with ``atm=True`` for molecules smaller than the
dispersion switch region; for a periodic cell the model on host-built triplets (that
path is itself checked against the pure function and dftd3 in test_dispersion_three_body.py).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import molecule

from physnetjax import MoleculeBatcher, PhysNet, batch_periodic, predict
from physnetjax.md import nve, run
from physnetjax.md.potential import NeighborPair, check_neighbors, physnet_potential
from physnetjax.neighbors import (
    NeighborListOverflowError,
    allocate_triplets,
    build_triplets,
    check_triplet_overflow,
    model_pair_cutoff,
    model_triplet_cutoff,
    neighbor_list,
    pair_triplets,
)
from physnetjax.predict import jitted_apply
from conftest import ATM_MODEL_SHORT_CUTOFF, dftd3_reference

pytestmark = ATM_MODEL_SHORT_CUTOFF

SMALL = dict(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0, charges=False,
             zbl=False, param_dtype=jnp.float64)




def _host_triplets(pairs, positions, radius):
    positions = np.asarray(positions)
    vectors = positions[np.asarray(pairs.src_idx)] - positions[np.asarray(pairs.dst_idx)]
    keep = np.asarray(pairs.mask) & (np.linalg.norm(vectors, axis=-1) < radius)
    return {tuple(t) for t in pair_triplets(np.asarray(pairs.dst_idx), keep).tolist()}


def test_in_jit_triplets_equal_the_host_list_and_overflow_is_data():
    rng = np.random.default_rng(1)
    positions = rng.uniform(0.0, 6.0, size=(14, 3))
    pairs = neighbor_list(None, method="dense").allocate(positions)  # every pair, slots in list order
    triplets = allocate_triplets(pairs, positions, 3.5, capacity_multiplier=1.0)
    expected = _host_triplets(pairs, positions, 3.5)
    found = np.asarray(triplets.triplets)[np.asarray(triplets.mask)]
    assert len(expected) > 20 and len(found) == len(expected) == triplets.capacity
    assert {tuple(t) for t in found.tolist()} == expected
    assert np.all(found[:, 0] < found[:, 1])

    squeezed = positions * 0.8  # more pairs within 3.5 Å than the capacity holds
    rebuilt = jax.jit(build_triplets)(pairs, jnp.asarray(squeezed), triplets)
    assert bool(rebuilt.did_overflow)
    assert int(rebuilt.num_triplets) == len(_host_triplets(pairs, squeezed, 3.5)) > triplets.capacity
    with pytest.raises(NeighborListOverflowError, match=rf"for capacity {triplets.capacity}.*capacity_multiplier"):
        check_triplet_overflow(rebuilt)
    # Sticky: a later build that fits keeps the flag.
    assert bool(jax.jit(build_triplets)(pairs, jnp.asarray(positions), rebuilt).did_overflow)


def test_md_neighbor_lists_carry_the_three_body_term(atm_model):
    """Ethanol with an in-jit 'dense' list: E and F equal dftd3 (ATM on) to 1e-10, also
    after a move beyond skin/2 that rebuilds the pair and triplet lists inside jit."""
    model, params = atm_model
    atoms = molecule("CH3CH2OH")
    potential = physnet_potential(model, params, atoms.numbers, method="dense")
    update, energy_force = jax.jit(potential.update), jax.jit(potential.energy_force)
    nbrs = potential.allocate(jnp.asarray(atoms.positions))
    assert isinstance(nbrs, NeighborPair) and nbrs.triplets is not None
    moved = atoms.positions + np.random.default_rng(0).uniform(-0.3, 0.3, atoms.positions.shape)
    for positions in (atoms.positions, moved):
        nbrs = check_neighbors(update(jnp.asarray(positions), nbrs))
        np.testing.assert_array_equal(np.asarray(nbrs.pairs.reference_positions), positions)
        energy, forces = energy_force(jnp.asarray(positions), nbrs)
        ref_energy, ref_forces = dftd3_reference(atoms.numbers, positions)
        # Measured |ΔE| ~ 1e-15 eV, |ΔF| ~ 1e-15 eV/Å (float64 round-off).
        assert abs(float(energy) - ref_energy) < 1e-10
        np.testing.assert_allclose(np.asarray(forces), ref_forces, rtol=0, atol=1e-10)


def test_periodic_md_lists_equal_host_triplets(atm_model):
    """A 2-atom triclinic cell, 6 Å reach over many images: E, F, stress as with host-built triplets."""
    model, params = atm_model
    cell = np.array([[3.1, 0.2, 0.0], [0.1, 2.9, 0.3], [0.0, 0.2, 3.3]])
    positions = np.array([[0.1, 0.0, 0.2], [1.5, 1.6, 1.4]])
    numbers = np.array([6, 8])
    batch = batch_periodic([numbers], [positions], [cell], model.cutoff, pair_cutoff=model_pair_cutoff(model),
                           three_body_cutoff=model_triplet_cutoff(model), dtype=np.float64)
    reference = jitted_apply(model)(params, batch)
    potential = physnet_potential(model, params, numbers, cell=cell, method="cell")
    nbrs = potential.allocate(jnp.asarray(positions))
    out = jax.jit(potential.outputs)(jnp.asarray(positions), nbrs)
    # The MD list also holds pairs in [6, 6.5) Å (skin), whose triangles the switch zeroes.
    assert int(np.sum(nbrs.triplets.mask)) > int(np.sum(batch.triplet_mask)) > 100
    assert abs(float(out["energy"][0] - reference["energy"][0])) < 1e-10
    np.testing.assert_allclose(np.asarray(out["forces"]), np.asarray(reference["forces"]), rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(out["stress"]), np.asarray(reference["stress"]), rtol=0, atol=1e-10)


@pytest.mark.slow
def test_nve_with_atm_rebuilds_the_triplets_and_conserves_energy(atm_model):
    """80 steps of 0.5 fs of ethanol (pure D3 + ATM, no repulsion: kept short): the lists
    are rebuilt, the final energy equals a fresh host-triplet evaluation, and
    E_kin + E_pot stays constant."""
    from physnetjax.md import maxwell_boltzmann_momenta

    model, params = atm_model
    atoms = molecule("CH3CH2OH")
    masses = atoms.get_masses()
    potential = physnet_potential(model, params, atoms.numbers, method="dense", skin=0.1)
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(0), jnp.asarray(masses), 300.0)
    init_fn, apply_fn = nve(potential.energy_force, 0.5, neighbor_update=potential.update)
    start = jnp.asarray(atoms.positions)
    state = init_fn(start, momenta, masses, potential.allocate(start))
    final, frames = jax.jit(run, static_argnums=(0, 2, 3))(apply_fn, state, 40, 2)
    check_neighbors(final.nbrs)
    rebuilt_at = np.asarray(final.nbrs.edges.reference_positions)
    assert not np.allclose(rebuilt_at, atoms.positions, atol=0.05)  # at least one rebuild happened
    fresh = predict(model, params, atoms.numbers, np.asarray(final.positions))
    assert abs(float(final.potential_energy) - float(fresh["energy"])) < 1e-10
    np.testing.assert_allclose(np.asarray(final.forces), fresh["forces"], rtol=0, atol=1e-10)
    conserved = np.asarray(frames.conserved)
    kinetic = np.asarray(frames.kinetic_energy)
    # Velocity Verlet at 0.5 fs on this soft surface: fluctuation ≪ kinetic energy.
    assert np.ptp(conserved) < 1e-3 * kinetic.mean()


def test_overflowed_triplet_list_is_flagged_in_md(atm_model):
    """A list allocated for a stretched geometry overflows at the real one; the state says so."""
    model, params = atm_model
    atoms = molecule("CH3OH")
    potential = physnet_potential(model, params, atoms.numbers, method="dense", capacity_multiplier=1.0)
    stretched = jnp.asarray(atoms.positions * 3.0)
    nbrs = potential.allocate(stretched)
    updated = jax.jit(potential.update)(jnp.asarray(atoms.positions), nbrs)
    assert bool(updated.triplets.did_overflow) and bool(updated.did_overflow)
    with pytest.raises(NeighborListOverflowError, match=rf"triplet list overflowed.*capacity {nbrs.triplets.capacity}"):
        check_triplet_overflow(updated.triplets)
    with pytest.raises(NeighborListOverflowError, match="overflowed"):
        check_neighbors(updated)


def test_a_triplet_overflow_alone_flags_the_neighbor_state(atm_model):
    """Edge and pair lists that fit and a triplet list too small for the molecule (allocated for it stretched
    threefold): after a rebuild (a 0.3 Å shift, beyond skin / 2) the neighbor state the MD loop checks inside
    jit says it overflowed, and check_neighbors names the triplet list."""
    model, params = atm_model
    atoms = molecule("CH3OH")
    potential = physnet_potential(model, params, atoms.numbers, method="dense", capacity_multiplier=1.0)
    positions = jnp.asarray(atoms.positions)
    nbrs = potential.allocate(positions)
    assert nbrs.pairs is not None and nbrs.triplets is not None
    small = allocate_triplets(nbrs.term_pairs, positions * 3.0, nbrs.triplets.radius, capacity_multiplier=1.0)
    assert small.capacity < nbrs.triplets.capacity
    updated = jax.jit(potential.update)(positions + 0.3, nbrs.replace(triplets=small))
    assert not bool(updated.edges.did_overflow) and not bool(updated.pairs.did_overflow)
    assert bool(updated.triplets.did_overflow) and bool(updated.did_overflow)
    with pytest.raises(NeighborListOverflowError, match=rf"triplet list overflowed.*capacity {small.capacity}"):
        check_neighbors(updated)


def test_molecule_batcher_batches_carry_the_three_body_term(atm_model):
    model, params = atm_model
    structures = [molecule(name) for name in ("H2O", "CH3OH", "NH3", "CH3CH2OH")]
    n_max = max(len(a) for a in structures)
    z = np.zeros((len(structures), n_max), np.int32)
    r = np.zeros((len(structures), n_max, 3))
    for k, a in enumerate(structures):
        z[k, :len(a)], r[k, :len(a)] = a.numbers, a.positions
    batcher = MoleculeBatcher({"Z": z, "R": r}, 3, model.cutoff, model_pair_cutoff(model),
                              three_body_cutoff=model_triplet_cutoff(model), dtype=np.float64)
    assert all(len(level) == 4 and level[3] > 0 for level in batcher.levels)
    apply = jitted_apply(model)
    seen = 0
    for batch, indices in batcher.epoch():
        assert batch.shape_key in batcher.shapes
        out = apply(params, batch)
        start = 0
        for slot, k in enumerate(indices):
            energy, forces = dftd3_reference(structures[k].numbers, structures[k].positions)
            n = len(structures[k])
            assert abs(float(out["energy"][slot]) - energy) < 1e-10
            np.testing.assert_allclose(np.asarray(out["forces"][start:start + n]), forces, rtol=0, atol=1e-10)
            start += n
            seen += 1
    assert seen == len(structures)


def test_all_pairs_list_keeps_every_pair_of_pairs():
    """Bare Coulomb makes the pair list all pairs (never rebuilt): its triplets must not be cut by distance."""
    model = PhysNet(dispersion="d3bj", dispersion_three_body=True, dispersion_cutoff=6.0,
                    **{**SMALL, "charges": True})
    atoms = molecule("CH3OH")
    spread = atoms.positions * 4.0  # several pairs beyond 6.5 Å now, maybe not later
    potential = physnet_potential(model, None, atoms.numbers, method="dense")
    nbrs = potential.allocate(jnp.asarray(spread))
    assert nbrs.pairs.cutoff is None and nbrs.triplets.radius == np.inf
    n = len(atoms)
    assert int(np.sum(nbrs.triplets.mask)) == n * (n - 1) * (n - 2) // 2


@pytest.mark.filterwarnings("error::FutureWarning")
def test_jax_md_dense_lists_carry_the_three_body_term(atm_model):
    """jax_md free space: a Dense list's rows give the triplets (E, F equal dftd3); Sparse refuses.

    In float64 (x64) the Dense list gave JAX's FutureWarning "scatter inputs have incompatible types": jax_md's
    all-pairs candidates are int64 there, pruned into its int32 list. jax_md_neighbor_list casts them (a FutureWarning
    fails this test). The Sparse list, built only to show it refused, is built with that warning ignored: jax_md's
    Sparse pruning scatters an int64 arange of its own under x64 that no argument reaches. (Switching x64 off for it
    instead, inside this x64 process, was followed by segfaults in XLA compilations of later tests.)
    """
    pytest.importorskip("jax_md")
    from jax_md import partition, space

    from physnetjax.md.jax_md import jax_md_energy_fn, jax_md_neighbor_list

    model, params = atm_model
    atoms = molecule("CH3OH")
    displacement, _ = space.free()
    positions = jnp.asarray(atoms.positions)
    energy_fn = jax_md_energy_fn(model, params, atoms.numbers, displacement)
    dense = jax_md_neighbor_list(model, displacement, format=partition.NeighborListFormat.Dense).allocate(positions)
    energy, grad = jax.jit(jax.value_and_grad(energy_fn))(positions, dense)
    ref_energy, ref_forces = dftd3_reference(atoms.numbers, atoms.positions)
    assert abs(float(energy) - ref_energy) < 1e-10
    np.testing.assert_allclose(-np.asarray(grad), ref_forces, rtol=0, atol=1e-10)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "scatter inputs have incompatible types", FutureWarning)
        sparse = jax_md_neighbor_list(model, displacement).allocate(positions)
    with pytest.raises(ValueError, match="NeighborListFormat.Dense"):
        energy_fn(positions, sparse)
