"""Fixed-capacity neighbor lists that are built inside ``jax.jit`` (for MD).

Every builder follows the jax-md pattern::

    allocate, update = neighbor_list(cutoff, skin=0.5, method="cell", cell=cell)
    nbrs = allocate(positions)          # host: measures the system, sizes every buffer
    nbrs = update(positions, nbrs)      # pure, jit-able: rebuilds only when needed

The list holds every directed pair (i ← j, periodic image included) with
|r_j − r_i + shift| < cutoff + skin, so it stays complete until some atom has moved
more than skin/2 from where it was at the last build (:func:`needs_update`).

Capacity is fixed at :func:`allocate` time (``capacity_multiplier`` × what the
system needed then). Inside ``jit`` nothing can be resized, so ``update`` records a
sticky ``did_overflow`` flag whenever *any* fixed-size buffer was too small (the
pair buffer, or the occupancy of a cell-list bin), and whenever a position was NaN
or Inf (no list exists for it; the list is rebuilt, so it cannot stay stale); the
pairs it then holds are incomplete and must not be used. Check the flag outside ``jit``:
:meth:`NeighborListFns.safe_update` re-allocates (and logs it), and
:func:`check_overflow` raises :class:`NeighborListOverflowError`.

Search methods (identical results, different cost):

* ``"dense"``: every atom against every atom (and every periodic image in reach),
  O(N²) work, no bins, no occupancy limit. With ``cutoff=None`` it is the list of
  *all* N(N−1) pairs of an isolated molecule (bare Coulomb without a cutoff) and
  never needs rebuilding.
* ``"cell"``: atoms are binned into a grid of cells at least ``cutoff + skin`` wide,
  and each atom is compared with the atoms of its own and the neighbouring bins,
  O(N) work. The grid has at most ``max(MIN_BIN_LIMIT, MAX_BINS_PER_ATOM · N)`` bins (wider
  bins where the box is sparse, e.g. one atom far from the rest), so its memory
  stays O(N). In a periodic cell the grid lives in fractional coordinates, so
  triclinic cells work; a cell narrower than the cutoff is searched over as many
  images as reach. Without a cell, the grid spans the bounding box at allocation;
  atoms that later leave it are clamped into the border bins, which keeps the
  search exact (only the border bins' occupancy grows, and that is checked).

Edge convention (same as :class:`physnetjax.neighbors.Batch`): the edge vector is
r_src − r_dst + shift, with ``shift`` = (n_a, n_b, n_c) · cell an image offset in Å.
Padded slots have ``mask`` False and point at atom N − 1.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import vesin

from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors.batch import Batch, one_system_batch
from physnetjax.neighbors.checks import check_full_list
from physnetjax.validation import check_cell, check_positions, check_range, layer_spacings

logger = logging.getLogger(__name__)

METHODS = ("dense", "cell")

MAX_BINS_PER_ATOM = 8
"""The cell-list grid has at most ``max(MIN_BIN_LIMIT, MAX_BINS_PER_ATOM · N)`` bins for N atoms (condensed matter
fills far fewer: ~16 atoms per bin 5.5 Å wide in water); wider bins keep a sparse system's memory O(N)."""

MIN_BIN_LIMIT = 4096
"""Bins every grid may have, whatever the number of atoms (a few KiB)."""

INDEX_LIMIT = 2**31
"""Slots a list may index with int32: bins × atom slots per bin, and atoms × bins searched × slots."""


class NeighborListOverflowError(RuntimeError):
    """A fixed-capacity neighbor list was too small; its pairs are incomplete."""


@flax.struct.dataclass
class NeighborList:
    """A fixed-capacity directed neighbor list and the state needed to refresh it.

    Fields (K = ``capacity`` pair slots, N atoms):
      dst_idx, src_idx: (K,) int32 atom indices, edge vector r_src − r_dst + shift.
      mask: (K,) bool, True for real pairs.
      shifts: (K, 3) float Å image offsets, or None without a periodic cell.
      reference_positions: (N, 3) Å positions at the last build.
      did_overflow: () bool, True once any build did not fit (sticky).
      num_pairs: () int32 pairs found at the last build (may exceed K on overflow).
      max_occupancy: () int32 largest number of atoms in one bin at the last build.
      grid_origin, grid_length: (3,) Å corner and edge lengths of the bounding-box
        grid (non-periodic cell list; unused otherwise).
    Static (part of the tree structure, fixed at allocation):
      capacity: K.  cell_capacity: atom slots per bin.  grid: bins per axis.
      cutoff: list radius (cutoff + skin) in Å, None for all pairs.  skin: Å.
    """

    dst_idx: jax.Array
    src_idx: jax.Array
    mask: jax.Array
    shifts: Optional[jax.Array]
    reference_positions: jax.Array
    did_overflow: jax.Array
    num_pairs: jax.Array
    max_occupancy: jax.Array
    grid_origin: jax.Array
    grid_length: jax.Array
    capacity: int = flax.struct.field(pytree_node=False, default=0)
    cell_capacity: int = flax.struct.field(pytree_node=False, default=0)
    grid: tuple = flax.struct.field(pytree_node=False, default=(1, 1, 1))
    cutoff: Optional[float] = flax.struct.field(pytree_node=False, default=None)
    skin: float = flax.struct.field(pytree_node=False, default=0.0)


class NeighborListFns(NamedTuple):
    """``(allocate, update)`` as returned by :func:`neighbor_list` (unpacks as a pair).

    allocate(positions) -> NeighborList: host function, sizes every buffer from the
      current positions (× capacity_multiplier) and builds the list.
    update(positions, nbrs) -> NeighborList: pure and jitted (callable inside other
      jitted code, e.g. an MD step or ``lax.scan``); rebuilds when
      :func:`needs_update` says so, else returns ``nbrs`` with nothing changed.
    """

    allocate: Callable[[jax.Array], NeighborList]
    update: Callable[[jax.Array, NeighborList], NeighborList]

    def safe_update(self, positions, nbrs: NeighborList) -> NeighborList:
        """``update`` that never returns an overflowed list (host function).

        If the list overflowed (now or in an earlier unchecked update), it is
        re-allocated from ``positions`` with fresh capacity and a warning is logged.
        """
        updated = self.update(positions, nbrs)
        if not bool(updated.did_overflow):
            return updated
        logger.warning("neighbor list overflowed (%s); re-allocating", overflow_report(updated))
        return self.allocate(positions)


def needs_update(positions, nbrs: NeighborList) -> jax.Array:
    """True when some atom moved more than skin/2 since the last build, or a position is NaN or Inf.

    max_i |r_i − r_i^ref| > skin/2 (Å), with ``positions`` (N, 3) Å. A list that was
    never built has reference positions at infinity, so it always needs one; after
    that, lists of all pairs (``cutoff=None``) never need an update. A NaN distance
    counts as a move (the rebuild then flags the list). Works inside ``jit``; returns
    a () bool.
    """
    if nbrs.cutoff is None:
        return jnp.any(~jnp.isfinite(nbrs.reference_positions))
    moved = jnp.sum((positions - nbrs.reference_positions) ** 2, axis=-1)
    return ~(jnp.max(moved) <= (0.5 * nbrs.skin) ** 2)


def overflow_report(nbrs: NeighborList) -> str:
    """What made an overflowed list (host) incomplete, for messages: NaN/Inf positions, a full bin, a full pair
    buffer, or an earlier build (the flag is sticky)."""
    problems = []
    reference = np.asarray(nbrs.reference_positions)
    nonfinite = np.nonzero(~np.isfinite(reference).all(axis=1))[0]
    if len(nonfinite) and not np.all(reference == np.inf):  # a never-built list has all of them at +inf
        problems.append(f"positions contain NaN or Inf at atom(s) {', '.join(map(str, nonfinite[:5].tolist()))}")
    bins_full = int(nbrs.max_occupancy) > nbrs.cell_capacity
    if bins_full:
        problems.append(f"the largest bin holds {int(nbrs.max_occupancy)} atoms for {nbrs.cell_capacity} slots")
    if int(nbrs.num_pairs) > nbrs.capacity or (bins_full and int(nbrs.num_pairs) == nbrs.capacity):
        problems.append(f"{'at least ' if bins_full else ''}{int(nbrs.num_pairs)} pairs for capacity {nbrs.capacity}")
    if not problems:
        problems.append(f"an earlier update did not fit (the flag is sticky; {int(nbrs.num_pairs)} pairs for "
                        f"capacity {nbrs.capacity} now)")
    return "; ".join(problems)


def check_overflow(nbrs: NeighborList) -> NeighborList:
    """Return ``nbrs`` unchanged, or raise :class:`NeighborListOverflowError` naming what overflowed (host only)."""
    if bool(nbrs.did_overflow):
        raise NeighborListOverflowError(
            f"neighbor list overflowed: {overflow_report(nbrs)}; re-allocate it from finite positions "
            "(allocate(positions); NeighborListFns.safe_update does) — its pairs are incomplete"
        )
    return nbrs


def perpendicular_widths(cell) -> np.ndarray:
    """Distances between opposite faces of a cell, w_a = V / |b × c| (and cyclic), in Å.

    These are the lattice-plane spacings of :func:`~physnetjax.validation.layer_spacings`.

    Args:
      cell: (3, 3) cell vectors as rows, Å.

    Raises:
      PhysNetInputError: from :func:`~physnetjax.validation.check_cell`: a cell that is not
        (3, 3), not finite, beyond ±MAX_ABS_COORDINATE, singular, or so flat that a spacing is
        below :data:`~physnetjax.validation.MIN_DISTANCE_ERROR` (every atom would overlap its
        own periodic image, and the list would hold millions of pairs), naming the vector.
    """
    cell, _ = check_cell(cell, True)
    return layer_spacings(cell)


def neighbor_list(
    cutoff: Optional[float],
    skin: float = 0.5,
    method: str = "cell",
    cell=None,
    capacity_multiplier: float = 1.25,
) -> NeighborListFns:
    """Build ``(allocate, update)`` for a fixed-capacity neighbor list (see module docstring).

    Args:
      cutoff: interaction cutoff in Å, or None for all pairs (``method="dense"``, no cell).
      skin: Verlet skin in Å; pairs within cutoff + skin are stored and the list is
        rebuilt once an atom moved more than skin/2.
      method: ``"dense"`` (O(N²), small molecules) or ``"cell"`` (O(N) cell list).
      cell: None (isolated system) or (3, 3) periodic cell vectors as rows in Å,
        fixed for the lifetime of the list.
      capacity_multiplier: head room (≥ 1) on the pair buffer and bin occupancy.

    Returns:
      :class:`NeighborListFns` ``(allocate, update)``.

    Raises:
      PhysNetInputError: for an unknown method, a cutoff that is not a finite number
        > 0, a skin that is not finite and >= 0, a multiplier that is not finite and
        >= 1, a bad cell (:func:`~physnetjax.validation.check_cell`), or ``cutoff=None``
        with a cell or a cell list. ``allocate`` raises it for positions that are not
        (n, 3), not finite, beyond ±MAX_ABS_COORDINATE Å (:func:`~physnetjax.validation.check_positions`),
        or so crowded that the list would need more than 2³¹ slots; ``update`` (when traced)
        for positions of another shape or dtype than the list was allocated for.
    """
    if method not in METHODS:
        raise PhysNetInputError(f"method must be one of {METHODS}, received {method!r}")
    if cutoff is None and (method != "dense" or cell is not None):
        raise PhysNetInputError("cutoff=None (all pairs) needs method='dense' and no periodic cell")
    if cutoff is not None:
        cutoff = check_range("cutoff", cutoff, "Å", 0.0, strict=True)
    skin = check_range("skin", skin, "Å", 0.0)
    capacity_multiplier = check_range("capacity_multiplier", capacity_multiplier, "", 1.0)
    list_radius = None if cutoff is None else cutoff + skin
    periodic = cell is not None
    cell_np = check_cell(cell, True)[0] if periodic else None
    widths = layer_spacings(cell_np) if periodic else None

    def build(positions, nbrs: NeighborList) -> NeighborList:
        return _build(positions, nbrs, list_radius, cell_np, _stencil(nbrs.grid, widths, list_radius, method), method)

    @jax.jit
    def update(positions, nbrs: NeighborList) -> NeighborList:
        reference = nbrs.reference_positions
        if positions.shape != reference.shape or positions.dtype != reference.dtype:
            raise PhysNetInputError(
                f"update: positions have shape {tuple(positions.shape)} and dtype {positions.dtype}, but the list "
                f"was allocated for shape {tuple(reference.shape)} and dtype {reference.dtype}; pass positions of "
                "the same atoms in the same dtype, or allocate a new list for the new system")
        return jax.lax.cond(needs_update(positions, nbrs), build, lambda _, old: old, positions, nbrs)

    def allocate(positions) -> NeighborList:
        positions_np = np.asarray(positions)
        if positions_np.ndim != 2 or positions_np.shape[1] != 3 or positions_np.shape[0] < 1:
            raise PhysNetInputError(
                f"positions must have shape (n, 3) with n >= 1, received {positions_np.shape}")
        check_positions(positions_np, positions_np.shape[0])
        n = positions_np.shape[0]
        dtype = positions_np.dtype if np.issubdtype(positions_np.dtype, np.floating) else np.float32
        positions = jnp.asarray(positions_np, dtype=dtype)
        local_grid, origin, length = _grid_for(positions_np, cell_np, list_radius, method)
        if method == "dense":
            cell_capacity = n
        else:
            occupancy = _host_max_occupancy(positions_np, cell_np, local_grid, origin, length)
            cell_capacity = min(n, math.ceil(occupancy * capacity_multiplier))
        if list_radius is None:
            needed, multiplier = n * (n - 1), 1.0
        else:
            needed, multiplier = _host_pair_count(positions_np, cell_np, list_radius), capacity_multiplier
        capacity = max(1, math.ceil(needed * multiplier))
        num_searched = len(_stencil(local_grid, widths, list_radius, method))
        for _ in range(3):
            _check_index_range(n, num_searched, math.prod(local_grid), cell_capacity)
            nbrs = update(positions, _empty(n, capacity, cell_capacity, local_grid, origin, length,
                                            list_radius, skin, periodic, positions.dtype))
            if not bool(nbrs.did_overflow):
                break
            # The device's rounding (float32) put an atom in a neighbouring bin, or a pair inside the radius,
            # where the host's did not: grow what overflowed to what the device measured.
            capacity = max(capacity, math.ceil(int(nbrs.num_pairs) * multiplier))
            cell_capacity = min(n, max(cell_capacity, math.ceil(int(nbrs.max_occupancy) * capacity_multiplier)))
        nbrs = check_overflow(nbrs)
        check_full_list(nbrs.dst_idx, nbrs.src_idx, nbrs.mask, nbrs.shifts, cells=cell_np, name="neighbor list")
        return nbrs

    return NeighborListFns(allocate, update)


def batch_from_neighbors(
    atomic_numbers,
    positions,
    nbrs: NeighborList,
    pair_nbrs: Optional[NeighborList] = None,
    cell=None,
    total_charge=0.0,
    triplets=None,
) -> Batch:
    """A one-system :class:`Batch` (B = 1) from in-jit neighbor lists; jit-able.

    Args:
      atomic_numbers: (N,) int atomic numbers (all real atoms).
      positions: (N, 3) Å, the positions the model should see (the lists must be
        up to date for them: call ``update`` first).
      nbrs: message-passing list built with the model's cutoff.
      pair_nbrs: optional list for the pair terms (e.g. ``cutoff=None`` for bare
        Coulomb over all pairs, or the Coulomb long-range cutoff); None → the pair
        terms use ``nbrs``.
      cell: (3, 3) Å periodic cell as rows (the one the lists were built with), or None.
      total_charge: total charge of the system in e.
      triplets: optional :class:`~physnetjax.neighbors.neighbor_triplets.TripletList`
        over the pair-term list (``pair_nbrs``, else ``nbrs``) for the three-body term.

    Returns:
      :class:`Batch` with ``shifts``/``cells`` when periodic, ``pair_*`` with ``pair_nbrs``,
      ``triplets``/``triplet_mask`` with ``triplets``.

    Raises:
      PhysNetInputError: when ``cell`` is given but a list was built without one, or the reverse.
    """
    positions = jnp.asarray(positions)
    periodic = cell is not None
    for name, lst in (("nbrs", nbrs), ("pair_nbrs", pair_nbrs)):
        if lst is not None and (lst.shifts is not None) != periodic:
            raise PhysNetInputError(
                f"{name} was built {'with' if lst.shifts is not None else 'without'} a periodic cell "
                f"but cell={'None' if cell is None else 'given'}"
            )
    pair_fields = {}
    if pair_nbrs is not None:
        pair_fields = dict(
            pair_dst=pair_nbrs.dst_idx,
            pair_src=pair_nbrs.src_idx,
            pair_mask=pair_nbrs.mask,
            pair_shifts=pair_nbrs.shifts.astype(positions.dtype) if periodic else None,
        )
    if triplets is not None:
        pair_fields.update(triplets=triplets.triplets, triplet_mask=triplets.mask)
    return one_system_batch(atomic_numbers, positions, nbrs.dst_idx, nbrs.src_idx, nbrs.mask,
                            total_charge=total_charge, shifts=nbrs.shifts if periodic else None,
                            cell=cell if periodic else None, **pair_fields)


# -- internals --------------------------------------------------------------------------


def _host_pair_count(positions: np.ndarray, cell, radius: float) -> int:
    """Number of directed pairs within ``radius`` (all images), counted by vesin in float64."""
    box = np.zeros((3, 3)) if cell is None else cell
    calculator = vesin.NeighborList(cutoff=float(radius), full_list=True)
    (i,) = calculator.compute(positions.astype(np.float64), box, periodic=cell is not None, quantities="i")
    return int(len(i))


def _check_index_range(num_atoms: int, num_searched: int, num_bins: int, slots: int) -> None:
    """PhysNetInputError unless the list's int32 indices cannot overflow: the bin table holds num_bins × slots
    entries and the candidate mask num_atoms × num_searched (bin offsets) × slots (:data:`INDEX_LIMIT`)."""
    table, candidates = num_bins * slots, num_atoms * num_searched * slots
    if max(table, candidates) >= INDEX_LIMIT:
        raise PhysNetInputError(
            f"the neighbor list of {num_atoms} atoms would need {max(table, candidates)} slots ({num_bins} bins of "
            f"{slots} atoms, {num_searched} bins searched per atom), beyond the {INDEX_LIMIT} that int32 indices "
            "reach: the atoms are crowded into few bins (a collapsed structure, or positions not in Å?)")


def _stencil(grid, widths, radius, method) -> np.ndarray:
    """Bin offsets (S, 3) to search: ±k_a per axis with k_a = ceil(radius · n_a / w_a).

    A bin is w_a/n_a thick, so two points closer than ``radius`` differ by at most
    k_a bins along axis a. Without a cell (bounding-box grid, bins ≥ radius) k = 1,
    and the dense method without a cell searches its one bin only (k = 0).
    Each offset gives a distinct (bin, image) pair, so no pair is found twice.
    """
    if widths is None:
        reach = (0, 0, 0) if method == "dense" else (1, 1, 1)
    else:
        reach = tuple(max(1, math.ceil(radius * n / w - 1e-12)) for n, w in zip(grid, widths))
    axes = [np.arange(-k, k + 1) for k in reach]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.int32)


def _grid_for(positions: np.ndarray, cell, radius, method):
    """Bins per axis, and origin/lengths (3,) Å of the bounding-box grid (non-periodic).

    Bins are at least ``radius`` wide along every axis (perpendicular width of the
    cell, or edge of the bounding box L_a): n_a = floor(L_a / b) with b = radius,
    widened uniformly until n_a n_b n_c ≤ max(MIN_BIN_LIMIT, MAX_BINS_PER_ATOM · N). The dense
    method has one bin.
    """
    if cell is not None:
        extents, low = perpendicular_widths(cell), np.zeros(3)
        length = np.ones(3)
    else:
        positions = positions.astype(np.float64)
        low = positions.min(axis=0) - 0.5 * (radius or 0.0)
        length = extents = positions.max(axis=0) + 0.5 * (radius or 0.0) - low
    if method == "dense":
        return (1, 1, 1), low, length
    limit = max(MIN_BIN_LIMIT, MAX_BINS_PER_ATOM * len(positions))
    width = radius
    while True:
        grid = tuple(max(1, int(extent // width)) for extent in extents)
        if math.prod(grid) <= limit:
            return grid, low, length
        width *= max(1.01, (math.prod(grid) / limit) ** (1 / 3))


def _fractional(positions, cell, origin, length, grid):
    """Fractional coordinates s, integer image w = floor(s) and the bin index (N, 3).

    Periodic: s = r · cell⁻¹, wrapped u = s − w in [0, 1). Otherwise s = (r − origin)/length,
    w = 0 and bins clamped into the grid. Works for NumPy and jax.numpy inputs alike.
    """
    xp = jnp if isinstance(positions, jax.Array) else np
    grid_arr = xp.asarray(grid)
    if cell is not None:
        s = positions @ xp.asarray(np.linalg.inv(cell), dtype=positions.dtype)
        w = xp.floor(s)
        u = s - w
    else:
        u = (positions - xp.asarray(origin, dtype=positions.dtype)) / xp.asarray(length, dtype=positions.dtype)
        w = xp.zeros_like(u)
    bins = xp.clip(xp.floor(u * grid_arr).astype(xp.int32), 0, grid_arr - 1)
    return w, bins


def _host_max_occupancy(positions, cell, grid, origin, length) -> int:
    """Largest number of atoms in one bin (positions (N, 3) Å binned as :func:`_fractional` does)."""
    _, bins = _fractional(positions, cell, origin, length, grid)
    flat = (bins[:, 0] * grid[1] + bins[:, 1]) * grid[2] + bins[:, 2]
    return int(np.bincount(flat, minlength=1).max())


def _empty(n, capacity, cell_capacity, grid, origin, length, radius, skin, periodic, dtype) -> NeighborList:
    """A list with the given static sizes whose reference positions force a rebuild."""
    return NeighborList(
        dst_idx=jnp.full((capacity,), n - 1, dtype=jnp.int32),
        src_idx=jnp.full((capacity,), n - 1, dtype=jnp.int32),
        mask=jnp.zeros((capacity,), dtype=bool),
        shifts=jnp.zeros((capacity, 3), dtype=dtype) if periodic else None,
        reference_positions=jnp.full((n, 3), jnp.inf, dtype=dtype),
        did_overflow=jnp.zeros((), dtype=bool),
        num_pairs=jnp.zeros((), dtype=jnp.int32),
        max_occupancy=jnp.zeros((), dtype=jnp.int32),
        grid_origin=jnp.asarray(origin, dtype=dtype),
        grid_length=jnp.asarray(length, dtype=dtype),
        capacity=capacity,
        cell_capacity=cell_capacity,
        grid=tuple(int(g) for g in grid),
        cutoff=radius,
        skin=float(skin),
    )


def _build(positions, nbrs: NeighborList, radius, cell, stencil, method) -> NeighborList:
    """Rebuild ``nbrs`` for ``positions`` (N, 3) Å with its static sizes (traced under jit).

    Candidates are (i, s, c): atom i, stencil offset s, slot c of the bin reached
    from i's bin by s. The boolean candidate mask (N, S, C) is computed one offset at
    a time, then compacted to the K pair slots in (i, s, c) order; the overflow
    flag records a full pair buffer, a bin with more atoms than slots, or a NaN/Inf
    position (binned nowhere in particular, so the pairs mean nothing).
    """
    n = positions.shape[0]
    grid = nbrs.grid
    num_bins = grid[0] * grid[1] * grid[2]
    slots = nbrs.cell_capacity
    periodic = cell is not None
    if method == "dense":
        w, bins = _fractional(positions, cell, None, None, grid) if periodic else (
            jnp.zeros_like(positions), jnp.zeros((n, 3), dtype=jnp.int32))
    else:
        w, bins = _fractional(positions, cell, nbrs.grid_origin, nbrs.grid_length, grid)
    flat_bin = (bins[:, 0] * grid[1] + bins[:, 1]) * grid[2] + bins[:, 2]

    order = jnp.argsort(flat_bin)
    sorted_bins = flat_bin[order]
    counts = jnp.zeros((num_bins,), dtype=jnp.int32).at[flat_bin].add(1)
    starts = jnp.cumsum(counts) - counts
    slot = jnp.arange(n, dtype=jnp.int32) - starts[sorted_bins]
    target = jnp.where(slot < slots, sorted_bins * slots + slot, num_bins * slots)
    table = jnp.full((num_bins * slots,), n, dtype=jnp.int32).at[target].set(order.astype(jnp.int32), mode="drop")
    table = table.reshape(num_bins, slots)
    max_occupancy = jnp.max(counts)

    grid_arr = jnp.asarray(grid, dtype=jnp.int32)
    cell_j = None if cell is None else jnp.asarray(cell, dtype=positions.dtype)
    atom_index = jnp.arange(n, dtype=jnp.int32)

    def neighbours(offset):
        """For one stencil offset (3,): bins' atoms (N, C), image L (N, 3) and validity (N,)."""
        reached = bins + offset
        if periodic:
            image = jnp.floor_divide(reached, grid_arr)
            reached = reached - image * grid_arr
            valid_bin = jnp.ones((n,), dtype=bool)
        else:
            image = jnp.zeros_like(reached)
            valid_bin = jnp.all((reached >= 0) & (reached < grid_arr), axis=-1)
            reached = jnp.clip(reached, 0, grid_arr - 1)
        reached_flat = (reached[:, 0] * grid[1] + reached[:, 1]) * grid[2] + reached[:, 2]
        return table[reached_flat], image, valid_bin

    def shift_of(image, w_dst, w_src):
        """Cartesian image offset (L + w_dst − w_src) · cell in Å."""
        return (image.astype(positions.dtype) + w_dst - w_src) @ cell_j

    def candidates_for(offset):
        """Mask (N, C): slot c of the bin at ``offset`` from i's bin holds a pair within radius."""
        src, image, valid_bin = neighbours(offset)
        real = (src < n) & valid_bin[:, None]
        src_safe = jnp.where(real, src, 0)
        vec = positions[src_safe] - positions[:, None, :]
        not_self = src != atom_index[:, None]
        if periodic:
            vec = vec + shift_of(image[:, None, :], w[:, None, :], w[src_safe])
            not_self = not_self | jnp.any(image != 0, axis=-1)[:, None]
        keep = real & not_self
        if radius is not None:
            keep = keep & (jnp.sum(vec * vec, axis=-1) < radius * radius)
        return keep

    candidates = jnp.swapaxes(jax.lax.map(candidates_for, jnp.asarray(stencil)), 0, 1).reshape(-1)

    num_pairs = jnp.sum(candidates, dtype=jnp.int32)
    (flat,) = jnp.nonzero(candidates, size=nbrs.capacity, fill_value=0)
    mask = jnp.arange(nbrs.capacity) < num_pairs
    num_offsets = stencil.shape[0]
    dst = flat // (num_offsets * slots)
    which = (flat // slots) % num_offsets
    offsets = jnp.asarray(stencil)[which]
    reached = bins[dst] + offsets
    if periodic:
        image = jnp.floor_divide(reached, grid_arr)
        reached = reached - image * grid_arr
    else:
        reached = jnp.clip(reached, 0, grid_arr - 1)
    reached_flat = (reached[:, 0] * grid[1] + reached[:, 1]) * grid[2] + reached[:, 2]
    src = table[reached_flat, flat % slots]
    dst = jnp.where(mask, dst, n - 1).astype(jnp.int32)
    src = jnp.where(mask, src, n - 1).astype(jnp.int32)
    shifts = None
    if periodic:
        shifts = jnp.where(mask[:, None], shift_of(image, w[dst], w[src]), 0.0)

    overflow = (num_pairs > nbrs.capacity) | (max_occupancy > slots) | ~jnp.all(jnp.isfinite(positions))
    return nbrs.replace(
        dst_idx=dst,
        src_idx=src,
        mask=mask,
        shifts=shifts,
        reference_positions=positions,
        did_overflow=nbrs.did_overflow | overflow,
        num_pairs=num_pairs,
        max_occupancy=max_occupancy.astype(jnp.int32),
    )
