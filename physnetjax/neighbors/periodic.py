"""Host-side neighbor lists for periodic cells (vesin), packed into padded batches.

Convention (as in :class:`physnetjax.neighbors.Batch`): a directed edge i ← j with
integer image n = (n_a, n_b, n_c) has the vector r_j − r_i + n · cell, and its
``shift`` is n · cell in Å (cell vectors as rows). All images within the cutoff
are listed, so cells narrower than twice the cutoff (where an atom meets several
images of a neighbour, or images of itself) are handled exactly.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import vesin
from ase.geometry import complete_cell

from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors.batch import Batch
from physnetjax.neighbors.molecules import assemble_batch
from physnetjax.neighbors.neighbor_list import perpendicular_widths
from physnetjax.validation import (check_batch_charges, check_batch_overlaps, check_batch_structures, check_cell,
                                   check_positions, check_range)


def lattice_images(positions, cell, pbc=(True, True, True)) -> np.ndarray:
    """(n, 3) whole numbers: for each atom m_ia = floor(s_ia) over the periodic directions a, 0 elsewhere
    (fractional coordinates s_i = r_i · cell⁻¹, the non-periodic rows completed as ASE does), so that
    r_i − m_i · cell lies in the cell.

    Args:
      positions: (n, 3) Å.  cell: (3, 3) Å, vectors as rows.  pbc: (3,) bools, the periodic directions.
    """
    full = complete_cell(np.asarray(cell, dtype=np.float64))
    fractional = np.linalg.solve(full.T, np.asarray(positions, dtype=np.float64).T).T
    return np.where(np.asarray(pbc, dtype=bool), np.floor(fractional), 0.0)


def lattice_translations(positions, cell, pbc=(True, True, True)) -> np.ndarray:
    """(n, 3) Å: for each atom the lattice vector t_i = Σ_a m_ia a_a (:func:`lattice_images`), so r_i − t_i lies in
    the cell. Energy, forces and stress do not depend on which image an atom is given at; subtracting t_i before a
    float32 cast keeps an unwrapped trajectory's coordinates (drifted 1000 Å: 6e-5 Å float32 steps) as precise
    as wrapped ones.

    Args:
      positions: (n, 3) Å.  cell: (3, 3) Å, vectors as rows.  pbc: (3,) bools, the periodic directions.
    """
    return lattice_images(positions, cell, pbc) @ complete_cell(np.asarray(cell, dtype=np.float64))


def wrapped_positions(positions, cell) -> np.ndarray:
    """(n, 3) Å: ``positions`` (n, 3) Å each moved by a lattice vector into the ``cell`` (3, 3) Å, periodic along
    x, y and z: fractional coordinates in [0, 1) (:func:`lattice_translations`). Moved twice: an atom a rounding
    error outside a face (fraction −1e-17) lands on the opposite face (fraction 1 after rounding) in the first move
    and at 0 in the second, so :func:`lattice_images` of the result is 0 for every atom."""
    once = np.asarray(positions, dtype=np.float64) - lattice_translations(positions, cell)
    return once - lattice_translations(once, cell)


def periodic_pairs(positions, cell, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full directed list of all (i, j, image) with |r_j − r_i + n · cell| < cutoff.

    Computed by ``vesin`` (O(N) cell list) in float64; the pair (i, i, n = 0) is
    excluded, self-images (i, i, n ≠ 0) are included.

    Args:
      positions: (N, 3) Å (need not be wrapped into the cell), within ±MAX_ABS_COORDINATE Å
        (:data:`~physnetjax.validation.MAX_ABS_COORDINATE`: beyond it the fractional
        coordinates lose the digits that place an atom within the cutoff).
      cell: (3, 3) Å, cell vectors as rows.
      cutoff: Å, > 0.

    Returns:
      dst (P,) int32, src (P,) int32, shifts (P, 3) float64 Å = n · cell; sorted by
      dst, then src, then image.

    Raises:
      PhysNetInputError: positions that are not (N, 3), NaN/Inf or beyond ±MAX_ABS_COORDINATE
        (:func:`~physnetjax.validation.check_positions`), a bad cell (:func:`perpendicular_widths`),
        a cutoff that is not a finite number > 0.
    """
    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise PhysNetInputError(f"positions must have shape (n, 3), received {positions.shape}")
    positions = check_positions(positions, positions.shape[0]).astype(np.float64)
    perpendicular_widths(cell)
    cell = np.asarray(cell, dtype=np.float64)
    cutoff = check_range("cutoff", cutoff, "Å", 0.0, strict=True)
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, images = calculator.compute(positions, cell, periodic=True, quantities="ijS", copy=True)
    images = np.asarray(images, dtype=np.int64).reshape(-1, 3)
    order = np.lexsort((images[:, 2], images[:, 1], images[:, 0], j, i))
    i, j, images = i[order], j[order], images[order]
    return i.astype(np.int32), j.astype(np.int32), images.astype(np.float64) @ cell


def batch_periodic(
    atomic_numbers: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    cells: Sequence[np.ndarray],
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
    """Pack periodic cells into one padded :class:`Batch` with ``shifts`` and ``cells``.

    Args:
      atomic_numbers, positions, cells: per structure, (n_k,) ints, (n_k, 3) Å and
        (3, 3) Å cell vectors as rows.
      cutoff: message-passing cutoff in Å.
      total_charges: per-cell total charge in e (default 0).
      pair_cutoff: reach of the pair terms (:func:`model_pair_cutoff`); a separate
        pair list (with ``pair_shifts``) is built when it exceeds ``cutoff``.
      num_atoms, num_edges, num_pairs, num_molecules: padded sizes (default exact);
        too small raises ValueError (never truncates). Padded cell slots get the
        unit cell (volume 1, so the stress of an empty slot is a finite 0).
      three_body_cutoff, num_triplets: triplet list for the three-body dispersion
        term (see :func:`~physnetjax.neighbors.batch_molecules`).
      dtype: float dtype of positions, shifts, cells and charges.

    Each atom is moved into its cell by a lattice vector (:func:`lattice_translations`) before the cast to
    ``dtype``: the batch's positions are the wrapped ones.

    Raises:
      PhysNetInputError: a structure with atomic numbers outside the periodic table, NaN positions, shapes that do
        not match, overlapping atoms or a total charge that is not finite or beyond ±ΣZ
        (:func:`~physnetjax.validation.check_batch_structures`, :func:`~physnetjax.validation.check_batch_overlaps`,
        :func:`~physnetjax.validation.check_batch_charges`); a bad cell (:func:`~physnetjax.validation.check_cell`,
        naming the structure and the vector), a cutoff that is not a finite number > 0, a pair_cutoff that is not
        a finite number ≥ 0; mismatched lengths, or ``pair_cutoff=None`` (all pairs of an infinite crystal: use a
        Coulomb long-range cutoff).
    """
    if not len(atomic_numbers) == len(positions) == len(cells):
        raise PhysNetInputError(
            f"got {len(atomic_numbers)} atomic-number arrays, {len(positions)} position arrays "
            f"and {len(cells)} cells; they must match"
        )
    if len(atomic_numbers) == 0:
        raise PhysNetInputError("cannot build a batch of zero cells")
    if pair_cutoff is None:
        raise PhysNetInputError(
            "pair_cutoff=None asks for all pairs, which a periodic system does not have (the Coulomb "
            "sum is infinite without Ewald); give the model a coulomb_lr_cutoff"
        )
    cutoff = check_range("cutoff", cutoff, "Å", 0.0, strict=True)
    pair_cutoff = check_range("pair_cutoff", pair_cutoff, "Å", 0.0)
    separate_pairs = pair_cutoff > cutoff
    cells = [check_cell(cell, True, f"structure {k}")[0] for k, cell in enumerate(cells)]
    z_all, r_all, edge_parts, pair_parts = [], [], [], []
    offset = 0
    for z, r, cell in zip(*check_batch_structures(atomic_numbers, positions, "structure"), cells):
        r = np.asarray(r, np.float64)
        r = r - lattice_translations(r, cell)
        dst, src, shifts = periodic_pairs(r, cell, cutoff)
        edge_parts.append((dst + offset, src + offset, shifts))
        if separate_pairs:
            pdst, psrc, pshifts = periodic_pairs(r, cell, pair_cutoff)
            pair_parts.append((pdst + offset, psrc + offset, pshifts))
        z_all.append(z)
        r_all.append(r)
        offset += z.shape[0]

    def joined(parts):
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    edges = joined(edge_parts)
    check_batch_overlaps(r_all, *edges, cells=cells, what="structure")
    total_charges = check_batch_charges(total_charges, [z.sum() for z in z_all], "structure")
    return assemble_batch(
        z_all, r_all, edges, joined(pair_parts) if separate_pairs else None, total_charges, cells,
        num_atoms=num_atoms, num_edges=num_edges, num_pairs=num_pairs, num_molecules=num_molecules,
        three_body_cutoff=three_body_cutoff, num_triplets=num_triplets, dtype=dtype,
    )
