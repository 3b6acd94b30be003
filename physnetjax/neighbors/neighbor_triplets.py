"""Fixed-capacity triplet lists built inside ``jax.jit`` from an in-jit pair list (MD with ATM).

The in-jit counterpart of :mod:`physnetjax.neighbors.triplets`, in the jax-md pattern of
:mod:`physnetjax.neighbors.neighbor_list`::

    triplets = allocate_triplets(pair_list, positions, radius)       # host: sizes the buffer
    triplets = build_triplets(pair_list, positions, triplets)        # pure, jit-able
    check_triplet_overflow(triplets)                                 # host: raise if too small

A triplet is a pair of pair-list indices (p, q), p < q, of two real pairs sharing their
first atom i (p: i → j, q: i → k); each triangle appears once per vertex (the ATM sum
carries ⅓). Only pairs shorter than ``radius`` take part. Built with ``radius`` =
three-body cutoff + skin from a pair list that is rebuilt whenever an atom has moved
more than skin/2, the list holds every triangle whose sides are all shorter than the
cutoff until that rebuild (a distance changes by less than the skin), so it is rebuilt
together with the pair list and is exact in between.

Capacity is fixed at allocation (``capacity_multiplier`` × the triplets then). Inside
``jit`` a build that needs more slots records a sticky ``did_overflow`` flag and
``num_triplets`` (the number needed); its list is incomplete and must not be used.
Nothing is ever dropped silently: check the flag outside ``jit``
(:func:`check_triplet_overflow` raises, naming the capacity and how to raise it).

Construction (O(K log K + T log K) for K pair slots, T triplet slots): the pairs are
sorted by first atom (masked pairs last, stably, so original order is kept within a
group); the pair at sorted position s of a group starting at g has s − g partners
before it; an exclusive cumulative sum of these counts gives every pair its block of
triplet slots, and slot t finds its pair by a binary search.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax import compilation
from physnetjax.neighbors.neighbor_list import NeighborList, NeighborListOverflowError, needs_update
from physnetjax.validation import check_range


@flax.struct.dataclass
class TripletList:
    """A fixed-capacity triplet list over the slots of one :class:`NeighborList`.

    Fields (T = ``capacity``):
      triplets: (T, 2) int32 pair-slot indices (p, q); padded slots point at pair K − 1 twice.
      mask: (T,) bool, True for real triplets.
      num_triplets: () int32 triplets found at the last build (may exceed T on overflow).
      did_overflow: () bool, True once any build did not fit (sticky).
    Static: capacity T; radius: pairs shorter than this (Å) take part.
    """

    triplets: jax.Array
    mask: jax.Array
    num_triplets: jax.Array
    did_overflow: jax.Array
    capacity: int = flax.struct.field(pytree_node=False, default=0)
    radius: float = flax.struct.field(pytree_node=False, default=0.0)


def _short_pairs(pairs: NeighborList, positions, radius: float):
    """(K,) bool: real pairs of ``pairs`` with |r_src − r_dst + shift| < radius at ``positions``."""
    vectors = positions[pairs.src_idx] - positions[pairs.dst_idx]
    if pairs.shifts is not None:
        vectors = vectors + pairs.shifts.astype(vectors.dtype)
    return pairs.mask & (jnp.sum(vectors * vectors, axis=-1) < radius * radius)


def build_triplets(pairs: NeighborList, positions, triplets: TripletList) -> TripletList:
    """Rebuild ``triplets`` for the pair list ``pairs`` at ``positions`` (Å); jit-able.

    Keeps the static capacity and radius of ``triplets``; sets ``did_overflow`` (sticky)
    when more than ``capacity`` triplets exist. Not differentiable (indices only).
    """
    num_slots = pairs.dst_idx.shape[0]
    keep = _short_pairs(pairs, positions, triplets.radius)
    key = jnp.where(keep, pairs.dst_idx, jnp.iinfo(jnp.int32).max)
    order = jnp.argsort(key, stable=True).astype(jnp.int32)
    sorted_key = key[order]
    position = jnp.arange(num_slots, dtype=jnp.int32)
    group_start = jnp.searchsorted(sorted_key, sorted_key, side="left").astype(jnp.int32)
    partners = jnp.where(keep[order], position - group_start, 0)
    last = jnp.cumsum(partners)
    first = last - partners
    needed = last[-1]
    # int32 sums wrap beyond 2³¹ triplets; the float sum flags such a list as overflowed too.
    too_many = (needed > triplets.capacity) | (jnp.sum(partners.astype(jnp.float32)) > 2.0 ** 30)

    slot = jnp.arange(triplets.capacity, dtype=jnp.int32)
    real = slot < jnp.minimum(needed, triplets.capacity)
    second = jnp.clip(jnp.searchsorted(last, slot, side="right"), 0, num_slots - 1).astype(jnp.int32)
    partner = jnp.clip(group_start[second] + slot - first[second], 0, num_slots - 1)
    pad = num_slots - 1
    out = jnp.stack([jnp.where(real, order[partner], pad), jnp.where(real, order[second], pad)], axis=1)
    return triplets.replace(triplets=out, mask=real, num_triplets=needed,
                            did_overflow=triplets.did_overflow | too_many)


def update_triplets(pairs: NeighborList, updated_pairs: NeighborList, positions,
                    triplets: TripletList) -> TripletList:
    """``triplets`` after the pair list ``pairs`` was updated to ``updated_pairs`` at ``positions``: rebuilt exactly
    when the pair list was (the triplets index its slots), else kept; jit-able."""
    return jax.lax.cond(needs_update(positions, pairs), lambda: build_triplets(updated_pairs, positions, triplets),
                        lambda: triplets)


def count_short_triplets(pairs: NeighborList, positions, radius: float) -> int:
    """Σ_i n_i (n_i − 1) / 2 over the real pairs shorter than ``radius`` (host, float64)."""
    positions = np.asarray(positions, dtype=np.float64)
    dst, src, mask = (np.asarray(a) for a in (pairs.dst_idx, pairs.src_idx, pairs.mask))
    vectors = positions[src] - positions[dst]
    if pairs.shifts is not None:
        vectors = vectors + np.asarray(pairs.shifts, dtype=np.float64)
    keep = mask & (np.sum(vectors * vectors, axis=-1) < radius * radius)
    counts = np.bincount(dst[keep])
    return int(np.sum(counts * (counts - 1) // 2))


def allocate_triplets(pairs: NeighborList, positions, radius: float,
                      capacity_multiplier: float = 1.25) -> TripletList:
    """A :class:`TripletList` for ``pairs`` at ``positions``, capacity = ⌈multiplier × needed⌉ (host).

    Args:
      pairs: an up-to-date, not overflowed pair list.
      positions: (N, 3) Å.
      radius: pairs shorter than this take part, Å (three-body cutoff + skin; ``inf`` for
        a list of all pairs, which is never rebuilt).
      capacity_multiplier: head-room (≥ 1) for later builds.

    Raises:
      PhysNetInputError: a multiplier below 1 or not finite, a radius that is not positive (or NaN).
      NeighborListOverflowError: when even the fresh build does not fit (cannot happen
        unless float32 rounding puts a pair the host missed inside the radius; it is
        retried once with the count the device found).
      OutOfMemoryError: the list and its build do not fit the device's free memory.
    """
    capacity_multiplier = check_range("capacity_multiplier", capacity_multiplier, "", 1.0)
    radius = check_range("radius", radius, "Å", 0.0, strict=True, finite=False)
    needed = count_short_triplets(pairs, positions, radius)
    positions = jnp.asarray(positions)
    for _ in range(2):
        capacity = max(1, math.ceil(needed * capacity_multiplier))
        triplets = _fresh_triplets(pairs, positions, capacity, float(radius))
        if not bool(triplets.did_overflow):
            return triplets
        needed = int(triplets.num_triplets)
    return check_triplet_overflow(triplets)


def _build_fresh_triplets(pairs: NeighborList, positions, capacity: int, radius: float) -> TripletList:
    """:func:`build_triplets` into a new list of ``capacity`` slots, allocated by the compiled program itself."""
    empty = TripletList(
        triplets=jnp.zeros((capacity, 2), jnp.int32), mask=jnp.zeros((capacity,), bool),
        num_triplets=jnp.zeros((), jnp.int32), did_overflow=jnp.zeros((), bool), capacity=capacity, radius=radius,
    )
    return build_triplets(pairs, positions, empty)


_fresh_triplets = compilation.jit_with_xla_defaults(_build_fresh_triplets, static_argnums=(2, 3))
"""Compiled once per capacity and checked, list included, against the device's free memory before it runs
(OutOfMemoryError rather than the process killed)."""


def check_triplet_overflow(triplets: TripletList) -> TripletList:
    """Return ``triplets`` unchanged, or raise :class:`NeighborListOverflowError` (host only)."""
    if bool(triplets.did_overflow):
        raise NeighborListOverflowError(
            f"triplet list overflowed: {int(triplets.num_triplets)} triplets (pairs shorter than "
            f"{triplets.radius:g} Å sharing an atom) for capacity {triplets.capacity}; its triangles are "
            "incomplete. Re-allocate it with a larger capacity: allocate(positions, capacity_multiplier=...) "
            "of the MD potential (physnet_potential(..., capacity_multiplier=...) sets the initial head-room; "
            "the MD driver grows it by itself)"
        )
    return triplets
