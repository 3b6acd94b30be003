"""A PhysNet model as an MD force function with a neighbor list that updates inside jit.

:func:`physnet_potential` returns a :class:`Potential`: ``allocate(positions)`` (host)
builds the neighbor state, ``update(positions, nbrs)`` refreshes it inside jit and
``energy_force(positions, nbrs) -> (E eV, F (N, 3) eV/Å)`` evaluates the model. The
neighbor state carries ``did_overflow``; the driver checks it after every jitted
chunk and re-allocates with more capacity.

Neighbor lists are those of :func:`physnetjax.neighbors.neighbor_list` (fixed
capacity, rebuilt inside jit when an atom moved more than skin/2): ``"dense"``
(O(N²), the default up to :data:`DENSE_MAX_ATOMS` atoms) or ``"cell"`` (O(N)). A
second list serves the pair terms when they reach beyond the message-passing
cutoff (all pairs, for bare Coulomb without ``coulomb_lr_cutoff``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.neighbors import apply_batch, batch_from_neighbors, model_pair_cutoff, neighbor_list

DENSE_MAX_ATOMS = 256
"""Largest system for which ``method=None`` picks the O(N²) ``"dense"`` search."""


class Potential(NamedTuple):
    """Neighbor-list functions and the force function of a model on one system.

    Fields:
      allocate: ``allocate(positions) -> nbrs`` on the host (``capacity_multiplier``
        as keyword for growing after an overflow).
      update: ``update(positions, nbrs) -> nbrs``, jit-able.
      energy_force: ``energy_force(positions, nbrs) -> (energy () eV, forces (N, 3) eV/Å)``.
      outputs: ``outputs(positions, nbrs) -> dict`` of the full model output (charges,
        dipoles, stress ...) for the same batch.
    """

    allocate: Callable[..., Any]
    update: Callable[[jax.Array, Any], Any]
    energy_force: Callable[[jax.Array, Any], tuple[jax.Array, jax.Array]]
    outputs: Callable[[jax.Array, Any], dict]


def physnet_potential(
    model,
    params,
    atomic_numbers,
    *,
    cell: Optional[np.ndarray] = None,
    total_charge: float = 0.0,
    method: Optional[str] = None,
    skin: float = 0.5,
    capacity_multiplier: float = 1.25,
) -> Potential:
    """Wrap ``model`` with ``params`` as the force function of one system.

    Args:
      model: a :class:`physnetjax.PhysNet`.
      params: its variables ``{"params": ...}``, already in the compute dtype.
      atomic_numbers: (N,) ints.
      cell: (3, 3) cell vectors (rows) in Å for a fully periodic system, or None.
      total_charge: total charge Q in e.
      method: ``"dense"`` or ``"cell"``; None picks ``"dense"`` for systems of
        ≤ :data:`DENSE_MAX_ATOMS` atoms, else ``"cell"``.
      skin: neighbor-list skin in Å.
      capacity_multiplier: initial head-room of the pair capacity (≥ 1).

    Raises:
      ValueError: unknown method, or a periodic system whose pair terms need all
        pairs (charges without ``coulomb_lr_cutoff``).
    """
    z = jnp.asarray(np.asarray(atomic_numbers), jnp.int32)
    pair_cutoff = model_pair_cutoff(model)
    if method is None:
        method = "dense" if z.shape[0] <= DENSE_MAX_ATOMS else "cell"
    if method not in ("dense", "cell"):
        raise ValueError(f"method must be 'dense' or 'cell', received {method!r}")
    if cell is not None and pair_cutoff is None:
        raise ValueError(
            "a periodic system needs a finite reach of the pair terms; this model has charges "
            "without coulomb_lr_cutoff"
        )
    cell_array = None if cell is None else jnp.asarray(cell)
    separate = pair_cutoff is None or pair_cutoff > model.cutoff

    def builders(multiplier):
        edges = neighbor_list(model.cutoff, skin=skin, method=method, cell=cell_array,
                              capacity_multiplier=multiplier)
        if not separate:
            return edges, None
        pair_method = "dense" if pair_cutoff is None else method
        return edges, neighbor_list(pair_cutoff, skin=skin, method=pair_method, cell=cell_array,
                                    capacity_multiplier=multiplier)

    edges, pairs = builders(capacity_multiplier)

    def allocate(positions, capacity_multiplier: float = capacity_multiplier):
        """Neighbor state for ``positions`` (host); pass a larger multiplier after an overflow."""
        edge_fns, pair_fns = builders(capacity_multiplier)
        return NeighborPair(edge_fns.allocate(positions), None if pair_fns is None else pair_fns.allocate(positions))

    def update(positions, nbrs):
        return NeighborPair(edges.update(positions, nbrs.edges),
                            None if pairs is None else pairs.update(positions, nbrs.pairs))

    def to_batch(positions, nbrs):
        return batch_from_neighbors(z, positions, nbrs.edges, pair_nbrs=nbrs.pairs, cell=cell_array,
                                    total_charge=total_charge)

    def outputs(positions, nbrs):
        return apply_batch(model, params, to_batch(positions, nbrs))

    def energy_force(positions, nbrs):
        out = outputs(positions, nbrs)
        return out["energy"][0], out["forces"]

    return Potential(allocate=allocate, update=update, energy_force=energy_force, outputs=outputs)


@flax.struct.dataclass
class NeighborPair:
    """Edge list and optional long-range pair list; overflow if either overflowed."""

    edges: Any
    pairs: Any = None

    @property
    def did_overflow(self):
        flag = self.edges.did_overflow
        return flag if self.pairs is None else jnp.logical_or(flag, self.pairs.did_overflow)
