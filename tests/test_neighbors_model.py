"""The model gives the same energy/forces whichever builder made the graph, and however it is batched."""

import logging
import pathlib
import re

import jax
import numpy as np
import pytest
from conftest import cast_params, perturbed_params

from physnetjax import PhysNet, init_params, predict
from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors import (
    CompileCounter,
    MoleculeBatcher,
    apply_batch,
    batch_from_neighbors,
    batch_molecules,
    batch_periodic,
    concatenate_padded,
    iterate_batches,
    model_pair_cutoff,
    neighbor_list,
)

DATA = pathlib.Path(__file__).parent / "data"
TOL = dict(rtol=0.0, atol=1e-10)


@pytest.fixture(scope="module")
def setup():
    """Tiny molecular model with charges and bare Coulomb (pair list = all pairs), float64 noisy params."""
    model = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=9, charges=True, zbl=True, n_res=1)
    params = cast_params(perturbed_params(init_params(model, 0), scale=0.2, seed=1), np.float64)
    apply = jax.jit(lambda p, b: apply_batch(model, p, b))
    return model, params, apply


@pytest.fixture(scope="module")
def dataset():
    """96 molecules: 24 ethanol + 24 CO2 (GFN2 500 K) and 8 of each of 6 DNA bases/pairs, Z padded to 30."""
    return dict(np.load(DATA / "neighbors_mixed.npz"))


@pytest.fixture(scope="module")
def alone(setup, dataset):
    """Energy (M,) and forces (M, 30, 3) of every molecule alone, all in one padded shape."""
    model, params, apply = setup
    energies, forces = [], np.zeros(dataset["R"].shape)
    for k, (z, r) in enumerate(zip(dataset["Z"], dataset["R"])):
        real = z > 0
        batch = batch_molecules([z[real]], [r[real]], model.cutoff, pair_cutoff=None,
                                num_atoms=30, num_edges=870, num_pairs=870, dtype=np.float64)
        out = apply(params, batch)
        energies.append(float(out["energy"][0]))
        forces[k, real] = np.asarray(out["forces"][: real.sum()])
    return np.asarray(energies), forces


def test_alone_energies_are_nonzero_in_every_term(setup, dataset):
    model, params, apply = setup
    z, r = dataset["Z"][0], dataset["R"][0]
    real = z > 0
    batch = batch_molecules([z[real]], [r[real]], model.cutoff, pair_cutoff=None,
                            num_atoms=30, num_edges=870, num_pairs=870, dtype=np.float64)
    out = apply(params, batch)
    for key in ("nn_energy", "electrostatics", "repulsion"):
        assert abs(float(out[key][0])) > 1e-6, key


def test_in_jit_builders_match_host_builder(setup, molecules):
    """Dense and cell-list graphs (with skin edges) give the host graph's E and F to 1e-10 (f64)."""
    model, params, apply = setup
    z, r = molecules["base_a"]
    allocate_pairs, _ = neighbor_list(None, method="dense")
    pairs = allocate_pairs(r)
    moved = r + 0.05 * np.random.default_rng(0).normal(size=r.shape)
    for method in ("dense", "cell"):
        allocate, update = neighbor_list(model.cutoff, skin=0.4, method=method)
        nbrs = allocate(r)

        def host(positions):
            """Host graph padded to the in-jit sizes (one compiled shape for both)."""
            return batch_molecules([z], [positions], model.cutoff, pair_cutoff=model_pair_cutoff(model),
                                   num_edges=nbrs.capacity, num_pairs=pairs.capacity, dtype=np.float64)

        for positions in (r, moved):
            nbrs = update(positions, nbrs)
            assert not bool(nbrs.did_overflow)
            out = apply(params, batch_from_neighbors(z, positions, nbrs, pairs))
            ref = apply(params, host(positions))
            np.testing.assert_allclose(out["energy"], ref["energy"], **TOL)
            np.testing.assert_allclose(out["forces"], ref["forces"], **TOL)


def test_epoch_compiles_at_most_four_shapes_and_matches_alone(setup, dataset, alone):
    """One shuffled epoch over mixed sizes (3 … 30 atoms): ≤ 4 compilations, every molecule as if alone."""
    model, params, _ = setup
    energies, forces = alone
    step = CompileCounter(lambda p, b: apply_batch(model, p, b))
    batcher = MoleculeBatcher(dataset, 8, model.cutoff, model_pair_cutoff(model), dtype=np.float64)
    assert len(batcher.levels) <= 4
    seen = set()
    batches = list(batcher.epoch(np.random.default_rng(7)))
    largest = np.argsort(batcher.counts[:, 0])[-8:]
    batches.append((batcher.batch(largest), largest))  # the worst-case level
    batches.append((batcher.batch(largest[:3]), largest[:3]))  # a partial batch (empty slots)
    for batch, indices in batches:
        seen.add(batch.shape_key)
        out = step(params, batch)
        b = len(indices)
        np.testing.assert_allclose(out["energy"][:b], energies[indices], **TOL)
        np.testing.assert_allclose(out["energy"][b:], 0.0, atol=0.0)
        np.testing.assert_allclose(out["forces"], batcher.atom_labels(forces, indices, batch), **TOL)
        np.testing.assert_array_equal(batcher.molecule_labels(dataset["E"], indices, batch)[:b],
                                      dataset["E"][indices])
    assert len(seen) >= 2, "the epoch should exercise several levels"
    assert step.count == len(seen) <= 4
    assert seen <= set(batcher.shapes)
    again = {b.shape_key for b, _ in iterate_batches(dataset, 8, model.cutoff, model_pair_cutoff(model),
                                                     np.random.default_rng(8), dtype=np.float64)}
    assert again <= set(batcher.shapes)


def test_batches_with_triplets_take_the_triplet_size_of_their_level(dataset):
    """With three_body_cutoff every level has a triplet count and every batch is padded to its level's (T in the
    shape key): batches of one level share one compilation, as without triplets (a batch padded only to its own
    triplet count would be a new shape, and a compilation, per batch)."""
    batcher = MoleculeBatcher(dataset, 8, 4.0, 6.0, three_body_cutoff=5.0, dtype=np.float64)
    assert all(len(level) == 4 for level in batcher.levels)
    keys = [batch.shape_key for batch, _ in batcher.epoch(np.random.default_rng(3))]
    assert len(keys) == 12 and all(len(key) == 6 for key in keys)
    assert set(keys) <= set(batcher.shapes)


def test_nan_positions_of_padding_slots_are_ignored_and_of_real_atoms_refused(dataset):
    """Padding slots (Z = 0) carry no atom, so NaN there (how some writers pad) is accepted and never reaches a
    batch; NaN at a real atom is refused naming its molecule."""
    padded = dict(dataset, R=np.where(dataset["Z"][..., None] > 0, dataset["R"], np.nan))
    batcher = MoleculeBatcher(padded, 8, 4.0, 6.0, dtype=np.float64)
    batch, indices = next(batcher.epoch(np.random.default_rng(0)))
    assert np.isfinite(batch.positions).all() and len(indices) == 8
    broken = dict(dataset, R=dataset["R"].copy())
    broken["R"][5, 0, 1] = np.nan
    with pytest.raises(ValueError, match=r"R has NaN/Inf for real atoms of molecules \[5\]"):
        MoleculeBatcher(broken, 8, 4.0, 6.0, dtype=np.float64)


def test_a_loaded_dataset_is_batched_as_its_arrays():
    """The README's MoleculeBatcher(data, ...) with the library's own Dataset failed with "TypeError: argument of
    type 'Dataset' is not iterable"; anything else is refused naming what it takes."""
    from physnetjax.data import bundled_dataset_path, load_dataset

    data = load_dataset(bundled_dataset_path()).subset(slice(0, 12))
    from_dataset = MoleculeBatcher(data, 4, 4.0, 6.0, dtype=np.float64)
    from_arrays = MoleculeBatcher({"Z": data.Z, "R": data.R, "Q": data.Q}, 4, 4.0, 6.0, dtype=np.float64)
    indices = np.arange(5, 9)
    for a, b in zip(jax.tree.leaves(from_dataset.batch(indices)), jax.tree.leaves(from_arrays.batch(indices))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=r"^data must be a physnetjax.data.Dataset \(load_dataset\) or a mapping of "
                                        r"arrays Z, R\[, Q\], received list$"):
        MoleculeBatcher([data.Z, data.R], 4, 4.0)


def test_batcher_rejects_bad_data():
    z = np.array([[1, 1, 0], [0, 0, 0]])
    r = np.zeros((2, 3, 3))
    r[:, 1, 0] = 0.74
    with pytest.raises(ValueError, match="without atoms"):
        MoleculeBatcher({"Z": z, "R": r}, 2, 4.0)
    with pytest.raises(ValueError, match="and R "):
        MoleculeBatcher({"Z": z[:1], "R": r[:1, :2]}, 2, 4.0)
    with pytest.raises(ValueError, match="num_shapes"):
        MoleculeBatcher({"Z": z[:1], "R": r[:1]}, 2, 4.0, num_shapes=5)
    one = {"Z": z[:1], "R": r[:1]}
    for kwargs, match in [(dict(batch_size=0), "batch_size must be >= 1, received 0"),
                          (dict(cutoff=0.0), "cutoff must be > 0 Å, received 0.0"),
                          (dict(cutoff=float("nan")), "cutoff must be > 0 Å, received nan"),
                          (dict(three_body_cutoff=-1.0), "three_body_cutoff must be > 0 Å"),
                          (dict(batch_size=2, drop_last=True), "drop_last=True with 1 molecules < batch_size=2")]:
        with pytest.raises(ValueError, match=re.escape(match)):
            MoleculeBatcher(one, **{"batch_size": 1, "cutoff": 4.0, **kwargs})
    with pytest.raises(ValueError, match="a batch takes 1 to 1 molecules, received 2"):
        MoleculeBatcher({"Z": np.array([[1, 1], [1, 1]]), "R": r[:, :2]}, 1, 4.0).batch([0, 1])


def test_concatenate_padded_pads_atom_arrays_and_drops_keys_missing_somewhere(caplog):
    rng = np.random.default_rng(0)
    small = {"Z": np.array([[8, 1, 1]]), "R": rng.normal(size=(1, 3, 3)), "F": rng.normal(size=(1, 3, 3)),
             "E": np.array([-1.0]), "D": np.ones((1, 3))}
    large = {"Z": np.array([[6, 1, 1, 1, 1], [1, 1, 0, 0, 0]]), "R": rng.normal(size=(2, 5, 3)),
             "F": rng.normal(size=(2, 5, 3)), "E": np.array([-2.0, -3.0])}
    with caplog.at_level(logging.INFO, logger="physnetjax.neighbors.bucketing"):
        joined = concatenate_padded([small, large])
    assert "dropping keys not present in every dataset: ['D']" in caplog.text
    assert sorted(joined) == ["E", "F", "R", "Z"]
    assert joined["Z"].tolist() == [[8, 1, 1, 0, 0], [6, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert joined["E"].tolist() == [-1.0, -2.0, -3.0]
    for key in ("R", "F"):
        assert joined[key].shape == (3, 5, 3)
        np.testing.assert_array_equal(joined[key][0, :3], small[key][0])
        np.testing.assert_array_equal(joined[key][0, 3:], 0.0)
        np.testing.assert_array_equal(joined[key][1:], large[key])
    with pytest.raises(ValueError, match="at least one dataset"):
        concatenate_padded([])


def test_pair_terms_reaching_past_the_cutoff_get_their_own_list(dataset):
    """Coulomb to 6 Å, message passing to 3 Å: the batch carries a pair list of every pair closer than 6 Å, and
    every molecule's energy and forces are those of ``predict`` on it alone (float64). On the message-passing
    edges alone, the Coulomb pairs between 3 and 6 Å (most of a base pair's) would be missing."""
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=3.0,
                    max_atomic_number=9, charges=True, coulomb_lr_cutoff=6.0, zbl=False)
    params = cast_params(perturbed_params(init_params(model, 0), scale=0.2, seed=2), np.float64)
    chosen = np.array([60, 70, 61])  # a base (15 atoms), a base pair (30), another base
    batcher = MoleculeBatcher({key: dataset[key][chosen] for key in ("Z", "R")}, 3, model.cutoff,
                              model_pair_cutoff(model), dtype=np.float64)
    (batch, indices), = list(batcher.epoch())
    pair_mask = np.asarray(batch.pair_mask)
    assert batch.pair_dst is not None and pair_mask.sum() > np.asarray(batch.edge_mask).sum()
    positions = np.asarray(batch.positions)
    lengths = np.linalg.norm(positions[np.asarray(batch.pair_src)] - positions[np.asarray(batch.pair_dst)], axis=-1)
    assert 5.0 < lengths[pair_mask].max() < 6.0
    out = jax.jit(lambda p, b: apply_batch(model, p, b))(params, batch)
    offset = 0
    for slot, k in enumerate(chosen[indices]):
        real = dataset["Z"][k] > 0
        alone = predict(model, params, dataset["Z"][k][real], dataset["R"][k][real], dtype="float64")
        count = int(real.sum())
        np.testing.assert_allclose(float(out["energy"][slot]), alone["energy"], **TOL)
        np.testing.assert_allclose(np.asarray(out["forces"])[offset:offset + count], alone["forces"], **TOL)
        offset += count


@pytest.mark.parametrize("edit, message", [
    (lambda z, r: (z, np.where(np.arange(len(z))[:, None] == 3, np.nan, r)),
     r"molecule 1: positions contain NaN or Inf at atom\(s\) 3"),
    (lambda z, r: (np.r_[0, z[1:]], r), r"molecule 1: atomic number\(s\) 0 at atom\(s\) 0 are not elements "
                                        r"\(Z = 1\.\.118\)"),
    (lambda z, r: (np.r_[-1, z[1:]], r), r"molecule 1: atomic number\(s\) -1 at atom\(s\) 0 are not elements"),
    (lambda z, r: (z + 0.7, r), r"molecule 1: atomic_numbers must be integers"),
    (lambda z, r: (np.r_[z, z[-1]], np.r_[r, r[-1:] + [0.01, 0.0, 0.0]]), r"molecule 1: atoms overlap: atoms 8-9 at 0\.01 Å"),
    (lambda z, r: (z, r[:, :2]), r"molecule 1: positions must have shape \(n, 3\) = \(9, 3\) to match "
                                 r"atomic_numbers, received shape \(9, 2\)"),
])
def test_hand_built_batches_refuse_what_predict_refuses(molecules, edit, message):
    """batch_molecules + apply_batch (the README's batch API) returned finite wrong energies: a NaN position dropped
    its atom from the neighbor list (force 0), Z = 0 or -1 gave a plausible energy, Z = 6.7 was truncated to 6, a
    duplicated atom added ~50 eV; a (9, 2) position array was reported as shape (6, 3)."""
    z, r = molecules["ethanol"]
    bad_z, bad_r = edit(np.asarray(z), np.asarray(r, np.float64))
    with pytest.raises(PhysNetInputError, match=message):
        batch_molecules([z, bad_z], [r, bad_r], 4.0)
    cell = np.eye(3) * 20.0
    with pytest.raises(PhysNetInputError, match=message.replace("molecule 1", "structure 1")):
        batch_periodic([z, bad_z], [r, bad_r], [cell, cell], 4.0)


@pytest.mark.parametrize("edit, charge, message", [
    (lambda z, r: (z, r + [2e4, 0.0, 0.0]), 0.0, r"molecule 1: positions beyond ±10000 Å at atom\(s\) 0"),
    (lambda z, r: (np.r_[z, z[-1]], np.r_[r, r[-1:] + [0.01, 0.0, 0.0]]), 0.0,
     r"molecule 1: atoms overlap: atoms 8-9 at 0\.01 Å"),
    (lambda z, r: (np.r_[119, z[1:]], r), 0.0, r"molecule 1: atomic number\(s\) 119 at atom\(s\) 0 are not elements"),
    (lambda z, r: (z, r), float("nan"), r"molecule 1: total_charge must be finite, received nan"),
    (lambda z, r: (z, r), 27.0, r"molecule 1: total_charge 27 e is larger than the number of electrons of the "
                                r"neutral structure \(ΣZ = 26\)"),
    (lambda z, r: (z, r), -30.0, r"molecule 1: total_charge -30 e would add more electrons than the neutral "
                                 r"structure has \(ΣZ = 26\)"),
])
def test_a_batcher_refuses_the_molecules_batch_molecules_refuses(molecules, edit, charge, message):
    """MoleculeBatcher (the README's batches of a dataset) checked shapes, Z >= 0 and finite positions only: a
    molecule 10⁷ Å away (energy 4 eV off), two atoms at one spot (a finite energy), Z = 119 (NaN under jit), a NaN
    or impossible total charge (NaN, or 30 520 eV) all passed. batch_molecules checked no total charge either."""
    z, r = molecules["ethanol"]
    bad_z, bad_r = edit(np.asarray(z), np.asarray(r, np.float64))
    n_max = max(len(z), len(bad_z))
    data = {"Z": np.zeros((2, n_max), int), "R": np.zeros((2, n_max, 3)), "Q": np.array([0.0, charge])}
    data["Z"][0, :len(z)], data["R"][0, :len(z)] = z, r
    data["Z"][1, :len(bad_z)], data["R"][1, :len(bad_z)] = bad_z, bad_r
    with pytest.raises(PhysNetInputError, match=message):
        MoleculeBatcher(data, 2, 4.0)
    with pytest.raises(PhysNetInputError, match=message):
        batch_molecules([z, bad_z], [r, bad_r], 4.0, total_charges=[0.0, charge])
    cell = np.eye(3) * 20.0
    if "beyond ±10000" not in message:  # a periodic structure is wrapped into its cell: no coordinate is far
        with pytest.raises(PhysNetInputError, match=message.replace("molecule 1", "structure 1")):
            batch_periodic([z, bad_z], [r, bad_r], [cell, cell], 4.0, total_charges=[0.0, charge])


def test_batches_need_one_total_charge_per_structure(molecules):
    z, r = molecules["ethanol"]
    with pytest.raises(ValueError, match=r"total_charges must hold one charge per molecule \(2\), received shape "
                                         r"\(3,\)"):
        batch_molecules([z, z], [r, r], 4.0, total_charges=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"one charge per structure \(2\), received shape \(1,\)"):
        batch_periodic([z, z], [r, r], [np.eye(3) * 20.0] * 2, 4.0, total_charges=[0.0])


def test_apply_batch_outside_jit_refuses_elements_beyond_the_model(setup, molecules):
    """Z = 9 or 100 beyond a model's max_atomic_number returned NaN energies from apply_batch."""
    model, params, _ = setup
    z, r = molecules["ethanol"]
    batch = batch_molecules([np.r_[z[:-1], 10]], [r], model.cutoff, pair_cutoff=model_pair_cutoff(model))
    with pytest.raises(PhysNetInputError, match=r"atomic number\(s\) \[10\] beyond this model's range Z = 1\.\.9: use "
                                                r"a model trained with them"):
        apply_batch(model, params, batch)
