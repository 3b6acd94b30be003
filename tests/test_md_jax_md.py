"""jax_md interop: the energy function equals physnetjax's model call, padding is exact, jax_md NVE = our NVE."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.data import atomic_masses
from conftest import cast_params, load_molecule, perturbed_params

from physnetjax import PhysNet, init_params, predict, predict_periodic
from physnetjax.md import (
    conserved_quantity,
    kinetic_energy,
    maxwell_boltzmann_momenta,
    nve,
    run,
)
from physnetjax.md.jax_md import (
    JAX_MD_TIME_UNIT_FS,
    jax_md_energy_fn,
    jax_md_neighbor_list,
)
from physnetjax.md.potential import physnet_potential
from physnetjax.units import BOLTZMANN

partition = pytest.importorskip("jax_md.partition")
# Third-party, not ours: with x64 on (tests/conftest.py), jax_md's own neighbor-list pruning
# (jax_md/partition.py, prune_neighbor_list_sparse) scatters jnp.arange(N), int64 under x64,
# into an int32 index array, and JAX warns that this will become an error. Nothing a caller
# passes changes that dtype; it does not occur in float32 runs (x64 off).
pytestmark = pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types:FutureWarning")
quantity = pytest.importorskip("jax_md.quantity")
simulate = pytest.importorskip("jax_md.simulate")
space = pytest.importorskip("jax_md.space")

BOX = 9.0


@pytest.fixture(scope="module")
def setup():
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, n_res=1, cutoff=4.0, num_basis_functions=8,
                    max_atomic_number=9, charges=False, zbl=True)
    params = cast_params(perturbed_params(init_params(model, 0), 0.2, seed=3), np.float64)
    return model, params


@pytest.fixture(scope="module")
def ethanol(setup):
    """Free-space ethanol: energy_fn, its jitted value-and-grad, a Sparse list and the reference."""
    model, params = setup
    z, r = load_molecule("ethanol")
    displacement, shift = space.free()
    energy_fn = jax_md_energy_fn(model, params, z, displacement)
    neighbors = jax_md_neighbor_list(model, displacement)
    return {
        "z": z,
        "r": jnp.asarray(r),
        "energy_fn": energy_fn,
        "grad": jax.jit(jax.value_and_grad(energy_fn)),
        "neighbors": neighbors,
        "nbrs": neighbors.allocate(r),
        "shift": shift,
        "reference": predict(model, params, z, r),
    }


@pytest.fixture(scope="module")
def box_system(setup):
    """Three methanols in a 9 Å cube, crossing its faces (some coordinates < 0 or > 9 Å)."""
    model, params = setup
    zm, rm = load_molecule("methanol")
    centres = np.array([[0.6, 1.0, 1.0], [5.5, 2.0, 6.0], [3.0, 6.5, 8.7]])
    z = np.concatenate([zm] * 3)
    r = np.concatenate([rm - rm.mean(0) + c for c in centres])
    assert r.min() < 0 and r.max() > BOX
    return z, jnp.asarray(r), predict_periodic(model, params, z, r, BOX * np.eye(3))


def _check(value_and_grad, reference):
    energy, grad = value_and_grad
    np.testing.assert_allclose(float(energy), reference["energy"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(-np.asarray(grad), reference["forces"], rtol=0, atol=1e-10)


def test_free_space_equals_predict(ethanol):
    assert ethanol["nbrs"].format is partition.NeighborListFormat.Sparse
    _check(ethanol["grad"](ethanol["r"], ethanol["nbrs"]), ethanol["reference"])
    _check(ethanol["grad"](ethanol["r"], None), ethanol["reference"])  # all pairs


def test_the_energy_function_is_differentiable_without_jit(setup, ethanol):
    """jax.grad(energy_fn) and jax_md.quantity.force outside jit ended in a raw TracerArrayConversionError: the
    model's eager pair-list check ran on concrete indices while the image shifts, functions of R, were traced.

    Free-space ethanol with its Sparse list, then the same ethanol across two faces of the 9 Å cube (all pairs, so
    lattice-vector shifts): its list holds all 72 ordered pairs, so the periodic calls have the free ones' shapes
    and reuse the operations compiled for them (each eager call otherwise compiles every operation anew)."""
    _check(jax.value_and_grad(ethanol["energy_fn"])(ethanol["r"], neighbor=ethanol["nbrs"]), ethanol["reference"])
    model, params = setup
    z = ethanol["z"]
    r = ethanol["r"] - ethanol["r"].mean(0) + jnp.array([0.5, 8.8, 4.5])
    assert r[:, 0].min() < 0 and r[:, 1].max() > BOX and ethanol["nbrs"].idx.shape == (2, 9 * 8)
    reference = predict_periodic(model, params, z, np.asarray(r), BOX * np.eye(3))
    displacement, _ = space.periodic(BOX)
    energy_fn = jax_md_energy_fn(model, params, z, displacement, box=BOX)
    energy, grad = jax.value_and_grad(energy_fn)(r)
    _check((energy, grad), reference)
    np.testing.assert_allclose(np.asarray(quantity.force(energy_fn)(r)), reference["forces"], rtol=0, atol=1e-10)


def test_atoms_exactly_half_a_box_apart_and_a_list_without_slots(setup):
    """A perfect 2 × 2 supercell of OH (the O atoms exactly half a box apart in x and y): jax_md's minimum image
    gives i <- j and j <- i the same image there, so an eager call refused the list as not full ("pair 0 <- 2 is
    listed but 2 <- 0 is not"). Atoms that all lie beyond the model's reach: the neighbor list is allocated without
    slots, and the model got empty edge arrays (a raw "zero-size array to reduction operation" error). Both equal
    predict_periodic (the energy eagerly, where the list is checked; the crystal's forces too, under jit). The
    crystal's Dense list is allocated with 7 slots per atom (2 real), so its 8 × 7 edges have the shapes of the
    all-pairs call and the second eager call reuses the operations compiled for the first."""
    model, params = setup
    half = BOX / 2
    oxygens = np.array([[0.0, 0.0, 1.0], [half, 0.0, 1.0], [0.0, half, 1.0], [half, half, 1.0]])
    crystal = (np.array([8, 1] * 4), np.concatenate([[o, o + [0.97, 0.0, 0.0]] for o in oxygens]))
    dilute = (np.array([8, 1] * 4), np.concatenate([oxygens, oxygens + [0.0, 0.0, half]]))
    displacement, _ = space.periodic(BOX)
    formats = partition.NeighborListFormat
    for (z, r), list_formats in ((crystal, (None, formats.Dense)), (dilute, (formats.Sparse, formats.Dense))):
        reference = predict_periodic(model, params, z, r, BOX * np.eye(3))
        energy_fn = jax_md_energy_fn(model, params, z, displacement, box=BOX)
        for fmt in list_formats:
            capacity = 3.5 if r is crystal[1] else 1.25
            nbrs = None if fmt is None else jax_md_neighbor_list(model, displacement, BOX, format=fmt,
                                                                 capacity_multiplier=capacity).allocate(r)
            assert nbrs is None or (nbrs.idx.size == 0) == (r is dilute[1])
            assert nbrs is None or r is dilute[1] or nbrs.idx.shape == (8, 7)
            np.testing.assert_allclose(float(energy_fn(r, nbrs)), reference["energy"], rtol=0, atol=1e-10)
        if r is crystal[1]:
            _check(jax.jit(jax.value_and_grad(energy_fn))(jnp.asarray(r), None), reference)


def test_bare_coulomb_in_free_space_uses_all_pairs(setup):
    """Charges without coulomb_lr_cutoff: messages from the neighbor list, Coulomb over all pairs."""
    z, r = load_molecule("base_a")
    model = PhysNet(features=8, max_degree=1, num_iterations=1, n_res=1, cutoff=4.0, num_basis_functions=8,
                    max_atomic_number=9, charges=True, zbl=True)
    params = cast_params(perturbed_params(init_params(model, 0), 0.2, seed=3), np.float64)
    displacement, _ = space.free()
    nbrs = jax_md_neighbor_list(model, displacement).allocate(r)
    n = len(z)
    assert int(np.sum(np.asarray(nbrs.idx[0]) < n)) < n * (n - 1)  # the list misses far pairs
    energy_fn = jax_md_energy_fn(model, params, z, displacement)
    _check(jax.jit(jax.value_and_grad(energy_fn))(jnp.asarray(r), nbrs), predict(model, params, z, r))


TRICLINIC = np.array([[9.0, 1.0, 0.5], [0.0, 9.2, 0.3], [0.0, 0.0, 8.8]])
"""A jax_md box: lattice vectors as columns (physnetjax's cell is its transpose)."""


def test_periodic_cube_equals_predict_periodic(setup, box_system):
    """space.periodic with a Dense list; inter-molecular edges cross the faces of the box."""
    model, params = setup
    z, r, reference = box_system
    displacement, _ = space.periodic(BOX)
    nbrs = jax_md_neighbor_list(model, displacement, BOX, format=partition.NeighborListFormat.Dense).allocate(r)
    assert nbrs.format is partition.NeighborListFormat.Dense
    energy_fn = jax_md_energy_fn(model, params, z, displacement, box=BOX)
    _check(jax.jit(jax.value_and_grad(energy_fn))(r, nbrs), reference)


def test_triclinic_fractional_equals_predict_periodic(setup, box_system):
    """space.periodic_general in fractional coordinates (Sparse list).

    jax_md's ``transform`` passes gradients through unchanged, so the gradient with
    respect to fractional positions is already the real-space −F.
    """
    model, params = setup
    z, r, _ = box_system
    reference = predict_periodic(model, params, z, np.asarray(r), TRICLINIC.T)
    displacement, _ = space.periodic_general(TRICLINIC, fractional_coordinates=True)
    fractional = r @ jnp.asarray(np.linalg.inv(TRICLINIC).T)
    nbrs = jax_md_neighbor_list(model, displacement, TRICLINIC, fractional_coordinates=True).allocate(fractional)
    energy_fn = jax_md_energy_fn(model, params, z, displacement, box=TRICLINIC)
    _check(jax.jit(jax.value_and_grad(energy_fn))(fractional, nbrs), reference)


def test_padded_slots_contribute_exactly_zero(ethanol):
    """Extra empty slots (index N) add exact zeros: energy and gradient equal to rounding.

    Only the summation order of the compiled reductions may differ (a few ulp); a
    padded slot that were not masked would be a zero-length pair (NaN or a huge ZBL
    term), not a 1e-13 change.
    """
    nbrs, n = ethanol["nbrs"], len(ethanol["z"])
    real = np.asarray((nbrs.idx[0] < n) & (nbrs.idx[1] < n))
    exact = nbrs.set(idx=nbrs.idx[:, real])
    padding = jnp.full((2, 13), n, dtype=nbrs.idx.dtype)
    padded = nbrs.set(idx=jnp.concatenate([nbrs.idx[:, :5], padding, nbrs.idx[:, 5:]], axis=1))
    e_exact, g_exact = ethanol["grad"](ethanol["r"], exact)
    e_padded, g_padded = ethanol["grad"](ethanol["r"], padded)
    np.testing.assert_allclose(float(e_padded), float(e_exact), rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(g_padded), np.asarray(g_exact), rtol=0, atol=1e-13)


def test_jax_md_nve_equals_physnetjax_nve(setup, ethanol):
    """200 steps of 0.5 fs from the same (r, p): jax_md NVE and physnetjax NVE agree to 1e-9 Å.

    jax_md's time unit with Å, eV and amu is τ = Å·√(amu/eV) = JAX_MD_TIME_UNIT_FS fs,
    so dt_τ = dt_fs / τ and p_τ = p_fs · τ. jax_md rounds dt to float32, so dt_τ is
    chosen float32-exact and our dt is that value in fs. Same velocity-Verlet algorithm
    in float64: only rounding differs (~1e-16, grown ≲ 1e3 over 100 fs); a wrong unit
    moves atoms by ≫ 1e-6 Å.
    """
    model, params = setup
    z, r = ethanol["z"], ethanol["r"]
    masses = jnp.asarray(atomic_masses[z])
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(0), masses, 300.0)
    dt_tau = float(np.float32(0.5 / JAX_MD_TIME_UNIT_FS))
    dt_fs = dt_tau * JAX_MD_TIME_UNIT_FS
    frames, stride = 20, 10

    init_fn, apply_fn = simulate.nve(ethanol["energy_fn"], ethanol["shift"], dt_tau)
    neighbors = ethanol["neighbors"]

    @jax.jit
    def jax_md_run(r, p_tau, nbrs):
        state = init_fn(jax.random.PRNGKey(1), r, 0.0, mass=masses, momenta=p_tau, neighbor=nbrs)

        def step(_, carry):
            state, nbrs = carry
            nbrs = neighbors.update(state.position, nbrs)
            return apply_fn(state, neighbor=nbrs), nbrs

        def chunk(carry, _):
            carry = jax.lax.fori_loop(0, stride, step, carry)
            state, nbrs = carry
            total = (ethanol["energy_fn"](state.position, neighbor=nbrs)
                     + quantity.kinetic_energy(momentum=state.momentum, mass=state.mass))
            return carry, (state.position, state.momentum, total, nbrs.did_buffer_overflow)

        return jax.lax.scan(chunk, (state, nbrs), None, length=frames)[1]

    positions, momenta_tau, total, overflow = jax_md_run(r, momenta * JAX_MD_TIME_UNIT_FS, ethanol["nbrs"])
    assert not np.any(np.asarray(overflow))

    potential = physnet_potential(model, params, z)
    init_ours, apply_ours = nve(potential.energy_force, dt_fs, neighbor_update=potential.update)
    state = jax.jit(init_ours)(r, momenta, masses, potential.allocate(r))
    _, ours = jax.jit(run, static_argnums=(0, 2, 3))(apply_ours, state, frames, stride)

    assert np.abs(np.asarray(ours.positions[-1]) - np.asarray(r)).max() > 0.01
    np.testing.assert_allclose(np.asarray(positions), np.asarray(ours.positions), rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(momenta_tau) / JAX_MD_TIME_UNIT_FS, np.asarray(ours.momenta),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(total), np.asarray(ours.conserved), rtol=0, atol=1e-9)
    # The random model is violently repulsive (K rises by ~20 eV in 100 fs); the Verlet
    # error (O(dt²), ~0.1 eV here) stays below 1 % of the energy exchanged.
    drift = np.abs(np.asarray(total) - float(conserved_quantity(state))).max()
    kinetic = np.append(float(kinetic_energy(momenta, masses)), np.asarray(ours.kinetic_energy))
    assert drift < 0.01 * np.ptp(kinetic)


def test_nvt_langevin_runs(ethanol):
    """jax_md's Langevin integrator takes the energy function (kT in eV, γ in 1/τ)."""
    init_fn, apply_fn = simulate.nvt_langevin(ethanol["energy_fn"], ethanol["shift"], 0.5 / JAX_MD_TIME_UNIT_FS,
                                              kT=BOLTZMANN * 300.0, gamma=0.01 * JAX_MD_TIME_UNIT_FS)
    masses = jnp.asarray(atomic_masses[ethanol["z"]])
    nbrs = ethanol["nbrs"]

    @jax.jit
    def langevin_run(r):
        state = init_fn(jax.random.PRNGKey(0), r, mass=masses, neighbor=nbrs)
        return jax.lax.fori_loop(0, 10, lambda _, s: apply_fn(s, neighbor=nbrs), state)

    state = langevin_run(ethanol["r"])
    assert np.all(np.isfinite(np.asarray(state.position)))
    assert np.abs(np.asarray(state.position - ethanol["r"])).max() > 1e-4


def test_invalid_configurations_raise(setup):
    model, params = setup
    z, _ = load_molecule("methanol")
    displacement, _ = space.periodic(BOX)
    bare_coulomb = PhysNet(features=8, max_degree=1, num_iterations=1, n_res=1, cutoff=4.0, charges=True)
    with pytest.raises(ValueError, match="need all pairs"):
        jax_md_energy_fn(bare_coulomb, params, z, displacement, box=BOX)
    with pytest.raises(ValueError, match="need all pairs"):
        jax_md_neighbor_list(bare_coulomb, displacement, BOX)
    with pytest.raises(ValueError, match="too narrow"):
        jax_md_neighbor_list(model, space.periodic(7.0)[0], 7.0)
    sheared = np.array([[BOX, 0.6 * BOX, 0.0], [0.0, BOX, 0.0], [0.0, 0.0, BOX]])  # width 0.86 · 9 Å < 8 Å
    with pytest.raises(ValueError, match="too narrow"):
        jax_md_energy_fn(model, params, z, displacement, box=sheared)
    # Free space: bare Coulomb is fine (its pair terms use a fixed list of all pairs).
    jax_md_energy_fn(bare_coulomb, params, z, space.free()[0])
    # a periodic space without box= left the widths unchecked: an 8 Å box gave energies 16 meV off without a word
    for periodic in (space.periodic(7.0)[0], space.periodic_general(sheared)[0],
                     space.periodic_general(sheared, fractional_coordinates=False)[0]):
        with pytest.raises(ValueError, match=r"displacement_fn is periodic \(it wraps a separation of 1e\+06 along each "
                                             r"axis to .*\) but no box was given: pass box= as given to the jax_md "
                                             r"space"):
            jax_md_energy_fn(model, params, z, periodic)


def test_missing_jax_md_names_the_extra(setup, monkeypatch):
    model, params = setup
    monkeypatch.setitem(sys.modules, "jax_md", None)
    with pytest.raises(ImportError, match=r"physnetjax\[jaxmd\]"):
        jax_md_energy_fn(model, params, [1, 1], lambda a, b: a - b)


def test_importing_physnetjax_does_not_import_jax_md():
    code = ("import sys, physnetjax, physnetjax.md, physnetjax.md.jax_md; "
            "assert 'jax_md' not in sys.modules, 'jax_md imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
