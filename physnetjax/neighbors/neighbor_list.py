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
pair buffer, or the occupancy of a cell-list bin); the pairs it then holds are
incomplete and must not be used. Check the flag outside ``jit``:
:meth:`NeighborListFns.safe_update` re-allocates (and logs it), and
:func:`check_overflow` raises :class:`NeighborListOverflowError`.

Search methods (identical results, different cost):

* ``"dense"``: every atom against every atom (and every periodic image in reach),
  O(N²) work, no bins, no occupancy limit. With ``cutoff=None`` it is the list of
  *all* N(N−1) pairs of an isolated molecule (bare Coulomb without a cutoff) and
  never needs rebuilding.
* ``"cell"``: atoms are binned into a grid of cells at least ``cutoff + skin`` wide,
  and each atom is compared with the atoms of its own and the neighbouring bins,
  O(N) work. In a periodic cell the grid lives in fractional coordinates, so
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
from physnetjax.validation import MIN_DISTANCE_ERROR, layer_spacings

logger = logging.getLogger(__name__)

METHODS = ("dense", "cell")


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
        logger.warning(
            "neighbor list overflowed (pairs %d > capacity %d or bin occupancy %d > %d); re-allocating",
            int(updated.num_pairs), updated.capacity, int(updated.max_occupancy), updated.cell_capacity,
        )
        return self.allocate(positions)


def needs_update(positions, nbrs: NeighborList) -> jax.Array:
    """True when some atom moved more than skin/2 since the last build.

    max_i |r_i − r_i^ref| > skin/2 (Å). A list that was never built has reference
    positions at infinity, so it always needs one; after that, lists of all pairs
    (``cutoff=None``) never need an update. Works inside ``jit``; returns a () bool.
    """
    if nbrs.cutoff is None:
        return jnp.any(~jnp.isfinite(nbrs.reference_positions))
    moved = jnp.sum((positions - nbrs.reference_positions) ** 2, axis=-1)
    return jnp.max(moved) > (0.5 * nbrs.skin) ** 2


def check_overflow(nbrs: NeighborList) -> NeighborList:
    """Return ``nbrs`` unchanged, or raise :class:`NeighborListOverflowError` (host only)."""
    if bool(nbrs.did_overflow):
        raise NeighborListOverflowError(
            f"neighbor list overflowed: {int(nbrs.num_pairs)} pairs for capacity {nbrs.capacity}, "
            f"largest bin holds {int(nbrs.max_occupancy)} atoms for {nbrs.cell_capacity} slots; "
            "re-allocate it (NeighborListFns.safe_update does) — its pairs are incomplete"
        )
    return nbrs


def perpendicular_widths(cell) -> np.ndarray:
    """Distances between opposite faces of a cell, w_a = V / |b × c| (and cyclic), in Å.

    These are the lattice-plane spacings of :func:`~physnetjax.validation.layer_spacings`.

    Args:
      cell: (3, 3) cell vectors as rows, Å.

    Raises:
      ValueError: if the cell is not (3, 3), not finite, singular, or so flat that a
        spacing is below :data:`~physnetjax.validation.MIN_DISTANCE_ERROR` (every atom
        would overlap its own periodic image, and the list would hold millions of pairs).
    """
    cell = np.asarray(cell, dtype=np.float64)
    if cell.shape != (3, 3) or not np.all(np.isfinite(cell)):
        raise ValueError(f"cell must be a finite (3, 3) array of row vectors, received {cell!r}")
    widths = layer_spacings(cell)
    if not (widths >= MIN_DISTANCE_ERROR).all():
        raise PhysNetInputError(
            f"cell is singular or nearly flat: lattice-plane spacing {widths.min():.3g} Å across cell vector "
            f"{int(np.argmin(widths))} (need >= {MIN_DISTANCE_ERROR} Å, else every atom overlaps its own "
            f"periodic image); cell = {cell.tolist()}")
    return widths


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
      ValueError: for an unknown method, a non-positive cutoff, a negative skin, a
        multiplier below 1, a bad cell, or ``cutoff=None`` with a cell or a cell list.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, received {method!r}")
    if cutoff is None and (method != "dense" or cell is not None):
        raise ValueError("cutoff=None (all pairs) needs method='dense' and no periodic cell")
    if cutoff is not None and not cutoff > 0:
        raise ValueError(f"cutoff must be larger than 0, received {cutoff}")
    if not skin >= 0:
        raise ValueError(f"skin must be >= 0, received {skin}")
    if not capacity_multiplier >= 1.0:
        raise ValueError(f"capacity_multiplier must be >= 1, received {capacity_multiplier}")
    list_radius = None if cutoff is None else float(cutoff) + float(skin)
    periodic = cell is not None
    if periodic:
        cell_np = np.asarray(cell, dtype=np.float64)
        widths = perpendicular_widths(cell_np)
        if method == "dense":
            grid = (1, 1, 1)
        else:
            grid = tuple(max(1, int(w // list_radius)) for w in widths)
        stencil = _stencil(grid, widths, list_radius)
    else:
        cell_np = None
        stencil = np.zeros((1, 3), dtype=np.int32) if method == "dense" else _stencil((3, 3, 3), None, None)

    def build(positions, nbrs: NeighborList) -> NeighborList:
        return _build(positions, nbrs, list_radius, cell_np, stencil, method)

    @jax.jit
    def update(positions, nbrs: NeighborList) -> NeighborList:
        return jax.lax.cond(needs_update(positions, nbrs), build, lambda _, old: old, positions, nbrs)

    def allocate(positions) -> NeighborList:
        positions_np = np.asarray(positions)
        if positions_np.ndim != 2 or positions_np.shape[1] != 3 or positions_np.shape[0] < 1:
            raise ValueError(f"positions must have shape (n, 3) with n >= 1, received {positions_np.shape}")
        if not np.all(np.isfinite(positions_np)):
            raise ValueError("positions contain NaN or Inf")
        n = positions_np.shape[0]
        dtype = positions_np.dtype if np.issubdtype(positions_np.dtype, np.floating) else np.float32
        positions = jnp.asarray(positions_np, dtype=dtype)
        if method == "dense":
            local_grid, origin, length, cell_capacity = (1, 1, 1), np.zeros(3), np.ones(3), n
        else:
            local_grid, origin, length = _grid_for(positions_np, cell_np, list_radius)
            occupancy = _host_max_occupancy(positions_np, cell_np, local_grid, origin, length)
            cell_capacity = min(n, math.ceil(occupancy * capacity_multiplier))
        if list_radius is None:
            needed, multiplier = n * (n - 1), 1.0
        else:
            needed, multiplier = _host_pair_count(positions_np, cell_np, list_radius), capacity_multiplier
        for _ in range(2):
            capacity = max(1, math.ceil(needed * multiplier))
            nbrs = update(positions, _empty(n, capacity, cell_capacity, local_grid, origin, length,
                                            list_radius, skin, periodic, positions.dtype))
            if not bool(nbrs.did_overflow):
                break
            needed = int(nbrs.num_pairs)  # float32 rounding put a pair the host missed inside the radius
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
      ValueError: when ``cell`` is given but a list was built without one, or the reverse.
    """
    positions = jnp.asarray(positions)
    periodic = cell is not None
    for name, lst in (("nbrs", nbrs), ("pair_nbrs", pair_nbrs)):
        if lst is not None and (lst.shifts is not None) != periodic:
            raise ValueError(
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


def _stencil(grid, widths, radius) -> np.ndarray:
    """Bin offsets (S, 3) to search: ±k_a per axis with k_a = ceil(radius · n_a / w_a).

    A bin is w_a/n_a thick, so two points closer than ``radius`` differ by at most
    k_a bins along axis a. Without a cell (bounding-box grid, bins ≥ radius) k = 1.
    Each offset gives a distinct (bin, image) pair, so no pair is found twice.
    """
    if widths is None:
        reach = (1, 1, 1)
    else:
        reach = tuple(max(1, math.ceil(radius * n / w - 1e-12)) for n, w in zip(grid, widths))
    axes = [np.arange(-k, k + 1) for k in reach]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.int32)


def _grid_for(positions: np.ndarray, cell, radius):
    """Bins per axis, and origin/lengths of the bounding-box grid (non-periodic)."""
    if cell is not None:
        widths = perpendicular_widths(cell)
        return tuple(max(1, int(w // radius)) for w in widths), np.zeros(3), np.ones(3)
    low = positions.min(axis=0) - 0.5 * radius
    length = positions.max(axis=0) + 0.5 * radius - low
    return tuple(max(1, int(ell // radius)) for ell in length), low, length


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
    """Rebuild ``nbrs`` for ``positions`` with its static sizes (traced under jit).

    Candidates are (i, s, c): atom i, stencil offset s, slot c of the bin reached
    from i's bin by s. The boolean candidate mask (N, S, C) is computed one offset at
    a time, then compacted to the K pair slots in (i, s, c) order; the overflow
    flag records a full pair buffer or a bin with more atoms than slots.
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

    overflow = (num_pairs > nbrs.capacity) | (max_occupancy > slots)
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
