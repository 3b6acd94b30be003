"""Neighbor lists (host and in-jit) against a brute-force O(N²) all-images reference."""

import importlib
import itertools
import logging
import re

import numpy as np
import pytest

from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors import (
    NeighborListOverflowError,
    batch_molecules,
    batch_periodic,
    check_overflow,
    needs_update,
    neighbor_list,
    periodic_pairs,
    round_up,
)
from physnetjax.neighbors.neighbor_list import perpendicular_widths
from physnetjax.neighbors.periodic import lattice_translations

CUTOFF = 3.5


def brute_force_pairs(positions, cutoff, cell=None) -> set:
    """All (i, j, n_a, n_b, n_c) with |r_j − r_i + n·cell| < cutoff, i ≠ j or n ≠ 0.

    Every atom pair (i, j) against every image n with |n_a| ≤ ceil(cutoff / w_a) + 1, a
    superset of the images in reach (no cell list, no binning).
    """
    positions = np.asarray(positions, dtype=np.float64)
    if cell is None:
        images = [(0, 0, 0)]
    else:
        reach = [int(np.ceil(cutoff / w)) + 1 for w in perpendicular_widths(cell)]
        images = list(itertools.product(*[range(-k, k + 1) for k in reach]))
    found = set()
    n = len(positions)
    for image in images:
        shift = np.zeros(3) if cell is None else np.asarray(image, dtype=np.float64) @ cell
        distance = np.linalg.norm(positions[None, :, :] - positions[:, None, :] + shift, axis=-1)
        if image == (0, 0, 0):
            distance[np.arange(n), np.arange(n)] = np.inf
        found.update((int(i), int(j)) + tuple(image) for i, j in zip(*np.nonzero(distance < cutoff)))
    return found


def as_set(dst, src, mask=None, shifts=None, cell=None) -> set:
    """(dst, src, image) triples of a list; images recovered from the cartesian shifts."""
    dst, src = np.asarray(dst), np.asarray(src)
    mask = np.ones(dst.shape, dtype=bool) if mask is None else np.asarray(mask)
    if cell is None:
        return {(int(a), int(b), 0, 0, 0) for a, b in zip(dst[mask], src[mask])}
    images = np.asarray(shifts)[mask] @ np.linalg.inv(cell)
    assert np.allclose(images, np.rint(images), atol=1e-9), "shifts are not lattice vectors"
    images = np.rint(images).astype(int)
    return {(int(a), int(b)) + tuple(int(x) for x in n) for a, b, n in zip(dst[mask], src[mask], images)}


def float32_list_set(nbrs, cell) -> set:
    """:func:`as_set` of a float32 periodic list: its shifts are n · cell to float32 precision (checked to 1e-6
    in cell units), so they are rounded to the lattice vectors first."""
    mask = np.asarray(nbrs.mask)
    shifts = np.asarray(nbrs.shifts, np.float64)
    images = shifts[mask] @ np.linalg.inv(cell)
    assert np.allclose(images, np.rint(images), atol=1e-6)
    shifts[mask] = np.rint(images) @ cell
    return as_set(nbrs.dst_idx, nbrs.src_idx, mask, shifts, cell)


def water_box(repeats: int, seed: int = 0):
    """Water-like periodic box: one H2O (O–H 0.96 Å, 104.5°) per 3.1 Å cubic site, random orientation."""
    rng = np.random.default_rng(seed)
    spacing = 3.1
    angle = np.deg2rad(104.5)
    local = np.array([[0, 0, 0], [0.96, 0, 0], [0.96 * np.cos(angle), 0.96 * np.sin(angle), 0]])
    positions, numbers = [], []
    for site in itertools.product(range(repeats), repeat=3):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        positions.append(local @ q.T + spacing * np.asarray(site) + rng.uniform(-0.2, 0.2, 3))
        numbers += [8, 1, 1]
    return np.asarray(numbers), np.concatenate(positions), np.eye(3) * spacing * repeats


TRICLINIC = np.array([[6.0, 0.0, 0.0], [2.0, 5.5, 0.0], [1.0, 1.5, 5.0]])
SMALL = np.array([[3.0, 0.0, 0.0], [0.5, 3.2, 0.0], [0.3, 0.2, 2.9]])  # narrower than the cutoff


def systems():
    rng = np.random.default_rng(1)
    _, water, water_cell = water_box(3)
    return {
        "molecule": (rng.uniform(0, 7, (30, 3)), None),
        "water": (water, water_cell),
        "triclinic": (rng.uniform(-0.3, 1.3, (24, 3)) @ TRICLINIC, TRICLINIC),
        "small_cell": (rng.uniform(0, 1, (5, 3)) @ SMALL, SMALL),
    }


@pytest.fixture(scope="module")
def references():
    return {name: brute_force_pairs(r, CUTOFF, cell) for name, (r, cell) in systems().items()}


@pytest.mark.parametrize("name", ["molecule", "water", "triclinic", "small_cell"])
@pytest.mark.parametrize("method", ["dense", "cell"])
def test_in_jit_list_equals_brute_force(name, method, references):
    positions, cell = systems()[name]
    allocate, _ = neighbor_list(CUTOFF, skin=0.0, method=method, cell=cell)
    nbrs = allocate(positions)
    assert not bool(nbrs.did_overflow)
    got = as_set(nbrs.dst_idx, nbrs.src_idx, nbrs.mask, nbrs.shifts, cell)
    assert got == references[name]
    assert int(nbrs.mask.sum()) == len(references[name])  # no duplicates
    masked = ~np.asarray(nbrs.mask)
    assert np.all(np.asarray(nbrs.dst_idx)[masked] == len(positions) - 1)


@pytest.mark.parametrize("name", ["water", "triclinic", "small_cell"])
def test_host_periodic_list_equals_brute_force(name, references):
    positions, cell = systems()[name]
    dst, src, shifts = periodic_pairs(positions, cell, CUTOFF)
    assert len(dst) == len(references[name])
    assert as_set(dst, src, None, shifts, cell) == references[name]


def test_host_molecule_list_equals_brute_force(references):
    positions, _ = systems()["molecule"]
    batch = batch_molecules([np.ones(len(positions), int)], [positions], CUTOFF)
    assert as_set(batch.dst_idx, batch.src_idx, batch.edge_mask) == references["molecule"]


def two_molecules():
    """Atomic numbers and positions (Å) of two random molecules of 3 and 5 atoms."""
    rng = np.random.default_rng(3)
    return ([rng.integers(1, 10, size=n) for n in (3, 5)], [rng.uniform(0.0, 2.5, size=(n, 3)) for n in (3, 5)])


def test_host_batch_padding_follows_the_batch_conventions():
    """Padded slots of every kind, as physnetjax.neighbors.batch documents them: atoms (Z 0, mask False, in the
    last molecule slot, so the segments stay sorted), molecule slots (mask False, charge 0) and edges (pointing
    at the last atom slot, mask False); the real part is the unpadded batch."""
    z, r = two_molecules()
    charges = (-1.0, 2.0)
    exact = batch_molecules(z, r, CUTOFF, total_charges=charges, dtype=np.float64)
    padded = batch_molecules(z, r, CUTOFF, total_charges=charges, num_atoms=11, num_edges=exact.num_edges + 5,
                             num_molecules=4, dtype=np.float64)
    assert padded.shape_key == (11, exact.num_edges + 5, None, 4, False)
    assert padded.atom_mask.tolist() == [True] * 8 + [False] * 3
    assert padded.molecule_mask.tolist() == [True, True, False, False]
    assert padded.atom_segments.tolist() == [0] * 3 + [1] * 5 + [3] * 3
    assert padded.atomic_numbers.tolist() == np.concatenate(z).tolist() + [0] * 3
    assert padded.total_charges.tolist() == [-1.0, 2.0, 0.0, 0.0]
    np.testing.assert_array_equal(padded.positions[:8], np.concatenate(r))
    real = exact.num_edges
    assert padded.edge_mask.tolist() == [True] * real + [False] * 5
    assert padded.dst_idx[real:].tolist() == padded.src_idx[real:].tolist() == [10] * 5
    np.testing.assert_array_equal(padded.dst_idx[:real], exact.dst_idx)
    np.testing.assert_array_equal(padded.src_idx[:real], exact.src_idx)
    assert exact.atom_mask.all() and exact.molecule_mask.all() and exact.num_molecules == 2


def test_host_batch_edge_and_pair_lists_of_several_molecules_equal_brute_force():
    """Three molecules in one batch, edges within 1.5 Å and a separate pair list within 6 Å (a long-range Coulomb
    cutoff): each list is the brute-force pairs of each molecule, its atom indices offset by the atoms before it."""
    z, r = two_molecules()
    z, r = z + [np.array([8, 1, 1])], r + [np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])]
    batch = batch_molecules(z, r, 1.5, pair_cutoff=6.0, dtype=np.float64)
    offsets = np.cumsum([0] + [len(numbers) for numbers in z])
    for cutoff, listed in ((1.5, as_set(batch.dst_idx, batch.src_idx, batch.edge_mask)),
                           (6.0, as_set(batch.pair_dst, batch.pair_src, batch.pair_mask))):
        expected = {(i + offset, j + offset, 0, 0, 0) for positions, offset in zip(r, offsets)
                    for i, j, *_ in brute_force_pairs(positions, cutoff)}
        assert listed == expected and len(expected) > 2 * len(z)


def test_host_batches_refuse_sizes_too_small_and_mismatched_input():
    """A requested size below what the molecules need is refused, never truncated; so are mismatched inputs."""
    z, r = two_molecules()
    exact = batch_molecules(z, r, CUTOFF)
    for kwargs, match in [(dict(num_atoms=7), "num_atoms=7 is smaller than the 8 required; refusing to truncate"),
                          (dict(num_molecules=1), "num_molecules=1 is smaller than the 2 required"),
                          (dict(num_edges=exact.num_edges - 1), "num_edges=.* is smaller than the .* required")]:
        with pytest.raises(ValueError, match=match):
            batch_molecules(z, r, CUTOFF, **kwargs)
    with pytest.raises(ValueError, match="got 2 atomic-number arrays but 1 position arrays"):
        batch_molecules(z, r[:1], CUTOFF)
    with pytest.raises(ValueError, match="cannot build a batch of zero molecules"):
        batch_molecules([], [], CUTOFF)
    with pytest.raises(ValueError, match=r"molecule 1: positions must have shape \(n, 3\) = \(5, 3\) to match "
                                         r"atomic_numbers, received shape \(4, 3\)"):
        batch_molecules(z, [r[0], r[1][:4]], CUTOFF)
    assert [round_up(k, 8) for k in (1, 8, 9)] == [8, 8, 16]
    with pytest.raises(ValueError, match="multiple must be >= 1, received 0"):
        round_up(5, 0)


def test_small_cell_has_self_images_and_repeated_neighbours():
    positions, cell = systems()["small_cell"]
    assert perpendicular_widths(cell).min() < CUTOFF  # the case the test is about
    found = brute_force_pairs(positions, CUTOFF, cell)
    assert any(i == j for i, j, *_ in found)
    pairs = [(i, j) for i, j, *_ in found]
    assert len(set(pairs)) < len(pairs)


def test_batch_periodic_packs_shifts_and_cells():
    """Two copies of a triclinic cell, the second given 2-3 cells away: both are moved into the cell by lattice
    vectors (the batch's positions), and their edges and pairs are the brute-force ones of those positions."""
    given, cell = systems()["triclinic"]
    positions = given - lattice_translations(given, cell)
    fractional = np.linalg.solve(cell.T, positions.T).T
    assert ((fractional >= 0) & (fractional < 1)).all()
    z = np.ones(len(positions), int)
    batch = batch_periodic([z, z], [given, given + np.array([2, -3, 2]) @ cell], [cell, cell], CUTOFF,
                           pair_cutoff=4.5, num_atoms=56, num_edges=4096, num_pairs=8192, num_molecules=3,
                           dtype=np.float64)
    n = len(positions)
    np.testing.assert_allclose(batch.positions[:2 * n], np.concatenate([positions, positions]), rtol=0, atol=1e-12)
    edges = as_set(batch.dst_idx, batch.src_idx, batch.edge_mask, batch.shifts, cell)
    first = {e for e in edges if e[0] < n}
    second = {(i - n, j - n) + tuple(img) for i, j, *img in edges if i >= n}
    assert first == second == brute_force_pairs(positions, CUTOFF, cell)
    pairs = as_set(batch.pair_dst, batch.pair_src, batch.pair_mask, batch.pair_shifts, cell)
    assert {e for e in pairs if e[0] < n} == brute_force_pairs(positions, 4.5, cell)
    assert batch.cells.shape == (3, 3, 3) and np.allclose(batch.cells[:2], cell)
    assert batch.shape_key == (56, 4096, 8192, 3, True)


def test_batch_periodic_refuses_bad_input():
    positions, cell = systems()["triclinic"]
    z = np.ones(len(positions), int)
    with pytest.raises(ValueError, match="all pairs"):
        batch_periodic([z], [positions], [cell], CUTOFF, pair_cutoff=None)
    with pytest.raises(ValueError, match="num_edges"):
        batch_periodic([z], [positions], [cell], CUTOFF, num_edges=3)
    with pytest.raises(PhysNetInputError, match=r"structure 0: pbc=\[True, True, True\] but the cell is zero, flat or "
                                                r"degenerate .* along cell vector 0 \(0 Å long\)"):
        batch_periodic([z], [positions], [np.zeros((3, 3))], CUTOFF)
    with pytest.raises(ValueError, match="got 2 atomic-number arrays, 1 position arrays and 1 cells; they must match"):
        batch_periodic([z, z], [positions], [cell], CUTOFF)
    with pytest.raises(ValueError, match="cannot build a batch of zero cells"):
        batch_periodic([], [], [], CUTOFF)
    with pytest.raises(ValueError, match=rf"structure 0: positions must have shape \(n, 3\) = \({len(z)}, 3\) to "
                                         r"match atomic_numbers, received shape \(2, 3\)"):
        batch_periodic([z], [positions[:2]], [cell], CUTOFF)
    with pytest.raises(ValueError, match=r"positions must have shape \(n, 3\), received \(3,\)"):
        periodic_pairs(positions[0], cell, CUTOFF)
    with pytest.raises(ValueError, match="positions contain NaN or Inf"):
        periodic_pairs(np.where(np.arange(len(z))[:, None] == 1, np.nan, positions), cell, CUTOFF)
    with pytest.raises(ValueError, match="cutoff must be finite and > 0 Å, received 0.0"):
        periodic_pairs(positions, cell, 0.0)


@pytest.mark.parametrize("method", ["dense", "cell"])
def test_nearly_flat_cells_are_refused_not_listed(method):
    """A cell 1e-4 Å thin put every atom 1e-4 Å from its own image: millions of pairs, no physics."""
    positions = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    flat = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [3.0, 3.0, 1e-4]])
    message = (r"the cell is zero, flat or degenerate along the periodic direction\(s\): lattice-plane spacing "
               r"0\.0001 Å \(the periodic cell vectors are nearly linearly dependent\) \(need >= 0\.1")
    with pytest.raises(ValueError, match=message):
        neighbor_list(3.0, method=method, cell=flat)
    with pytest.raises(ValueError, match=message):
        periodic_pairs(positions, flat, 3.0)
    thin = flat.copy()
    thin[2, 2] = 0.11  # just above the limit: accepted and equal to the brute-force pairs
    assert perpendicular_widths(thin).min() == pytest.approx(0.11)
    nbrs = neighbor_list(0.5, method=method, cell=thin)[0](positions)
    listed = as_set(nbrs.dst_idx, nbrs.src_idx, nbrs.mask, nbrs.shifts, thin)
    assert listed == brute_force_pairs(positions, 1.0, thin)


def test_dense_all_pairs_and_argument_checks():
    positions, _ = systems()["molecule"]
    allocate, update = neighbor_list(None, method="dense")
    nbrs = allocate(positions)
    n = len(positions)
    assert nbrs.capacity == n * (n - 1) and int(nbrs.mask.sum()) == n * (n - 1)
    assert not bool(needs_update(positions + 100.0, nbrs))
    with pytest.raises(ValueError, match="method"):
        neighbor_list(3.0, method="verlet")
    with pytest.raises(ValueError, match="cutoff=None"):
        neighbor_list(None, method="cell")
    with pytest.raises(ValueError, match="capacity_multiplier"):
        neighbor_list(3.0, capacity_multiplier=0.5)
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list(3.0)[0](np.full((3, 3), np.nan))


@pytest.mark.parametrize("method", ["dense", "cell"])
def test_skin_rebuilds_only_after_half_skin(method):
    positions, cell = systems()["triclinic"]
    allocate, update = neighbor_list(CUTOFF, skin=0.5, method=method, cell=cell)
    nbrs = allocate(positions)
    small = positions.copy()
    small[3] += np.array([0.24, 0.0, 0.0])
    kept = update(small, nbrs)
    assert not bool(needs_update(small, nbrs))
    np.testing.assert_array_equal(kept.reference_positions, nbrs.reference_positions)
    # the list built at `positions` with the skin still holds every pair within the cutoff
    assert brute_force_pairs(small, CUTOFF, cell) <= as_set(kept.dst_idx, kept.src_idx, kept.mask, kept.shifts, cell)
    large = positions.copy()
    large[3] += np.array([0.26, 0.0, 0.0])
    assert bool(needs_update(large, nbrs))
    rebuilt = update(large, nbrs)
    np.testing.assert_array_equal(rebuilt.reference_positions, large)
    assert as_set(rebuilt.dst_idx, rebuilt.src_idx, rebuilt.mask, rebuilt.shifts, cell) == brute_force_pairs(
        large, CUTOFF + 0.5, cell
    )


@pytest.mark.parametrize("method", ["dense", "cell"])
def test_one_pair_beyond_an_odd_capacity_is_an_overflow(method):
    # Three atoms on a line, 2 bonds = 4 directed pairs; × 1.25 → capacity 5. Bending the chain
    # brings the ends within the 2.2 Å radius: 6 pairs, one beyond the capacity, which must be flagged.
    positions = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [3.2, 0.0, 0.0]])
    fns = neighbor_list(2.0, skin=0.2, method=method, capacity_multiplier=1.25)
    nbrs = fns.allocate(positions)
    assert nbrs.capacity == 5 and int(nbrs.num_pairs) == 4 and not bool(nbrs.did_overflow)
    bent = np.array([[0.0, 0.0, 0.0], [1.2, 0.9, 0.0], [1.9, 0.0, 0.0]])
    updated = fns.update(bent, nbrs)
    assert len(brute_force_pairs(bent, 2.2)) == int(updated.num_pairs) == nbrs.capacity + 1
    assert bool(updated.did_overflow)


def test_a_full_bin_is_an_overflow_even_when_the_pairs_fit():
    # 12 Å cube, radius 2.2 Å: 5 × 5 × 5 bins of 2.4 Å. Allocated with 4 close pairs in 4 bins (2 atoms per
    # bin → 3 slots, 8 pairs → capacity 10), then 8 atoms move to the corners of a 2.3 Å cube inside one
    # bin (no pair among them) and a ninth sits 2.0 Å from one corner in the next bin: 2 pairs fit the
    # capacity, but the bin holds 8 atoms for 3 slots, so atoms are missing from it: an overflow.
    cell = np.eye(3) * 12.0
    start = np.array([[1.2, 1.2, 1.2], [2.2, 1.2, 1.2], [6.0, 1.2, 1.2], [7.0, 1.2, 1.2],
                      [1.2, 6.0, 1.2], [2.2, 6.0, 1.2], [1.2, 1.2, 6.0], [2.2, 1.2, 6.0], [9.6, 9.6, 9.6]])
    fns = neighbor_list(2.0, skin=0.2, method="cell", cell=cell, capacity_multiplier=1.25)
    nbrs = fns.allocate(start)
    assert nbrs.grid == (5, 5, 5) and nbrs.cell_capacity == 3 and nbrs.capacity == 10
    corners = 0.03 + 2.3 * np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    crowded = np.vstack([corners, [[4.33, 0.03, 0.03]]])
    updated = fns.update(crowded, nbrs)
    assert len(brute_force_pairs(crowded, 2.2, cell)) == 2 <= nbrs.capacity
    assert int(updated.max_occupancy) == 8 and bool(updated.did_overflow)
    with pytest.raises(NeighborListOverflowError, match="largest bin holds 8 atoms for 3 slots"):
        check_overflow(updated)


@pytest.mark.parametrize("method,cell", [("dense", None), ("cell", None), ("cell", TRICLINIC)])
def test_overflow_is_flagged_never_silent(method, cell, caplog):
    """Squeeze the atoms together until a buffer is too small; every unflagged list is complete."""
    rng = np.random.default_rng(3)
    frame = np.eye(3) * 6.0 if cell is None else cell
    positions = rng.uniform(0, 1, (20, 3)) @ frame
    fns = neighbor_list(2.0, skin=0.2, method=method, cell=cell, capacity_multiplier=1.0)
    update = fns.update
    nbrs = fns.allocate(positions)
    centre = positions.mean(axis=0)
    overflowed = False
    for step in range(1, 12):
        squeezed = centre + (positions - centre) * 0.85**step
        nbrs = update(squeezed, nbrs)
        if bool(nbrs.did_overflow):
            overflowed = True
            break
        listed = as_set(nbrs.dst_idx, nbrs.src_idx, nbrs.mask, nbrs.shifts, cell)
        assert brute_force_pairs(squeezed, 2.0, cell) <= listed
    assert overflowed, "the squeeze never exceeded the capacity"
    assert int(nbrs.num_pairs) > nbrs.capacity or int(nbrs.max_occupancy) > nbrs.cell_capacity
    with pytest.raises(NeighborListOverflowError, match="overflowed"):
        check_overflow(nbrs)
    # sticky: a later update that needs no rebuild keeps the flag, and so does a rebuild that fits
    # again (back at the start geometry: the pairs of the steps in between were incomplete)
    assert bool(update(squeezed, nbrs).did_overflow)
    back = update(positions, nbrs)
    assert int(back.num_pairs) <= back.capacity and int(back.max_occupancy) <= back.cell_capacity
    np.testing.assert_array_equal(back.reference_positions, positions)
    assert bool(back.did_overflow)
    with caplog.at_level(logging.WARNING, logger="physnetjax.neighbors.neighbor_list"):
        fresh = fns.safe_update(squeezed, nbrs)
    assert "re-allocating" in caplog.text
    assert not bool(fresh.did_overflow) and fresh.capacity >= int(nbrs.num_pairs)
    listed = as_set(fresh.dst_idx, fresh.src_idx, fresh.mask, fresh.shifts, cell)
    assert listed == brute_force_pairs(squeezed, 2.2, cell)


@pytest.mark.parametrize("method", ["dense", "cell"])
def test_a_nan_position_rebuilds_and_flags_the_list(method):
    """NaN > skin²/4 is False: the list was kept, stale and unflagged, with a pair missing that an atom had moved
    into. A NaN (or Inf) position now rebuilds it with the flag set, check_overflow names the atom, and the list
    allocated afresh at finite positions equals the brute-force pairs."""
    positions, cell = systems()["triclinic"]
    fns = neighbor_list(CUTOFF, skin=0.5, method=method, cell=cell, capacity_multiplier=2.0)
    nbrs = fns.allocate(positions)
    moved = positions.copy()
    moved[3] += [0.1, 0.0, 0.0]
    moved[5] = [np.nan, 0.0, 0.0]
    assert bool(needs_update(moved, nbrs))
    flagged = fns.update(moved, nbrs)
    assert bool(flagged.did_overflow)
    with pytest.raises(NeighborListOverflowError, match=r"positions contain NaN or Inf at atom\(s\) 5; re-allocate"):
        check_overflow(flagged)
    assert bool(fns.update(positions, flagged).did_overflow)  # sticky
    finite = np.where(np.isnan(moved), positions, moved)
    fresh = fns.safe_update(finite, flagged)
    assert not bool(fresh.did_overflow)
    listed = as_set(fresh.dst_idx, fresh.src_idx, fresh.mask, fresh.shifts, cell)
    assert listed == brute_force_pairs(finite, CUTOFF + 0.5, cell)


def test_a_far_atom_keeps_the_grid_small_and_the_list_exact():
    """Water and two atoms far away: the bounding box (or a large cell) held (far / radius)³ bins, 10 GiB for an
    atom at 5000 Å (MemoryError). The grid now has at most MIN_BIN_LIMIT = 4096 bins (for a few atoms), each at
    least the list radius wide, and the list equals the brute-force pairs. Small cases first: the large ones
    exhausted the memory before the fix."""
    water = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    for cell, far in [(None, 300.0), (np.eye(3) * 400.0, 390.0), (None, 5000.0), (np.eye(3) * 9000.0, 8990.0)]:
        positions = np.vstack([water + 2.0, [far, far, far], [far - 1.0, far, far]])
        nbrs = neighbor_list(3.0, skin=0.5, method="cell", cell=cell).allocate(positions)
        assert np.prod(nbrs.grid) <= 4096 and nbrs.cell_capacity <= len(positions)
        listed = as_set(nbrs.dst_idx, nbrs.src_idx, nbrs.mask, nbrs.shifts, cell)
        assert listed == brute_force_pairs(positions, 3.5, cell)


def test_lists_beyond_int32_indices_are_refused(monkeypatch):
    """The bin table (bins × slots) and the candidate mask (atoms × bins searched × slots) are indexed with int32;
    a list that needs more slots is refused by name, not wrapped around."""
    from physnetjax.errors import PhysNetInputError
    module = importlib.import_module("physnetjax.neighbors.neighbor_list")

    positions = np.random.default_rng(0).uniform(0, 4.0, (40, 3))
    monkeypatch.setattr(module, "INDEX_LIMIT", 40 * 40)
    neighbor_list(3.0, method="dense").allocate(positions[:39])
    with pytest.raises(PhysNetInputError, match="would need 1600 slots .* beyond the 1600 that int32 indices reach"):
        neighbor_list(3.0, method="dense").allocate(positions)


def test_allocate_without_head_room_fits_atoms_on_bin_boundaries():
    """A float32 crystal whose atoms sit on bin boundaries: the host's bins (NumPy) and the device's (XLA) differ
    by one ulp there, so allocate with capacity_multiplier=1 raised NeighborListOverflowError ("largest bin holds
    8 atoms for 7 slots"). Its retry now grows what overflowed; the list equals the brute-force pairs."""
    a, m = 2.511579703088394, 6
    unit = np.array([[a, 0.0, 0.0], [0.23342877465509068, a, 0.0], [-0.6025343809822928, 0.8536395296772974, a]])
    cell = unit * m
    sites = np.array(list(itertools.product(range(m), repeat=3)), float) / m
    positions = (sites @ cell).astype(np.float32)
    fns = neighbor_list(3.0, 0.5, "cell", cell, capacity_multiplier=1.0)
    nbrs = fns.allocate(positions)
    assert not bool(nbrs.did_overflow)
    assert float32_list_set(nbrs, cell) == brute_force_pairs(positions.astype(np.float64), 3.5, cell)


def test_overflow_messages_name_what_overflowed(caplog):
    """The dense method has no bins, but its warning said "bin occupancy 30 > 30"; a full bin hides pairs, so the
    pair count of such a list is a lower bound ("at least"), not the "90 pairs for capacity 92" it said."""
    rng = np.random.default_rng(5)
    start = rng.uniform(0, 12, (30, 3))
    cell = np.eye(3) * 12.0
    dense = neighbor_list(3.0, 0.5, "dense", cell, capacity_multiplier=1.0)
    with caplog.at_level(logging.WARNING, logger="physnetjax.neighbors.neighbor_list"):
        dense.safe_update(start[0] + (start - start[0]) * 0.3, dense.allocate(start))
    assert re.search(r"neighbor list overflowed \(\d+ pairs for capacity \d+\); re-allocating", caplog.text)
    assert "bin" not in caplog.text
    cells = neighbor_list(3.0, 0.5, "cell", cell, capacity_multiplier=1.0)
    crowded = cells.update(start[0] + (start - start[0]) * 0.2, cells.allocate(start))
    with pytest.raises(NeighborListOverflowError,
                       match=r"overflowed: the largest bin holds \d+ atoms for \d+ slots; at least \d+ pairs"):
        check_overflow(crowded)


def test_perpendicular_widths_names_the_zero_cell_vector():
    with pytest.raises(PhysNetInputError, match=r"along cell vector 2 \(0 Å long\)"):
        perpendicular_widths(np.diag([5.0, 5.0, 0.0]))
    with pytest.raises(PhysNetInputError, match=r"linearly dependent"):
        perpendicular_widths(np.array([[6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [6.0, 6.0, 0.0]]))


def test_allocate_grows_a_pair_capacity_the_host_undercounted_to_the_device_count_with_head_room(monkeypatch):
    """The host counts the pairs (NumPy, float64) before the device lists them (XLA, float32 here): where the two
    roundings disagree the device finds more, overflows, and allocate retries with the device's count times the
    capacity multiplier. Here the host's count is 1 for every system: the retry must size the list from the
    device's count (with head room), and the list equals the brute-force pairs."""
    module = importlib.import_module("physnetjax.neighbors.neighbor_list")  # the package exports the function
    monkeypatch.setattr(module, "_host_pair_count", lambda *args, **kwargs: 1)
    positions, cell = systems()["triclinic"]
    reference = brute_force_pairs(positions, CUTOFF, cell)
    nbrs = neighbor_list(CUTOFF, 0.0, "cell", cell, capacity_multiplier=1.5).allocate(positions.astype(np.float32))
    assert not bool(nbrs.did_overflow)
    assert nbrs.dst_idx.shape[0] >= 1.5 * len(reference)
    assert float32_list_set(nbrs, cell) == reference
