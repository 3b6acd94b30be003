"""Host-side (NumPy) neighbor lists for isolated molecules, packed into padded batches."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors.batch import Batch
from physnetjax.neighbors.checks import check_full_list
from physnetjax.neighbors.halves import halves_layout
from physnetjax.neighbors.triplets import padded_triplets
from physnetjax.validation import (check_batch_charges, check_batch_overlaps, check_batch_structures, check_positions,
                                   check_range)


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ≥ ``value`` (and ≥ ``multiple``)."""
    if multiple < 1:
        raise PhysNetInputError(f"multiple must be >= 1, received {multiple}")
    return max(multiple, -(-int(value) // multiple) * multiple)


def molecule_pairs(positions: np.ndarray, cutoff: Optional[float]) -> tuple[np.ndarray, np.ndarray]:
    """Full directed pair list (dst, src) of one molecule with |r_src − r_dst| < cutoff.

    Brute force O(n²) in float64; ``cutoff=None`` returns all n(n−1) ordered pairs.
    Pairs are sorted by dst, then src.

    Args:
      positions: (n, 3) Å.  cutoff: Å, > 0, or None (all pairs).

    Raises:
      PhysNetInputError: positions that are not (n, 3), NaN/Inf or beyond ±MAX_ABS_COORDINATE
        (:func:`~physnetjax.validation.check_positions`), or a cutoff that is not a number > 0 (NaN; +inf: all pairs).
    """
    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise PhysNetInputError(f"positions must have shape (n, 3), received {positions.shape}")
    positions = check_positions(positions, positions.shape[0]).astype(np.float64)
    if cutoff is not None:
        cutoff = check_range("cutoff", cutoff, "Å", 0.0, strict=True, finite=False)
    n = positions.shape[0]
    dst, src = np.nonzero(~np.eye(n, dtype=bool))
    if cutoff is not None and len(dst):
        d = np.linalg.norm(positions[src] - positions[dst], axis=-1)
        keep = d < cutoff
        dst, src = dst[keep], src[keep]
    return dst.astype(np.int32), src.astype(np.int32)


def batch_molecules(
    atomic_numbers: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    cutoff: float,
    *,
    total_charges: Optional[Sequence[float]] = None,
    pair_cutoff: Optional[float] = 0.0,
    num_atoms: Optional[int] = None,
    num_edges: Optional[int] = None,
    num_pairs: Optional[int] = None,
    num_molecules: Optional[int] = None,
    three_body_cutoff: Optional[float] = None,
    num_triplets: Optional[int] = None,
    dtype=np.float32,
) -> Batch:
    """Pack molecules into one padded :class:`Batch` with host-built neighbor lists.

    Args:
      atomic_numbers, positions: per molecule, (n_k,) ints and (n_k, 3) Å.
      cutoff: message-passing cutoff in Å.
      total_charges: per-molecule total charge in e (default 0).
      pair_cutoff: reach of the pair terms in Å (see :func:`model_pair_cutoff`): ``0.0``
        or ≤ ``cutoff`` → no separate pair list; ``None`` → all pairs; else pairs
        closer than ``pair_cutoff`` (a number ≥ 0; +inf: all pairs).
      num_atoms, num_edges, num_pairs, num_molecules: padded sizes (default: exact).
        A requested size smaller than needed raises ValueError (never truncates).
      three_body_cutoff: add a triplet list for the three-body dispersion term over
        pairs shorter than this (Å; ``inf`` → every pair-of-pairs of the list; see
        :func:`model_triplet_cutoff`); None → no triplets. num_triplets: its padded size.
      dtype: float dtype of positions and charges.

    Returns:
      A :class:`Batch` of NumPy arrays (pass through ``jax.device_put`` or use in jit).

    Raises:
      PhysNetInputError: a molecule with atomic numbers outside the periodic table, NaN positions, shapes that do
        not match, overlapping atoms or a total charge that is not finite or beyond ±ΣZ
        (:func:`~physnetjax.validation.check_batch_structures`, :func:`~physnetjax.validation.check_batch_overlaps`,
        :func:`~physnetjax.validation.check_batch_charges`); a cutoff that is not a number > 0 (+inf: all pairs), a
        pair_cutoff that is not None or a number ≥ 0; mismatched lengths, no molecule, padded sizes
        too small.
    """
    if len(atomic_numbers) != len(positions):
        raise PhysNetInputError(
            f"got {len(atomic_numbers)} atomic-number arrays but {len(positions)} position arrays"
        )
    if len(atomic_numbers) == 0:
        raise PhysNetInputError("cannot build a batch of zero molecules")
    cutoff = check_range("cutoff", cutoff, "Å", 0.0, strict=True, finite=False)
    if pair_cutoff is not None:
        pair_cutoff = check_range("pair_cutoff", pair_cutoff, "Å", 0.0, finite=False)
    separate_pairs = pair_cutoff is None or pair_cutoff > cutoff
    z_all, r_all, dst_all, src_all, pdst_all, psrc_all = [], [], [], [], [], []
    offset = 0
    for z, r in zip(*check_batch_structures(atomic_numbers, positions)):
        r = r.astype(np.float64)
        dst, src = molecule_pairs(r, cutoff)
        dst_all.append(dst + offset)
        src_all.append(src + offset)
        if separate_pairs:
            pdst, psrc = molecule_pairs(r, pair_cutoff)
            pdst_all.append(pdst + offset)
            psrc_all.append(psrc + offset)
        z_all.append(z)
        r_all.append(r)
        offset += z.shape[0]

    edges = (np.concatenate(dst_all), np.concatenate(src_all), None)
    check_batch_overlaps(r_all, *edges[:2])
    total_charges = check_batch_charges(total_charges, [z.sum() for z in z_all])
    pairs = (np.concatenate(pdst_all), np.concatenate(psrc_all), None) if separate_pairs else None
    return assemble_batch(
        z_all, r_all, edges, pairs, total_charges, None,
        num_atoms=num_atoms, num_edges=num_edges, num_pairs=num_pairs, num_molecules=num_molecules,
        three_body_cutoff=three_body_cutoff, num_triplets=num_triplets, dtype=dtype,
    )


def assemble_batch(
    atomic_numbers: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    edges: tuple,
    pairs: Optional[tuple],
    total_charges: Sequence[float],
    cells: Optional[Sequence[np.ndarray]],
    *,
    num_atoms: Optional[int] = None,
    num_edges: Optional[int] = None,
    num_pairs: Optional[int] = None,
    num_molecules: Optional[int] = None,
    three_body_cutoff: Optional[float] = None,
    num_triplets: Optional[int] = None,
    dtype=np.float32,
) -> Batch:
    """Pad per-structure arrays and already-offset edge/pair lists into a :class:`Batch`.

    Args:
      atomic_numbers, positions: per structure, (n_k,) ints and (n_k, 3) Å.
      edges: (dst, src, shifts) with global atom indices; shifts (P, 3) Å or None
        (non-periodic; a structure periodic in some directions has shifts but no cell).
      pairs: the same for the separate pair list, or None.
      total_charges: (K,) e.  cells: per structure (3, 3) Å, or None (no stress).
      num_atoms, num_edges, num_pairs, num_molecules: padded sizes (None → exact);
        too small raises ValueError (never truncates).
      three_body_cutoff, num_triplets: triplet list over the pair-term list (the
        separate pair list, else the edge list), see :func:`batch_molecules`.

    Without a triplet list and with an even number of pair slots, the separate pair
    list is stored in halves layout (:mod:`~physnetjax.neighbors.halves`; the batch's
    ``pair_halves`` is True), so the dispersion term slices one direction of each pair
    instead of selecting it inside ``jit``.

    Raises:
      ValueError: a size too small, or an edge or pair list that is not full (a pair
        listed without its reverse, :func:`~physnetjax.neighbors.checks.check_full_list`).
    """
    n_real, b_real = sum(len(z) for z in atomic_numbers), len(atomic_numbers)
    n_pad = _padded("num_atoms", n_real, num_atoms)
    b_pad = _padded("num_molecules", b_real, num_molecules)

    atomic = np.zeros(n_pad, dtype=np.int32)
    atomic[:n_real] = np.concatenate(atomic_numbers)
    pos = np.zeros((n_pad, 3), dtype=dtype)
    pos[:n_real] = np.concatenate(positions)
    seg = np.full(n_pad, b_pad - 1, dtype=np.int32)
    seg[:n_real] = np.repeat(np.arange(b_real, dtype=np.int32), [len(z) for z in atomic_numbers])
    charges = np.zeros(b_pad, dtype=dtype)
    charges[:b_real] = np.asarray(total_charges, dtype=np.float64)

    def padded_list(name, lst, requested):
        d, s, shifts = lst
        size = _padded(name, d.shape[0], requested)
        out_d = np.full(size, n_pad - 1, dtype=np.int32)
        out_s = np.full(size, n_pad - 1, dtype=np.int32)
        out_d[: d.shape[0]] = d
        out_s[: s.shape[0]] = s
        out_shift = None
        if shifts is not None:
            out_shift = np.zeros((size, 3), dtype=dtype)
            out_shift[: d.shape[0]] = shifts
        return out_d, out_s, np.arange(size) < d.shape[0], out_shift

    check_full_list(edges[0], edges[1], shifts=edges[2], name="edge list")
    if pairs is not None:
        check_full_list(pairs[0], pairs[1], shifts=pairs[2], name="pair list")
    dst_p, src_p, edge_mask, shifts_p = padded_list("num_edges", edges, num_edges)
    extra = {"shifts": shifts_p}
    if pairs is not None:
        pair_size = _padded("num_pairs", pairs[0].shape[0], num_pairs)
        if three_body_cutoff is None and pair_size % 2 == 0:
            pd, ps, pm, pshift = halves_layout(*pairs, pair_size, n_pad - 1, dtype)
            extra["pair_halves"] = True
        else:
            pd, ps, pm, pshift = padded_list("num_pairs", pairs, num_pairs)
        extra.update(pair_dst=pd, pair_src=ps, pair_mask=pm, pair_shifts=pshift)
    if three_body_cutoff is not None:
        d, s, mask, shift = (extra["pair_dst"], extra["pair_src"], extra["pair_mask"], extra["pair_shifts"]) \
            if pairs is not None else (dst_p, src_p, edge_mask, shifts_p)
        r64 = np.zeros((n_pad, 3))
        r64[:n_real] = np.concatenate(positions)
        vectors = r64[s] - r64[d] + (0.0 if shift is None else shift)
        extra["triplets"], extra["triplet_mask"] = padded_triplets(d, mask, vectors, three_body_cutoff, num_triplets)
    if cells is not None:
        cell_arr = np.tile(np.eye(3, dtype=dtype), (b_pad, 1, 1))
        cell_arr[:b_real] = np.asarray(cells, dtype=np.float64).reshape(b_real, 3, 3)
        extra["cells"] = cell_arr
    return Batch(
        atomic_numbers=atomic,
        positions=pos,
        atom_segments=seg,
        atom_mask=np.arange(n_pad) < n_real,
        dst_idx=dst_p,
        src_idx=src_p,
        edge_mask=edge_mask,
        total_charges=charges,
        molecule_mask=np.arange(b_pad) < b_real,
        num_molecules=b_pad,
        **extra,
    )


def _padded(name: str, needed: int, requested: Optional[int]) -> int:
    if requested is None:
        return max(needed, 1)
    if requested < needed:
        raise PhysNetInputError(f"{name}={requested} is smaller than the {needed} required; refusing to truncate")
    return requested
