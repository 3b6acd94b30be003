"""Host-side sanity checks of pair lists: full directed lists, and all pairs for bare Coulomb.

Every pair reduction in physnetjax sums a *full* directed list and multiplies by ½
(:func:`physnetjax.physics.pair_energy_per_molecule`), so a half list (i < j only)
silently halves every pair energy and breaks message passing; and bare Coulomb
(``charges=True``, ``coulomb_lr_cutoff=None``) is only right when the pair list holds
all pairs of each molecule. These checks catch both where arrays are concrete: the
host builders, the neighbor-list ``allocate`` and an un-jitted model call (the legacy
``EF.apply`` entry point). Inside ``jax.jit`` nothing can raise, so traced inputs are
skipped (:func:`is_traced`) and MD steps pay nothing.

:func:`physnetjax.validation.check_range` checks every builder's numeric arguments (cutoffs in Å, skin,
capacity multiplier): a NaN or non-positive cutoff gave a list without pairs, and a model without message
passing, with no message.

Cost: two sorts of P integer keys (each listed pair (i, j, image) as one int64), O(P log P) on the host.
"""

from __future__ import annotations

import jax
import numpy as np



def is_traced(*arrays) -> bool:
    """True when any argument is a JAX tracer (inside ``jit``/``grad``/``vmap``), where checks are skipped."""
    return any(isinstance(a, jax.core.Tracer) for a in arrays)


def _images(shifts, cells, cell_of_pair):
    """(P, 3) int64: the image offsets n = s · cell⁻¹ of shifts s (P, 3) Å, or without a cell s in units of 1e-4 Å
    (rounded)."""
    shifts = np.asarray(shifts, dtype=np.float64).reshape(-1, 3)
    if cells is None:
        return np.rint(shifts * 1e4).astype(np.int64)
    cells = np.asarray(cells, dtype=np.float64).reshape(-1, 3, 3)
    if cell_of_pair is None or len(cells) == 1:
        return np.rint(shifts @ np.linalg.inv(cells[0])).astype(np.int64)
    return np.rint(np.einsum("pi,pij->pj", shifts, np.linalg.inv(cells)[cell_of_pair])).astype(np.int64)


def _rows(first, second, images):
    """(P, 2) or (P, 5) int64 rows (i, j[, n])."""
    columns = [np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)]
    if images is not None:
        columns.extend(images.T)
    return np.stack(columns, axis=1)


def _same_rows(a, b) -> bool:
    """Whether the int64 rows of ``a`` and ``b`` (P, C) are the same multiset.

    Each row becomes one int64 key in the mixed radix of the columns' common ranges, and the sorted keys are
    compared; rows whose ranges do not fit 62 bits (never for real lists: 10⁵ atoms and images within ±10⁴ of the
    cell leave room) are compared by a lexicographic sort instead.
    """
    if a.shape != b.shape:
        return False
    if not len(a):
        return True
    low = np.minimum(a.min(axis=0), b.min(axis=0))
    span = np.maximum(a.max(axis=0), b.max(axis=0)) - low + 1
    if np.prod(span.astype(np.float64)) >= 2.0 ** 62:
        return np.array_equal(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])])
    weights = np.cumprod(np.concatenate([span[1:], [1]])[::-1])[::-1]
    return np.array_equal(np.sort((a - low) @ weights), np.sort((b - low) @ weights))


def check_full_list(dst_idx, src_idx, mask=None, shifts=None, *, cells=None, atom_segments=None,
                    name: str = "edge list") -> None:
    r"""Raise unless every listed pair (i ← j, shift s) has its reverse (j ← i, −s) listed as often.

    Args:
      dst_idx, src_idx: (P,) atom indices i and j of each directed pair.
      mask: (P,) bool, True for real pairs (None → all real); padded pairs are ignored.
      shifts: (P, 3) periodic image shifts in Å (None → non-periodic): compared as integer
        images s · cell⁻¹ when ``cells`` is given, else rounded to 1e-4 Å.
      cells: (3, 3) or (B, 3, 3) cell vectors as rows in Å, or None.
      atom_segments: (N,) cell of each atom when ``cells`` holds several (None → cell 0).
      name: what the list is, for the message.

    Raises:
      ValueError: naming a pair whose reverse is missing (e.g. a half list i < j).
    """
    dst, src = np.asarray(dst_idx).reshape(-1), np.asarray(src_idx).reshape(-1)
    keep = np.ones(dst.shape, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    images = None
    if shifts is not None:
        cell_of_pair = None if atom_segments is None else np.asarray(atom_segments)[dst[keep]]
        images = _images(np.asarray(shifts).reshape(-1, 3)[keep], cells, cell_of_pair)
    forward = _rows(dst[keep], src[keep], images)
    backward = _rows(src[keep], dst[keep], None if images is None else -images)
    if _same_rows(forward, backward):
        return
    present = {tuple(row) for row in forward.tolist()}
    unpaired = next((k for k, row in enumerate(backward.tolist()) if tuple(row) not in present), None)
    if unpaired is None:
        problem = "some pairs are listed more often than their reverse"
    else:
        i, j = int(dst[keep][unpaired]), int(src[keep][unpaired])
        problem = f"pair {i} <- {j} is listed but {j} <- {i} is not"
    raise ValueError(
        f"{name} is not a full directed list: {problem} ({int(keep.sum())} real pairs). physnetjax sums "
        "pair energies over both directions and multiplies by 1/2, so a half list (i < j) would halve "
        "them; list both directions"
    )


def check_all_pairs(pair_dst, pair_src, pair_mask, atom_segments, atom_mask, num_molecules: int) -> None:
    r"""Raise unless the pair list holds all n_b(n_b − 1) ordered pairs of real atoms of every molecule b.

    Needed for bare Coulomb (``charges=True``, ``coulomb_lr_cutoff=None``): the sum
    k_e Σ_{i<j} q_i q_j χ(r_ij) runs over *all* pairs, so a cutoff-limited list
    truncates it.

    Args:
      pair_dst, pair_src: (P,) directed pair list; pair_mask: (P,) bool or None.
      atom_segments: (N,) molecule of each atom; atom_mask: (N,) bool or None.
      num_molecules: number of molecule slots B.

    Raises:
      ValueError: naming the first molecule whose pairs are missing.
    """
    dst, src = np.asarray(pair_dst).reshape(-1), np.asarray(pair_src).reshape(-1)
    segments = np.asarray(atom_segments).reshape(-1)
    atoms = np.ones(segments.shape, bool) if atom_mask is None else np.asarray(atom_mask, bool).reshape(-1)
    keep = np.ones(dst.shape, bool) if pair_mask is None else np.asarray(pair_mask, bool).reshape(-1)
    keep = keep & atoms[dst] & atoms[src] & (dst != src) & (segments[dst] == segments[src])
    distinct = np.unique(dst[keep].astype(np.int64) * len(segments) + src[keep])
    listed = np.bincount(segments[distinct // len(segments)], minlength=num_molecules)
    n = np.bincount(segments[atoms], minlength=num_molecules)
    short = np.nonzero(listed < n * (n - 1))[0]
    if len(short):
        b = int(short[0])
        raise ValueError(
            f"bare Coulomb (charges=True, coulomb_lr_cutoff=None) sums over all pairs, but the pair list of "
            f"molecule {b} holds {int(listed[b])} of its {int(n[b] * (n[b] - 1))} ordered pairs "
            f"({int(n[b])} atoms); build the list with pair_cutoff=model_pair_cutoff(model) (all pairs) or "
            "give the model a coulomb_lr_cutoff"
        )
