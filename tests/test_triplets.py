"""Host-side triplet lists (physnetjax.neighbors.triplets): every pair-of-pairs sharing a first atom, written into
one array after its size has been checked against the host's free memory.

Oracle: a plain double loop over the pair list. The memory check is exercised by replacing the host's free memory
with a small number, as tests/test_device_memory.py does for compiled programs.
"""

import ase
import numpy as np
import pytest

from physnetjax import PhysNet, device_memory, init_params
from physnetjax.calculator import PhysNetCalculator
from physnetjax.errors import OutOfMemoryError
from physnetjax.neighbors.triplets import BYTES_PER_TRIPLET, count_triplets, padded_triplets, pair_triplets, triplet_slots
from physnetjax.physics.dispersion import ATM_CHUNK_TRIANGLES


def _double_loop(dst, mask):
    return {(p, q) for p in range(len(dst)) for q in range(p + 1, len(dst))
            if mask[p] and mask[q] and dst[p] == dst[q]}


def test_pair_triplets_equal_a_double_loop_over_the_pairs():
    rng = np.random.default_rng(3)
    dst = rng.integers(0, 9, size=70)  # atoms with 0 to ~15 pairs: groups of many sizes, some of the same size
    mask = rng.random(70) < 0.8
    triplets = pair_triplets(dst, mask)
    expected = _double_loop(dst, mask)
    assert triplets.dtype == np.int32 and triplets.shape == (len(expected), 2) and len(expected) > 50
    assert {tuple(t) for t in triplets.tolist()} == expected
    vectors = rng.normal(size=(70, 3))
    padded, padded_mask = padded_triplets(dst, mask, vectors, np.inf, num_triplets=len(expected) + 4)
    assert {tuple(t) for t in padded[padded_mask].tolist()} == expected
    assert padded[~padded_mask].tolist() == [[69, 69]] * 4
    assert count_triplets(dst, mask, vectors, np.inf) == len(expected)
    assert pair_triplets(dst, np.zeros(70, bool)).shape == (0, 2)
    crowded = np.concatenate([dst, np.full(300, 4), dst])  # one atom of more pairs than CACHED_GROUP_SIZE
    crowded_mask = np.ones(len(crowded), bool)
    assert {tuple(t) for t in pair_triplets(crowded, crowded_mask).tolist()} == _double_loop(crowded, crowded_mask)


def test_long_lists_get_whole_chunks_of_the_atm_sum():
    """Up to one chunk, slots round to the bucket; beyond, to whole chunks, which the chunked ATM sum reads without
    a padded copy (test_dispersion.py::test_a_list_of_whole_chunks_is_summed_without_a_padded_copy)."""
    chunk = ATM_CHUNK_TRIANGLES
    assert [triplet_slots(0), triplet_slots(5), triplet_slots(100, 8), triplet_slots(chunk, 8)] == [1, 5, 104, chunk]
    assert triplet_slots(chunk + 1, 8) == triplet_slots(2 * chunk - 3) == 2 * chunk
    dst = np.repeat(np.arange(2), 513)  # 2 * 513 * 512 / 2 = 262656 pairs-of-pairs: just over two chunks
    triplets, mask = padded_triplets(dst, np.ones(len(dst), bool), np.ones((len(dst), 3)), np.inf)
    assert triplets.shape == (3 * chunk, 2) and int(mask.sum()) == 262656 > 2 * chunk


def test_a_triplet_list_larger_than_the_free_host_memory_is_refused_before_it_is_built(monkeypatch):
    """With the free memory (and the size below which nothing is checked) replaced by small numbers."""
    dst = np.repeat(np.arange(4), 6)  # 4 atoms of 6 pairs each: 4 * 15 pairs-of-pairs
    monkeypatch.setattr(device_memory, "host_available_bytes", lambda: pytest.fail("the free memory was read"))
    assert len(pair_triplets(dst, np.ones(24, bool))) == 60  # below HOST_CHECK_MIN_BYTES: not read (~75 µs)
    monkeypatch.setattr(device_memory, "HOST_CHECK_MIN_BYTES", 0)
    monkeypatch.setattr(device_memory, "host_available_bytes", lambda: 60 * BYTES_PER_TRIPLET - 1)
    monkeypatch.setattr(np, "full", lambda *args, **kwargs: pytest.fail("the list was allocated"))
    with pytest.raises(OutOfMemoryError) as caught:
        pair_triplets(dst, np.ones(24, bool))
    assert caught.value.needed_bytes == 540 and caught.value.available_bytes == 539
    message = str(caught.value)
    assert message.startswith("out of memory on the host building the D3 three-body (ATM) list of 60 pairs of "
                              "neighbor pairs sharing an atom (60 slots): it needs 5.4e-07 GB, 5.39e-07 GB are free")
    assert "use the model without it (model.clone(dispersion_three_body=False))" in message
    with pytest.raises(OutOfMemoryError, match=r"\(70 slots\): it needs 6.3e-07 GB.*cube of its cutoff \(7.5 Å\)"):
        padded_triplets(dst, np.ones(24, bool), np.ones((24, 3)), 7.5, num_triplets=70)
    monkeypatch.undo()
    assert len(pair_triplets(dst, np.ones(24, bool))) == 60


def test_the_calculator_names_the_triplet_list_the_host_cannot_hold(monkeypatch):
    model = PhysNet(features=5, max_degree=0, num_iterations=1, num_basis_functions=3, cutoff=3.0,
                    max_atomic_number=6, n_res=1, dispersion="d3bj", dispersion_cutoff=7.5,
                    dispersion_three_body=True)
    atoms = ase.Atoms("CH4", positions=[[0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89],
                                        [-0.36, -0.51, -0.89]])
    atoms.calc = PhysNetCalculator(model, init_params(model, 0))
    monkeypatch.setattr(device_memory, "host_available_bytes", lambda: 100)
    monkeypatch.setattr(device_memory, "HOST_CHECK_MIN_BYTES", 0)
    with pytest.raises(OutOfMemoryError, match="out of memory on the host building the D3 three-body .ATM. list "
                                               "of 30 pairs of neighbor pairs"):
        atoms.get_potential_energy()
    monkeypatch.undo()
    assert np.isfinite(atoms.get_potential_energy())
