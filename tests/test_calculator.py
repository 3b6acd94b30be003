"""PhysNetCalculator: equals direct model calls, follows changes of atoms/cell/PBC, reuses compilations."""

import inspect
import os
import re
import threading
import warnings

import ase
import ase.io
import jax
import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError
from conftest import cast_params, perturbed_params

from physnetjax import PhysNet, apply_batch, batch_molecules, init_params, predict, predict_periodic
from physnetjax.calculator import PhysNetCalculator
from physnetjax.neighbors import model_pair_cutoff
import physnetjax
from physnetjax.errors import CloseContactWarning, warn_caller
from physnetjax.validation import PhysNetInputError, PhysNetInputWarning, check_distances, validate_structure

# float64 results of the same model on the same structure differ only by summation
# order (vesin vs host edge order): a few ulps of E ~ 10 eV → 1e-10 is ample.
TIGHT = 1e-10


@pytest.fixture(scope="module")
def charged_model():
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=9, charges=True, zbl=True, n_res=1)
    params = cast_params(perturbed_params(init_params(model, 0), 0.2, seed=1), np.float64)
    return model, params


@pytest.fixture(scope="module")
def periodic_model():
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=3.0,
                    max_atomic_number=9, charges=True, zbl=True, n_res=1, coulomb_lr_cutoff=4.5)
    params = cast_params(perturbed_params(init_params(model, 0), 0.2, seed=2), np.float64)
    return model, params


@pytest.fixture(scope="module")
def periodic_calc(periodic_model):
    """Buckets large enough that the cell and its 2×2×1 supercell share one compiled shape."""
    return PhysNetCalculator(*periodic_model, dtype="float64", atom_bucket=32, edge_bucket=1024)


@pytest.fixture(scope="module")
def calc(charged_model):
    return PhysNetCalculator(*charged_model, dtype="float64")


@pytest.fixture(scope="module")
def direct(charged_model):
    """Reference: the model applied to a host-built batch (batch_molecules), padded to one shape."""
    model, params = charged_model
    jitted = jax.jit(lambda batch: apply_batch(model, params, batch))

    def call(atoms):
        n = len(atoms)
        batch = batch_molecules([atoms.numbers], [atoms.positions], model.cutoff,
                                pair_cutoff=model_pair_cutoff(model), num_atoms=24, num_edges=512,
                                num_pairs=512, dtype=np.float64)
        out = jitted(batch)
        return {"energy": float(out["energy"][0]), "forces": np.asarray(out["forces"][:n]),
                "charges": np.asarray(out["charges"][:n]), "dipole": np.asarray(out["dipoles"][0])}

    return call


def assert_matches_model(atoms, direct):
    ref = direct(atoms)
    np.testing.assert_allclose(atoms.get_potential_energy(), ref["energy"], rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], rtol=0, atol=TIGHT)
    np.testing.assert_allclose(atoms.get_charges(), ref["charges"], rtol=0, atol=TIGHT)
    np.testing.assert_allclose(atoms.get_dipole_moment(), ref["dipole"], rtol=0, atol=TIGHT)
    assert atoms.calc.get_property("free_energy", atoms) == atoms.get_potential_energy()


def test_results_equal_direct_model_call(calc, direct, molecules):
    z, r = molecules["ethanol"]
    atoms = ase.Atoms(numbers=z, positions=r, calculator=calc)
    assert_matches_model(atoms, direct)
    assert np.max(np.abs(atoms.get_forces())) > 0.1


def test_total_charge_from_info_or_initial_charges(calc, charged_model, molecules):
    """info['charge'] sets Q, else the initial charges' sum (tblite's rule); a new charge on the same geometry is
    not served from the cache (ASE's change check ignores info)."""
    model, params = charged_model
    z, r = molecules["ethanol"]
    atoms = ase.Atoms(numbers=z, positions=r, calculator=calc)
    for charge in (0.0, 1.0, -1.0):
        atoms.info["charge"] = charge
        np.testing.assert_allclose(atoms.get_potential_energy(),
                                   predict(model, params, z, r, total_charge=charge)["energy"], rtol=0, atol=TIGHT)
    cation = ase.Atoms(numbers=z, positions=r, calculator=calc, charges=[1.0 / len(z)] * len(z))
    np.testing.assert_allclose(cation.get_potential_energy(),
                               predict(model, params, z, r, total_charge=1.0)["energy"], rtol=0, atol=TIGHT)
    cation.info["charge"] = 0.0
    with pytest.warns(PhysNetInputWarning, match=r"initial charges sum to 1 e but info\['charge'\] is 0 e"):
        energy = cation.get_potential_energy()
    np.testing.assert_allclose(energy, predict(model, params, z, r)["energy"], rtol=0, atol=TIGHT)


def test_info_charge_is_one_real_number_of_any_numeric_type_or_a_clear_error(calc, charged_model, molecules):
    """info['charge'] = np.array(1.0) ended in TypeError: unhashable type (the calculator's cache key), a
    2-element array in numpy's "truth value of an array is ambiguous", True counted as +1 e, and None was called
    total_charge. A 0-d array or NumPy scalar is the number it holds; None is no entry; anything else is named."""
    from physnetjax.errors import PhysNetInputError

    model, params = charged_model
    z, r = molecules["ethanol"]
    cation = predict(model, params, z, r, total_charge=1.0)["energy"]
    atoms = ase.Atoms(numbers=z, positions=r, calculator=calc)
    for charge in (np.array(1.0), np.float32(1.0), np.int64(1)):
        atoms.info["charge"] = charge
        np.testing.assert_allclose(atoms.get_potential_energy(), cation, rtol=0, atol=TIGHT)
    atoms.info["charge"] = None
    np.testing.assert_allclose(atoms.get_potential_energy(), predict(model, params, z, r)["energy"], rtol=0,
                               atol=TIGHT)
    for charge in (np.array([1.0, 2.0]), np.array([1.0]), [1.0], True, "1"):
        atoms.info["charge"] = charge
        with pytest.raises(PhysNetInputError, match=r"^info\['charge'\] must be a real number in e \(the total "
                                                    r"charge\), received "):
            atoms.get_potential_energy()


def test_a_total_charge_set_after_construction_is_used_and_unknown_settings_are_refused(charged_model, molecules):
    """calc.set(total_charge=1) reset the results but recomputed at Q = 0 (it only reached ASE's parameters);
    calc.total_charge = 1 after a call returned the cached Q = 0 result; a misspelt totalcharge=1 was stored and
    ignored; total_charge beside a different info['charge'] dropped the latter without a word."""
    model, params = charged_model
    z, r = molecules["ethanol"]
    calc = PhysNetCalculator(model, params, dtype="float64")
    atoms = ase.Atoms(numbers=z, positions=r, calculator=calc)
    expected = {q: predict(model, params, z, r, total_charge=q)["energy"] for q in (0.0, 1.0, -1.0)}
    np.testing.assert_allclose(atoms.get_potential_energy(), expected[0.0], rtol=0, atol=TIGHT)
    calc.set(total_charge=1.0)
    np.testing.assert_allclose(atoms.get_potential_energy(), expected[1.0], rtol=0, atol=TIGHT)
    np.testing.assert_allclose(atoms.get_charges().sum(), 1.0, atol=1e-9)
    calc.total_charge = -1.0
    np.testing.assert_allclose(atoms.get_potential_energy(), expected[-1.0], rtol=0, atol=TIGHT)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) totalcharge: its settings are model"):
        PhysNetCalculator(model, params, totalcharge=1.0)
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) charge: the only one is total_charge"):
        calc.set(charge=1.0)
    for charge in ("x", float("nan"), [1.0], True):  # main: stored, and refused at the first calculation (or never)
        with pytest.raises(PhysNetInputError, match=r"total_charge must be a finite number in e \(or None: the atoms' "
                                                    rf"own\), received {re.escape(repr(charge))}"):
            PhysNetCalculator(model, params, total_charge=charge)
    with pytest.raises(ValueError, match=r"atom_bucket must be an integer >= 1 \(a padding multiple\), received 0"):
        PhysNetCalculator(model, params, atom_bucket=0)  # main: "multiple must be >= 1" at the first calculation
    with pytest.raises(ValueError, match=r"dtype must be float32 or float64, received 'fp32'"):
        PhysNetCalculator(model, params, dtype="fp32")  # main: numpy's "data type 'fp32' not understood"
    atoms.info["charge"] = 1.0
    with pytest.warns(PhysNetInputWarning, match=r"info\['charge'\] is 1 e but total_charge is -1 e; total_charge is "
                                                 r"used"):
        np.testing.assert_allclose(atoms.get_potential_energy(), expected[-1.0], rtol=0, atol=TIGHT)


def test_a_total_charge_for_a_model_without_charges_warns():
    """The shipped ethanol model has no charges: a cation gets the neutral energy. predict and the calculator
    returned it without a word; now they say the charge has no effect (and stay silent for Q = 0)."""
    from physnetjax import load_checkpoint
    from physnetjax.pretrained import example_geometry_path, example_model_path

    model, params = load_checkpoint(example_model_path())
    atoms = ase.io.read(example_geometry_path())
    message = (r"total charge 1 e given to a model without charges \(charges=False\): its energy and forces do not "
               "depend")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        neutral = predict(model, params, atoms.numbers, atoms.positions)["energy"]
        atoms.calc = PhysNetCalculator(model, params)
        neutral_calculated = atoms.get_potential_energy()
    with pytest.warns(PhysNetInputWarning, match=message):
        assert predict(model, params, atoms.numbers, atoms.positions, total_charge=1.0)["energy"] == neutral
    atoms.info["charge"] = 1
    with pytest.warns(PhysNetInputWarning, match=message):
        assert atoms.get_potential_energy() == neutral_calculated


def test_changing_atoms_between_calls(calc, direct, molecules):
    """Moving atoms, changing the atom count and the element list each give the model's answer."""
    rng = np.random.default_rng(0)
    for name in ("ethanol", "methanol", "co2", "base_a", "ethanol"):
        z, r = molecules[name]
        atoms = ase.Atoms(numbers=z, positions=r, calculator=calc)
        assert_matches_model(atoms, direct)
        atoms.positions += rng.normal(scale=0.05, size=r.shape)
        assert_matches_model(atoms, direct)
    z, r = molecules["ethanol"]
    atoms = ase.Atoms(numbers=z, positions=r, calculator=calc)
    atoms.get_potential_energy()
    del atoms[[5, 6]]
    assert_matches_model(atoms, direct)


def test_compiled_shapes_are_reused(charged_model, molecules):
    """An MD-like sequence of 20 displaced geometries and a smaller molecule compile at most once
    (calculators of one model share compilations, so count the increase)."""
    from physnetjax.predict import jitted_apply

    calc = PhysNetCalculator(*charged_model, dtype="float64")
    compiled = jitted_apply(calc._network)
    compiled_before = compiled._cache_size()
    z, r = molecules["ethanol"]
    atoms = ase.Atoms(numbers=z, positions=r, calculator=calc)
    rng = np.random.default_rng(1)
    for _ in range(20):
        atoms.positions = r + rng.normal(scale=0.03, size=r.shape)
        atoms.get_forces()
    zm, rm = molecules["methanol"]
    ase.Atoms(numbers=zm, positions=rm, calculator=calc).get_forces()
    assert len(calc.compiled_shapes) == 1
    assert compiled._cache_size() - compiled_before <= 1


def test_a_larger_molecule_after_a_smaller_one_gets_a_shape_with_room_for_its_atoms(charged_model, direct,
                                                                                    molecules):
    """Ethanol (9 atoms, padded to 16 with atom_bucket 8) and then two ethanols 30 Å apart (18 atoms): the first
    shape has edge room to spare but too few atom slots, so the second compiles one of 24 atoms and gives the
    model's answer."""
    calc = PhysNetCalculator(*charged_model, dtype="float64", atom_bucket=8, edge_bucket=512)
    z, r = molecules["ethanol"]
    assert_matches_model(ase.Atoms(numbers=z, positions=r, calculator=calc), direct)
    pair = ase.Atoms(numbers=np.concatenate([z, z]), positions=np.concatenate([r, r + [30.0, 0.0, 0.0]]),
                     calculator=calc)
    assert_matches_model(pair, direct)
    assert sorted(shape[0] for shape in calc.compiled_shapes) == [16, 24]


def test_the_model_comes_from_a_checkpoint_or_from_model_and_params_not_both(charged_model, tmp_path):
    """ASE's own settings (directory, label) reach the Calculator; a checkpoint beside (model, params), or neither,
    is refused."""
    from physnetjax.checkpoint import save_checkpoint

    model, params = charged_model
    path = save_checkpoint(tmp_path / "ckpt", model, params)
    calc = PhysNetCalculator(checkpoint=str(path), directory=str(tmp_path / "calc"), label="run")
    assert calc.directory == str(tmp_path / "calc") and calc.label.endswith("run")
    with pytest.raises(ValueError, match=r"give either checkpoint or \(model, params\), not both"):
        PhysNetCalculator(model, params, checkpoint=str(path))
    with pytest.raises(ValueError, match=r"give either checkpoint or \(model, params\), not both"):
        PhysNetCalculator(model, checkpoint=str(path))
    with pytest.raises(ValueError, match=r"PhysNetCalculator needs \(model, params\) or checkpoint=PATH"):
        PhysNetCalculator(model)


def test_a_compiled_shape_is_reused_when_it_fits_and_is_at_most_twice_the_need(charged_model):
    """The calculator's padded shapes (atoms, edges, pairs, periodic), rule by rule: a structure takes the smallest
    compiled shape with room for its atoms, edges and pairs, of its periodicity and with a pair list exactly when it
    has one, and at most twice its bucketed need in atoms and in edges; else a new bucketed shape is compiled."""
    def fresh():
        return PhysNetCalculator(*charged_model, atom_bucket=16, edge_bucket=256)

    calc = fresh()
    molecule = calc._padded_shape(9, 100, None, False)
    assert molecule == (16, 256, None, False)
    assert calc._padded_shape(16, 256, None, False) == molecule  # exactly full
    assert calc._padded_shape(9, 100, None, True) == (16, 256, None, True)  # periodic: a shape of its own
    assert calc._padded_shape(9, 100, 10, False) == (16, 256, 256, False)  # a pair list: a shape of its own
    assert calc._padded_shape(9, 100, 256, False) == (16, 256, 256, False)  # its pairs exactly full
    assert calc._padded_shape(9, 100, 257, False) == (16, 256, 512, False)  # too many pairs
    assert calc._padded_shape(17, 100, None, False) == (32, 256, None, False)  # too many atoms
    assert calc._padded_shape(9, 257, None, False) == (16, 512, None, False)  # too many edges
    assert calc._padded_shape(9, 100, None, False) == molecule  # the smallest that fits
    assert len(calc.compiled_shapes) == 6
    for compiled, need, reused in (((32, 256), (9, 100), True), ((48, 256), (9, 100), False),
                                   ((16, 512), (9, 100), True), ((16, 768), (9, 100), False)):
        calc = fresh()
        assert calc._padded_shape(*compiled, None, False) == (*compiled, None, False)
        expected = (*compiled, None, False) if reused else (16, 256, None, False)
        assert calc._padded_shape(*need, None, False) == expected, (compiled, need)


def test_float32_close_to_float64(charged_model, molecules):
    model, params = charged_model
    z, r = molecules["ethanol"]
    e64 = ase.Atoms(numbers=z, positions=r, calculator=PhysNetCalculator(model, params, dtype="float64"))
    e32 = ase.Atoms(numbers=z, positions=r, calculator=PhysNetCalculator(model, params, dtype="float32"))
    # float32 relative precision 6e-8, amplified by sums over ~100 terms of O(1) eV.
    np.testing.assert_allclose(e32.get_potential_energy(), e64.get_potential_energy(), rtol=1e-5)
    np.testing.assert_allclose(e32.get_forces(), e64.get_forces(), atol=1e-4 * np.abs(e64.get_forces()).max())


def test_a_molecule_far_from_the_origin_loses_no_float32_precision(charged_model, molecules):
    """float32 coordinates 1000 Å from the origin resolve ~6e-5 Å: on main the forces of a molecule there were off by
    ~1e-3 eV/Å (0.02 at 5000 Å). Isolated molecules are now evaluated about their centroid; the dipole stays the
    one about the coordinate origin, which for a cation moves with it by Q·shift."""
    model, params = charged_model
    z, r = molecules["ethanol"]
    shift = np.array([3000.0, -2000.0, 1000.0])
    reference = predict(model, params, z, r, total_charge=1.0, dtype="float64")
    far = predict(model, params, z, r + shift, total_charge=1.0, dtype="float32")
    scale = np.abs(reference["forces"]).max()
    # float32 at the origin (test_float32_close_to_float64): 1e-4 of the largest force, and the same far away.
    np.testing.assert_allclose(far["forces"], reference["forces"], atol=1e-4 * scale)
    np.testing.assert_allclose(far["energy"], reference["energy"], rtol=1e-5)
    far64 = predict(model, params, z, r + shift, total_charge=1.0, dtype="float64")
    np.testing.assert_allclose(far64["dipole"], reference["dipole"] + shift, rtol=1e-12)
    atoms = ase.Atoms(numbers=z, positions=r + shift, calculator=PhysNetCalculator(model, params, dtype="float32"))
    atoms.info["charge"] = 1.0
    np.testing.assert_allclose(atoms.get_forces(), reference["forces"], atol=1e-4 * scale)
    cation = ase.Atoms(numbers=z, positions=r + shift, calculator=PhysNetCalculator(model, params, dtype="float64"))
    cation.info["charge"] = 1.0
    np.testing.assert_allclose(cation.get_dipole_moment(), reference["dipole"] + shift, rtol=1e-12)


# DFT-like free-atom energies (eV) with digits float32 cannot hold: a 15-atom base lands near -12,300 eV.
DFT_LIKE_ELEMENT_ENERGIES = (0.0, -13.6178, 0.0, 0.0, 0.0, 0.0, -1029.8237, -1485.3011, -2042.6129, 0.0)


def test_float32_absolute_energies_are_not_rounded_to_the_float32_grid(charged_model, periodic_model, molecules):
    """Σ E0 is added on the host in float64: at -12,300 eV float32 steps are ~1e-3 eV, and adding E0 inside the
    float32 model (as before) put predict, predict_periodic and the calculator up to ~1e-3 eV off their float64
    energies. The network's own float32 error stays ~1e-5 eV (energies of a few eV, test above)."""
    e0 = DFT_LIKE_ELEMENT_ENERGIES
    z, r = molecules["base_a"]
    model, params = charged_model
    model = model.clone(element_energies=e0)
    e64 = predict(model, params, z, r, dtype="float64")["energy"]
    assert e64 < -12000
    assert abs(predict(model, params, z, r, dtype="float32")["energy"] - e64) < 1e-4
    atoms = ase.Atoms(numbers=z, positions=r, calculator=PhysNetCalculator(model, params, dtype="float32"))
    assert abs(atoms.get_potential_energy() - e64) < 1e-4
    model, params = periodic_model
    model = model.clone(element_energies=e0)
    cell = periodic_atoms(n=8)
    z, r, box = np.resize(z, 8), cell.positions, cell.cell.array
    p64 = predict_periodic(model, params, z, r, box, dtype="float64")["energy"]
    assert p64 < -4000
    assert abs(predict_periodic(model, params, z, r, box, dtype="float32")["energy"] - p64) < 1e-4


def periodic_atoms(seed=0, n=6, length=4.0):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    positions = (grid + 0.5) * length / 2 + rng.normal(scale=0.15, size=(n, 3))
    numbers = rng.choice([1, 6, 8], size=n)
    return ase.Atoms(numbers=numbers, positions=positions, cell=np.diag([length, length * 1.1, length * 0.95])
                     + 0.2 * np.triu(np.ones((3, 3)), 1), pbc=True)


def test_an_unwrapped_periodic_cell_far_from_the_origin_loses_no_float32_precision(periodic_model):
    """Periodic systems were evaluated where they sat: an unwrapped trajectory drifted 1000 Å lost ~100x float32
    accuracy in its forces (2.6e-3 eV/Å against 3e-5 wrapped). Each atom is now moved into the cell by a lattice
    vector before the cast; the dipole about the origin keeps Σ q_i t_i (float64)."""
    model, params = periodic_model
    atoms = periodic_atoms(n=8)
    far = atoms.copy()
    far.positions = far.positions + np.array([3000.0, -2000.0, 1000.0]) + far.cell.array[0] * 7
    reference = PhysNetCalculator(model, params, dtype="float64")
    ref_forces = reference.get_forces(atoms)
    ref_energy, ref_stress, ref_dipole = (reference.get_potential_energy(atoms), reference.get_stress(atoms),
                                          reference.get_dipole_moment(atoms))
    scale = np.abs(ref_forces).max()
    assert scale > 0.1
    float32 = PhysNetCalculator(model, params, dtype="float32")
    # float32 at the origin (test_float32_close_to_float64): 1e-4 of the largest force, and the same far away.
    np.testing.assert_allclose(float32.get_forces(far), ref_forces, atol=1e-4 * scale)
    np.testing.assert_allclose(float32.get_potential_energy(far), ref_energy, rtol=1e-5)
    np.testing.assert_allclose(float32.get_stress(far), ref_stress, atol=1e-4 * np.abs(ref_stress).max())
    far_predicted = predict_periodic(model, params, far.numbers, far.positions, far.cell.array, dtype="float32")
    np.testing.assert_allclose(far_predicted["forces"], ref_forces, atol=1e-4 * scale)
    far64 = PhysNetCalculator(model, params, dtype="float64")
    charges = far64.get_charges(far)
    np.testing.assert_allclose(far64.get_dipole_moment(far), charges @ far.positions, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(ref_dipole, charges @ atoms.positions, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("open_axes", [(2,), (1, 2)])
def test_a_slab_far_along_its_open_direction_loses_no_float32_precision(periodic_model, open_axes):
    """A slab's or wire's atoms were moved into the cell along its periodic directions only: 5000 Å up the open one,
    float32 forces were off by 5e-3 eV/Å (float64: agree). The slab as a whole now moves to its centroid too; the
    dipole about the origin keeps Σ q_i d_i."""
    model, params = periodic_model
    slab = periodic_atoms(5)
    slab.pbc = [k not in open_axes for k in range(3)]
    slab.center(vacuum=5.0, axis=open_axes)
    far = slab.copy()
    far.positions = far.positions + 5000.0 * np.eye(3)[list(open_axes)].sum(axis=0) + far.cell.array[0] * 3
    reference = PhysNetCalculator(model, params, dtype="float64")
    ref_forces, ref_energy = reference.get_forces(slab), reference.get_potential_energy(slab)
    scale = np.abs(ref_forces).max()
    assert scale > 0.1
    float32 = PhysNetCalculator(model, params, dtype="float32")
    # float32 at the origin (test_float32_close_to_float64): 1e-4 of the largest force, and the same far away.
    np.testing.assert_allclose(float32.get_forces(far), ref_forces, atol=1e-4 * scale)
    np.testing.assert_allclose(float32.get_potential_energy(far), ref_energy, rtol=1e-5)
    np.testing.assert_allclose(float32.get_stress(far), reference.get_stress(slab),
                               atol=1e-4 * np.abs(reference.get_stress(slab)).max())
    far64 = PhysNetCalculator(model, params, dtype="float64")
    np.testing.assert_allclose(far64.get_dipole_moment(far), far64.get_charges(far) @ far.positions, rtol=1e-12,
                               atol=1e-9)


def test_periodic_supercell_is_extensive(periodic_calc):
    """E(2×2×1 supercell) = 4 E(cell), forces replicate: images through the shifts are right."""
    calc = periodic_calc
    atoms = periodic_atoms()
    atoms.calc = calc
    e1, f1 = atoms.get_potential_energy(), atoms.get_forces()
    big = atoms.repeat((2, 2, 1))
    big.calc = calc
    np.testing.assert_allclose(big.get_potential_energy(), 4 * e1, rtol=1e-11)
    np.testing.assert_allclose(big.get_forces(), np.tile(f1, (4, 1)), atol=1e-10)
    np.testing.assert_allclose(big.get_stress(), atoms.get_stress(), atol=1e-11)
    assert np.abs(f1).max() > 0.1


def test_stress_matches_finite_difference_and_cell_changes(periodic_model, periodic_calc):
    """σ_ab = (1/V) ∂E/∂ε_ab by central differences (float64, δ = 1e-5: error ~δ² ≈ 1e-10 rel),
    evaluated on a strained cell after an unstrained one with the same calculator.
    """
    model, params = periodic_model
    calc = periodic_calc
    atoms = periodic_atoms(1)
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    volume = atoms.get_volume()
    delta = 1e-5
    numeric = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += sign * delta
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
                strained.calc = calc
                energies.append(strained.get_potential_energy())
            numeric[a, b] = (energies[0] - energies[1]) / (2 * delta) / volume
    numeric = 0.5 * (numeric + numeric.T)
    np.testing.assert_allclose(stress, numeric, atol=1e-8 * np.abs(numeric).max())
    assert np.abs(numeric).max() > 1e-3
    fresh = atoms.copy()
    fresh.set_cell(atoms.cell.array * 1.05, scale_atoms=True)
    fresh.calc = PhysNetCalculator(model, params, dtype="float64")
    atoms.set_cell(atoms.cell.array * 1.05, scale_atoms=True)
    np.testing.assert_allclose(atoms.get_potential_energy(), fresh.get_potential_energy(), rtol=TIGHT)


def test_pbc_change_is_not_served_stale(periodic_model, periodic_calc):
    model, params = periodic_model
    calc = periodic_calc
    atoms = periodic_atoms(2)
    atoms.calc = calc
    periodic_energy = atoms.get_potential_energy()
    atoms.pbc = False
    isolated = predict(model, params, atoms.numbers, atoms.positions)
    np.testing.assert_allclose(atoms.get_potential_energy(), isolated["energy"], rtol=TIGHT)
    assert abs(periodic_energy - isolated["energy"]) > 1e-3
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_a_float64_calculator_refuses_to_compute_after_x64_is_switched_off(charged_model, molecules):
    """With jax_enable_x64 switched off after it was made, a float64 calculator returned float32 results (6.8e-7 eV
    off) without a word."""
    z, r = molecules["ethanol"]
    atoms = ase.Atoms(numbers=z, positions=r, calculator=PhysNetCalculator(*charged_model, dtype="float64"))
    atoms.get_potential_energy()
    atoms.positions[0, 0] += 0.01
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match=r"dtype float64 needs 64-bit JAX: call jax.config.update"):
            atoms.get_potential_energy()
    finally:
        jax.config.update("jax_enable_x64", True)
    np.testing.assert_allclose(atoms.get_potential_energy(), predict(*charged_model, z, atoms.positions)["energy"],
                               rtol=0, atol=TIGHT)


def test_construction_errors(charged_model):
    model, params = charged_model
    with pytest.raises(ValueError, match="either checkpoint"):
        PhysNetCalculator(model, params, checkpoint="x")
    with pytest.raises(ValueError, match="float32 or float64"):
        PhysNetCalculator(model, params, dtype="float16")
    with pytest.raises(ValueError, match="needs"):
        PhysNetCalculator()
    for partial in (dict(model=model), dict(params=params)):
        with pytest.raises(ValueError, match=r"needs \(model, params\) or checkpoint=PATH"):
            PhysNetCalculator(**partial)


def test_periodic_needs_finite_coulomb_reach(calc, charged_model):
    """A charge model without a long-range cutoff on a periodic cell: the calculator, MD's potentials and cell
    potential said it in three ways (ValueErrors), none of them how to evaluate a molecule in a vacuum box."""
    from physnetjax.md.cell_potential import physnet_cell_potential
    from physnetjax.md.potential import physnet_potential

    message = (r"^a periodic system needs a finite reach of the pair terms; this model has charges without "
               r"coulomb_lr_cutoff, whose Coulomb sum over a crystal's images has no end: evaluate a molecule in a "
               r"vacuum box as an isolated one \(pbc=False\), or train a model with --coulomb-lr-cutoff for crystals$")
    atoms = periodic_atoms(3)
    atoms.calc = calc
    with pytest.raises(PhysNetInputError, match=message):
        atoms.get_potential_energy()
    model, params = charged_model
    with pytest.raises(PhysNetInputError, match=message):
        physnet_potential(model, params, atoms.numbers, cell=atoms.cell.array)
    with pytest.raises(PhysNetInputError, match=message):
        physnet_cell_potential(model, params, atoms.numbers, atoms.cell.array)


def test_a_calculator_survives_deepcopy_and_pickle(periodic_calc):
    """copy.deepcopy(atoms) with the calculator attached (one calculator per NEB image) and pickle (multiprocessing)
    raised "ctypes objects containing pointers cannot be pickled" (vesin's neighbor lists). The copy is a calculator
    of its own: a move of the copy's atoms gives the original calculator's answer there, the original keeps its."""
    import copy
    import pickle

    atoms = periodic_atoms(4)
    atoms.calc = periodic_calc
    energy = atoms.get_potential_energy()
    copied = copy.deepcopy(atoms)
    assert copied.calc is not periodic_calc and copied.calc.results["energy"] == energy
    copied.positions[0] += 0.05
    moved = copied.get_potential_energy()
    restored = pickle.loads(pickle.dumps(periodic_calc))
    np.testing.assert_allclose(restored.get_stress(copied), periodic_calc.get_stress(copied), rtol=0, atol=TIGHT)
    np.testing.assert_allclose(restored.get_potential_energy(copied), moved, rtol=TIGHT)
    assert atoms.get_potential_energy() == energy != moved


def test_a_slab_or_wire_has_the_stress_of_its_cell_with_vacuum(periodic_calc):
    """ASE's in-plane relaxation of a slab or 2D material (ase.build.graphene and mx2 give pbc T T F), e.g.
    FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1]), needs its stress; it raised "stress needs a fully periodic
    cell". σ = (1/V) ∂E/∂ε over the volume of the three cell vectors (EMT's definition) is the stress of the
    fully periodic cell with a vacuum wider than the reach (4.5 Å); without a vector across the vacuum, or for a
    molecule, there is no volume and the error says so."""
    for open_axes in ((2,), (1, 2)):
        slab = periodic_atoms(5)
        slab.pbc = [k not in open_axes for k in range(3)]
        slab.center(vacuum=5.0, axis=open_axes)
        slab.calc = periodic_calc
        bulk = slab.copy()
        bulk.pbc = True
        bulk.calc = periodic_calc
        stress = slab.get_stress()
        np.testing.assert_allclose(stress, bulk.get_stress(), rtol=0, atol=TIGHT)
        assert np.abs(stress[2]) > 1e-4
    slab.cell[2] = 0.0
    with pytest.raises(PropertyNotImplementedError, match=r"span none: give the open direction\(s\) y, z a vector"):
        slab.get_stress()
    slab.pbc = False
    with pytest.raises(PropertyNotImplementedError, match="an isolated molecule has none"):
        slab.get_stress()


def _messages(action):
    """The texts of the PhysNetInputWarnings ``action()`` gives, or of the error it raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            action()
        except PhysNetInputError as error:
            return [str(error)]
    return [str(w.message) for w in caught if issubclass(w.category, PhysNetInputWarning)]


@pytest.mark.parametrize("case", ["molecule", "overlap", "across_the_cell", "own_image"])
def test_close_contacts_from_the_neighbor_list_are_those_validation_finds(periodic_model, case):
    """The calculator takes close contacts from its own neighbor list instead of a second search: the warning or
    error names the same pairs (each once, periodic images included), in the same order, at the same distances."""
    rng = np.random.default_rng(3)
    positions = rng.uniform(0.0, 4.0, size=(8, 3))
    positions[1] = positions[0] + [0.31, 0.0, 0.0]
    positions[5] = positions[6] + [0.0, 0.22, 0.1]
    positions[3] = positions[2] + [0.0, 0.0, 0.45]
    cell, pbc = np.diag([4.0, 4.4, 3.8]), True
    if case == "molecule":
        pbc = False
    elif case == "overlap":
        positions[7] = positions[4] + [0.05, 0.0, 0.0]
    elif case == "across_the_cell":
        positions[4] = [0.1, 2.0, 2.0]
        positions[7] = [3.75, 2.05, 2.0]
    atoms = ase.Atoms(numbers=[1, 1, 6, 8, 1, 1, 6, 1], positions=positions, cell=cell, pbc=pbc)
    if case == "own_image":  # one atom: every atom of a thin cell meets its images at one distance (a tie)
        atoms = ase.Atoms("O", positions=[[1.0, 2.0, 3.0]], cell=[[4.0, 0, 0], [0, 4.4, 0], [0.1, 0.2, 0.42]],
                          pbc=True)
    calc = PhysNetCalculator(*periodic_model, dtype="float64")
    expected = _messages(lambda: validate_structure(atoms.numbers, atoms.positions, 9, cell=atoms.cell.array,
                                                     pbc=atoms.pbc))
    if case != "overlap":  # a warning, which the calculator gives once per composition and says so
        expected = [f"{expected[0]}; structure 1 this PhysNetCalculator evaluated; later structures of "
                    f"{atoms.get_chemical_formula(mode='hill')} with close atoms are not reported again"]
    assert expected and _messages(lambda: calc.get_potential_energy(atoms)) == expected
    assert case != "own_image" or "(periodic image)" in expected[0]


def test_close_contacts_beyond_the_model_cutoff_are_still_found():
    """A model cutoff shorter than the close-contact distance: its neighbor list does not hold the contacts, so the
    calculator searches for them as validation does."""
    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=0.4,
                    max_atomic_number=9, n_res=1)
    atoms = ase.Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.45, 0.0, 0.0]])
    messages = _messages(lambda: PhysNetCalculator(model, init_params(model, 0)).get_potential_energy(atoms))
    assert len(messages) == 1 and "very close atoms: atoms 0-1 at 0.45 Å" in messages[0]


@pytest.mark.parametrize("cutoff", [0.4, 3.0])  # contacts searched for, and taken from the neighbor list
def test_close_contacts_are_reported_once_per_composition_but_overlaps_always_raise(cutoff):
    """An optimisation or NEB through a squeezed geometry: the first structure of a composition with close atoms
    warns (CloseContactWarning, naming the structure), later ones of it do not, another composition does; an overlap
    of the same composition still raises."""
    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=cutoff,
                    max_atomic_number=9, n_res=1)
    calc = PhysNetCalculator(model, init_params(model, 0))
    water = ase.Atoms("OH2", positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], calculator=calc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        water.get_potential_energy()
        for step, distance in enumerate((0.45, 0.4, 0.35)):
            water.positions[2] = water.positions[1] + [0.0, distance, 0.0]
            water.get_potential_energy()
        methane = ase.Atoms("CH4", positions=[[0, 0, 0], [1.09, 0, 0], [1.09, 0.3, 0], [0, 0, 1.09], [0, 1.09, 0]],
                            calculator=calc)
        methane.get_potential_energy()
    close = [str(w.message) for w in caught if issubclass(w.category, CloseContactWarning)]
    assert close == [
        "very close atoms: atoms 1-2 at 0.45 Å (below 0.5 Å, shorter than any bond); the model extrapolates there; "
        "structure 2 this PhysNetCalculator evaluated; later structures of H2O with close atoms are not reported again",
        "very close atoms: atoms 1-2 at 0.3 Å (below 0.5 Å, shorter than any bond); the model extrapolates there; "
        "structure 5 this PhysNetCalculator evaluated; later structures of CH4 with close atoms are not reported again",
    ]
    water.positions[2] = water.positions[1] + [0.0, 0.05, 0.0]
    with pytest.raises(PhysNetInputError, match="atoms overlap: atoms 1-2 at 0.05 Å"):
        water.get_potential_energy()


def test_warnings_name_the_users_line_not_the_library_line(periodic_model):
    """A warning found deep in physnetjax, reached through ASE, points at the user's call (``warnings.warn``'s
    location, which Python prints and filters by): here this file's line that asked for the energy."""
    atoms = ase.Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.45, 0.0, 0.0]],
                      calculator=PhysNetCalculator(*periodic_model, dtype="float64"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        atoms.get_potential_energy()
    [close] = [w for w in caught if issubclass(w.category, CloseContactWarning)]
    assert (close.filename, close.lineno) == (__file__, line)


def test_a_warning_passes_through_the_standard_library_to_the_users_line():
    """A warning issued as a ``with`` block of the library closes reaches the user's ``with`` through ``contextlib``'s
    frames, as it passes through ASE's; the frames of the interpreter's ``<frozen runpy>`` are passed alike."""
    library = {}
    source = ("import contextlib\nfrom physnetjax.errors import warn_caller\n\n@contextlib.contextmanager\n"
              "def block():\n    yield\n    warn_caller('closed')\n\ndef run(function):\n    function()\n")
    exec(compile(source, os.path.join(os.path.dirname(physnetjax.__file__), "block.py"), "exec"), library)
    frozen = {}
    exec(compile("def run(function):\n    function()\n", "<frozen runpy>", "exec"), frozen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with library["block"]():
            pass
        frozen["run"](lambda: library["run"](lambda: warn_caller("through runpy")))
    assert [(str(w.message), w.filename) for w in caught] == [("closed", __file__), ("through runpy", __file__)]


def test_a_warning_without_a_user_frame_names_the_library_line():
    """A stack of library and standard-library frames only (a thread started on a library function; a command line
    run as ``python -m``) keeps the line that issued the warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread = threading.Thread(target=check_distances, args=(np.array([[0.0, 0.0, 0.0], [0.45, 0.0, 0.0]]),))
        thread.start()
        thread.join()
    [close] = caught
    assert close.filename.endswith(os.path.join("physnetjax", "validation.py")) and close.category is CloseContactWarning


@pytest.mark.parametrize("three_body", [False, True])
def test_a_device_out_of_memory_names_the_sizes_and_the_remedy(monkeypatch, three_body):
    """XLA's RESOURCE_EXHAUSTED (a D3+ATM model on a 192-atom water box asked XLA:CPU for 186 GB) reached the user as
    a raw JaxRuntimeError from the calculator and predict; it is an OutOfMemoryError (a MemoryError and a
    PhysNetInputError) naming the batch's sizes, and for a batch of no fewer triangles than pairs the ATM term."""
    import importlib

    from physnetjax.errors import OutOfMemoryError

    predict_module = importlib.import_module("physnetjax.predict")  # the package's `predict` is the function

    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=3.0,
                    max_atomic_number=9, n_res=1, dispersion="d3bj", dispersion_cutoff=6.0,
                    dispersion_three_body=three_body)
    params = init_params(model, 0)
    atoms = ase.Atoms("CH4", positions=[[0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89],
                                        [-0.36, -0.51, -0.89]])

    def exhausted(*_):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 186090935300 bytes.")

    monkeypatch.setattr(predict_module, "jitted_apply", lambda *_: exhausted)
    for call in (lambda: PhysNetCalculator(model, params).get_potential_energy(atoms),
                 lambda: predict(model, params, atoms.numbers, atoms.positions)):
        with pytest.raises(OutOfMemoryError) as caught:
            call()
        message = str(caught.value)
        assert isinstance(caught.value, MemoryError) and message.startswith("out of memory on cpu")
        assert "atom slots" in message and "neighbor pairs (cutoff 3 Å)" in message
        assert ("D3 three-body triangles" in message) == three_body
        assert ("model.clone(dispersion_three_body=False)" in message) == three_body
        assert three_body or message.endswith("use one with more memory, or fewer atoms")
