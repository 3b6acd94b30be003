"""PhysNet(edge_chunk_size=k): the same model, parameters and results, in memory O(N + k).

Chunking only reorders a sum over edges (and recomputes each chunk in the backward
pass), so energies, forces, stress and charges must equal the unchunked model to
float64 rounding: 290 edge slots in chunks of ≤ 53 (6 chunks of 49, 4 padding edges)
and of ≤ 150 (2 chunks of 145, no padding).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import cast_params, load_molecule, perturbed_params

from physnetjax import PhysNet, init_params
from physnetjax.neighbors import apply_batch, batch_from_neighbors, batch_molecules, neighbor_list

CONFIG = dict(features=8, max_degree=2, num_iterations=3, num_basis_functions=8, cutoff=4.0,
              max_atomic_number=9, charges=True, zbl=True, n_res=1, coulomb_lr_cutoff=6.0)


@pytest.fixture(scope="module")
def params():
    return cast_params(perturbed_params(init_params(PhysNet(**CONFIG), 0), scale=0.2, seed=3), np.float64)


@pytest.fixture(scope="module")
def periodic_batch():
    """Two ethanols and a CO2 in an 8 Å cubic cell (float64)."""
    parts = [load_molecule(name) for name in ("ethanol", "ethanol", "co2")]
    offsets = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.5], [1.0, 4.5, 4.5]])
    z = np.concatenate([p[0] for p in parts])
    r = np.concatenate([p[1] - p[1].mean(axis=0) + o for p, o in zip(parts, offsets)])
    cell = np.eye(3) * 8.0
    nbrs = neighbor_list(CONFIG["cutoff"], skin=0.0, method="cell", cell=cell)[0](r)
    pairs = neighbor_list(CONFIG["coulomb_lr_cutoff"], skin=0.0, method="cell", cell=cell)[0](r)
    return batch_from_neighbors(z, r, nbrs, pair_nbrs=pairs, cell=cell)


def outputs(chunk, params, batch):
    model = PhysNet(**CONFIG, edge_chunk_size=chunk)
    return jax.jit(lambda p, b: apply_batch(model, p, b))(params, batch)


def test_same_parameters_with_and_without_chunks():
    plain = init_params(PhysNet(**CONFIG), 0)
    chunked = init_params(PhysNet(**CONFIG, edge_chunk_size=7), 0)
    assert jax.tree_util.tree_structure(plain) == jax.tree_util.tree_structure(chunked)
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(chunked)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("chunk", [53, pytest.param(150, marks=pytest.mark.slow)])
def test_periodic_results_equal_unchunked(params, periodic_batch, chunk):
    edges = int(np.sum(periodic_batch.edge_mask))
    assert periodic_batch.dst_idx.shape[0] == 290 and edges > chunk
    expected = outputs(None, params, periodic_batch)
    received = outputs(chunk, params, periodic_batch)
    assert float(jnp.max(jnp.abs(expected["forces"]))) > 0.1
    for key in ("energy", "forces", "stress", "charges", "dipoles"):
        np.testing.assert_allclose(received[key], expected[key], rtol=1e-12, atol=1e-12, err_msg=key)


def test_batched_molecules_equal_unchunked(params):
    molecules = [load_molecule(name) for name in ("ethanol", "methanol", "co2")]
    batch = batch_molecules([m[0] for m in molecules], [m[1] for m in molecules], CONFIG["cutoff"],
                            pair_cutoff=CONFIG["coulomb_lr_cutoff"], dtype=np.float64)
    expected = outputs(None, params, batch)
    received = outputs(13, params, batch)
    for key in ("energy", "forces", "charges"):
        np.testing.assert_allclose(received[key], expected[key], rtol=1e-12, atol=1e-12, err_msg=key)


@pytest.mark.slow
def test_chunks_bound_the_temporary_memory(params, periodic_batch):
    """XLA's buffer assignment: with chunks the temporaries no longer scale with the edge count."""
    def temporary_bytes(chunk):
        model = PhysNet(**CONFIG, edge_chunk_size=chunk)
        compiled = jax.jit(lambda p, b: apply_batch(model, p, b)).lower(params, periodic_batch).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temporary_bytes(64) < 0.5 * temporary_bytes(None)


def test_rejects_non_positive_chunk_size(params, periodic_batch):
    with pytest.raises(ValueError, match="edge_chunk_size"):
        outputs(0, params, periodic_batch)
