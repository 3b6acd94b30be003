"""A PhysNet model as the force-and-stress function of a periodic cell that changes (NPT).

The neighbor lists of :func:`physnetjax.neighbors.neighbor_list` hold their cell fixed.
Here they live in a *reference cell* h_0: every atom is mapped to the reference
cell with the same fractional coordinates, r_ref = r h⁻¹ h_0, the lists are built and
updated on r_ref, and each stored image shift n·h_0 becomes n·h for the current
cell h. A pair at distance d in the current cell is d_ref ≤ ‖h⁻¹ h_0‖₂ d apart in the
reference cell, so lists of radius (1 + t)·cutoff + skin are complete as long as
‖h⁻¹ h_0‖₂ ≤ 1 + t (t = ``strain_tolerance``; only compression can break it). When the
cell was compressed further, the neighbor state reports ``did_overflow``; the MD
driver then discards the chunk and rebuilds the potential with the current cell
as reference. Like :func:`~physnetjax.md.potential.physnet_potential`, the outputs are NaN
while ``did_overflow`` is set. The three-body dispersion term's triplets (pairs of the pair-term list
sharing an atom) are built on the same reference positions, of pairs shorter than
(1 + t)·three-body cutoff + skin there, and rebuilt exactly when that list is.

:func:`physnet_cell_potential` returns ``allocate(positions, cell)`` (host),
``update(positions, cell, nbrs)`` and ``energy_force_stress(positions, cell, nbrs)``
(jit-able), the latter giving E (eV), F (N, 3) eV/Å and the model's stress σ (3, 3)
eV/Å³ (σ = (1/V) ∂E/∂ε, positive under tension).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.md.potential import DENSE_MAX_ATOMS, NeighborPair, nan_where_overflowed, refuse_overlaps
from physnetjax.neighbors import apply_batch, batch_from_neighbors, model_triplet_cutoff, neighbor_list
from physnetjax.neighbors.batch import periodic_pair_cutoff
from physnetjax.neighbors.neighbor_triplets import allocate_triplets, update_triplets


class CellPotential(NamedTuple):
    """Neighbor-list and force functions of a model on one periodic system with a variable cell.

    Fields:
      allocate: ``allocate(positions, cell, capacity_multiplier=...) -> nbrs`` (host).
      update: ``update(positions, cell, nbrs) -> nbrs``, jit-able.
      energy_force_stress: ``(positions, cell, nbrs) -> (E () eV, F (N, 3) eV/Å, σ (3, 3) eV/Å³)``.
      reference_cell: (3, 3) Å, the cell h_0 the lists live in.
      outputs: ``outputs(positions, cell, nbrs) -> dict``, the full model output of the same batch.
    """

    allocate: Callable[..., Any]
    update: Callable[[jax.Array, jax.Array, Any], Any]
    energy_force_stress: Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, jax.Array, jax.Array]]
    reference_cell: np.ndarray
    outputs: Callable[[jax.Array, jax.Array, Any], dict]


@flax.struct.dataclass
class CellNeighbors(NeighborPair):
    """The lists of :class:`~physnetjax.md.potential.NeighborPair`, all in the reference cell, and the sticky
    over-strain flag (set when the cell was compressed beyond the lists' strain tolerance)."""

    over_strained: jax.Array = False

    @property
    def did_overflow(self):
        return jnp.logical_or(super().did_overflow, self.over_strained)


def physnet_cell_potential(
    model,
    params,
    atomic_numbers,
    reference_cell,
    *,
    total_charge: float = 0.0,
    skin: float = 0.5,
    capacity_multiplier: float = 1.25,
    strain_tolerance: float = 0.05,
) -> CellPotential:
    """Wrap ``model``/``params`` as the force-and-stress function of a periodic cell (module docstring).

    Args:
      model: a :class:`physnetjax.PhysNet` whose pair terms have a finite reach.
      params: its variables, already in the compute dtype.
      atomic_numbers: (N,) ints.
      reference_cell: (3, 3) Å cell vectors as rows, h_0.
      total_charge: e.  skin: Å.  capacity_multiplier: ≥ 1.
      strain_tolerance: t > 0, the linear compression relative to h_0 the lists absorb.

    Raises:
      ValueError: a model whose pair terms need all pairs, a bad cell or tolerance.
    """
    if not strain_tolerance > 0:
        raise ValueError(f"strain_tolerance must be > 0, received {strain_tolerance}")
    pair_cutoff = periodic_pair_cutoff(model)
    z = jnp.asarray(np.asarray(atomic_numbers), jnp.int32)
    method = "dense" if z.shape[0] <= DENSE_MAX_ATOMS else "cell"
    h0 = np.asarray(reference_cell, np.float64)
    separate = pair_cutoff > model.cutoff
    stretch = 1.0 + strain_tolerance
    three_body_cutoff = model_triplet_cutoff(model)

    def builders(multiplier):
        edges = neighbor_list(model.cutoff * stretch, skin=skin, method=method, cell=h0,
                              capacity_multiplier=multiplier)
        pairs = neighbor_list(pair_cutoff * stretch, skin=skin, method=method, cell=h0,
                              capacity_multiplier=multiplier) if separate else None
        return edges, pairs

    edges_fns, pairs_fns = builders(capacity_multiplier)

    def to_reference(positions, cell):
        return positions @ jnp.linalg.solve(cell, jnp.asarray(h0, positions.dtype))

    def over_strained(cell):
        deformation = jnp.linalg.solve(cell, jnp.asarray(h0, cell.dtype))
        return jnp.linalg.norm(deformation, ord=2) > stretch

    def allocate(positions, cell, capacity_multiplier: float = capacity_multiplier):
        """Neighbor state at ``positions`` (N, 3) Å in ``cell`` (3, 3) Å (host); overlapping atoms (images
        included) are refused by name, as :func:`~physnetjax.md.potential.physnet_potential` refuses them."""
        positions = jnp.asarray(positions)
        cell = jnp.asarray(cell, positions.dtype)
        edge_fns, pair_fns = builders(capacity_multiplier)
        reference = to_reference(positions, cell)
        nbrs = CellNeighbors(edges=edge_fns.allocate(reference),
                             pairs=None if pair_fns is None else pair_fns.allocate(reference),
                             over_strained=over_strained(cell))
        mask = np.asarray(nbrs.edges.mask)
        refuse_overlaps(positions, np.asarray(nbrs.edges.dst_idx)[mask], np.asarray(nbrs.edges.src_idx)[mask],
                        np.asarray(current_shifts(nbrs.edges, cell).shifts)[mask])
        if three_body_cutoff is None:
            return nbrs
        triplets = allocate_triplets(nbrs.term_pairs, reference, three_body_cutoff * stretch + skin,
                                     capacity_multiplier)
        return nbrs.replace(triplets=triplets)

    def update(positions, cell, nbrs: CellNeighbors) -> CellNeighbors:
        reference = to_reference(positions, cell)
        updated = CellNeighbors(
            edges=edges_fns.update(reference, nbrs.edges),
            pairs=None if pairs_fns is None else pairs_fns.update(reference, nbrs.pairs),
            over_strained=jnp.logical_or(nbrs.over_strained, over_strained(cell)),
        )
        if nbrs.triplets is None:
            return updated
        return updated.replace(triplets=update_triplets(nbrs.term_pairs, updated.term_pairs, reference,
                                                        nbrs.triplets))

    h0_inverse = np.linalg.inv(h0)

    def current_shifts(lst, cell):
        """Image shifts n·h_0 → n·h (a product with the constant h_0⁻¹: a solve per call is ~40× slower on CPU)."""
        fractional = lst.shifts.astype(cell.dtype) @ jnp.asarray(h0_inverse, cell.dtype)
        return lst.replace(shifts=fractional @ cell)

    def outputs(positions, cell, nbrs: CellNeighbors):
        cell = jnp.asarray(cell, positions.dtype)
        pairs = None if nbrs.pairs is None else current_shifts(nbrs.pairs, cell)
        batch = batch_from_neighbors(z, positions, current_shifts(nbrs.edges, cell), pair_nbrs=pairs, cell=cell,
                                     total_charge=total_charge, triplets=nbrs.triplets)
        return nan_where_overflowed(apply_batch(model, params, batch), nbrs)

    def energy_force_stress(positions, cell, nbrs: CellNeighbors):
        out = outputs(positions, cell, nbrs)
        return out["energy"][0], out["forces"], out["stress"][0]

    return CellPotential(allocate=allocate, update=update, energy_force_stress=energy_force_stress,
                         reference_cell=h0, outputs=outputs)

