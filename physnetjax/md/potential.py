"""A PhysNet model as an MD force function with a neighbor list that updates inside jit.

:func:`physnet_potential` returns a :class:`Potential`: ``allocate(positions)`` (host)
builds the neighbor state, ``update(positions, nbrs)`` refreshes it inside jit and
``energy_force(positions, nbrs) -> (E eV, F (N, 3) eV/Å)`` evaluates the model. The
neighbor state carries ``did_overflow``; the driver checks it after every jitted
chunk and re-allocates with more capacity.

Edge sets, chosen by ``method``:

* ``"all_pairs"`` (isolated systems): all N(N−1) ordered pairs, fixed when the
  potential is built. The indices are compile-time constants of the force
  function, so there is no list to update, nothing can overflow, and XLA
  specialises every gather and sum to them (an ethanol MD step is ~20 % faster
  than with a list that holds the same pairs). Pairs beyond the cutoff take part
  with a zero basis, so results equal those of a neighbor list. It also serves
  every pair term, bare Coulomb included.
* ``"dense"`` / ``"cell"``: the lists of :func:`physnetjax.neighbors.neighbor_list`
  (fixed capacity, rebuilt inside jit when an atom moved more than skin/2), O(N²)
  or O(N) search. A second list serves the pair terms when they reach beyond the
  message-passing cutoff (all pairs, for bare Coulomb without ``coulomb_lr_cutoff``).

With ``dispersion_three_body=True`` the ATM term needs triplets: the all-pairs set
carries every pair-of-pairs (fixed, like its pairs); with ``"dense"`` / ``"cell"`` a
:class:`~physnetjax.neighbors.neighbor_triplets.TripletList` over the pair-term list
(pairs shorter than the dispersion cutoff + skin) is rebuilt inside jit whenever that
list is, with a fixed capacity and its own overflow flag (the neighbor state's
``did_overflow`` includes it; :func:`check_neighbors` raises with the capacities).

The neighbor state's ``did_overflow`` marks lists whose pairs are incomplete: outside
``jit`` ``energy_force`` and ``outputs`` raise
:class:`~physnetjax.neighbors.NeighborListOverflowError` for it, inside ``jit`` they
return NaN for the energy, forces and every other float output (a caller that forgets
the check gets no finite wrong number). ``allocate`` refuses overlapping atoms (closer
than :data:`~physnetjax.validation.MIN_DISTANCE_ERROR`), whose energy is NaN.

``method=None`` picks ``"all_pairs"`` for an isolated system whose neighbor list
would need a buffer of at least N(N−1) slots anyway (molecules smaller than about
the cutoff), decided in ``allocate`` from the positions; otherwise ``"dense"`` up to
:data:`DENSE_MAX_ATOMS` atoms and ``"cell"`` beyond.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.neighbors import (
    apply_batch,
    batch_from_neighbors,
    model_pair_cutoff,
    model_triplet_cutoff,
    neighbor_list,
    one_system_batch,
    pair_triplets,
)
from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors.batch import periodic_pair_cutoff
from physnetjax.neighbors.checks import is_traced
from physnetjax.neighbors.molecules import molecule_pairs
from physnetjax.neighbors.neighbor_list import check_overflow
from physnetjax.neighbors.neighbor_triplets import allocate_triplets, check_triplet_overflow, update_triplets
from physnetjax.validation import MIN_DISTANCE_ERROR, check_distances, check_positions

logger = logging.getLogger(__name__)

DENSE_MAX_ATOMS = 256
"""Largest system for which ``method=None`` picks the O(N²) ``"dense"`` search."""

METHODS = ("all_pairs", "dense", "cell")


class Potential(NamedTuple):
    """Neighbor-list functions and the force function of a model on one system.

    Fields:
      allocate: ``allocate(positions) -> nbrs`` on the host (``capacity_multiplier``
        as keyword for growing after an overflow).
      update: ``update(positions, nbrs) -> nbrs``, jit-able.
      energy_force: ``energy_force(positions, nbrs) -> (energy () eV, forces (N, 3) eV/Å)``.
      outputs: ``outputs(positions, nbrs, compute_forces=True) -> dict`` of the full
        model output (charges, dipoles, stress ...) for the same batch;
        ``compute_forces=False`` skips the forces (for outputs that are differentiated).
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
      method: ``"all_pairs"`` (isolated systems only), ``"dense"`` or ``"cell"``;
        None picks one (module docstring).
      skin: neighbor-list skin in Å.
      capacity_multiplier: initial head-room of the pair (and triplet) capacity (≥ 1).

    Raises:
      PhysNetInputError: unknown method, ``"all_pairs"`` with a cell; ``allocate``: positions
        that are not (N, 3) finite Å or overlapping atoms; ``energy_force``/``outputs``:
        positions that are not (N, 3).
      ValueError: a periodic system whose pair terms need all pairs (charges without
        ``coulomb_lr_cutoff``).
      NeighborListOverflowError: from ``energy_force``/``outputs`` outside ``jit`` with an
        overflowed neighbor state.
    """
    z = jnp.asarray(np.asarray(atomic_numbers), jnp.int32)
    num_atoms = z.shape[0]
    pair_cutoff = model_pair_cutoff(model)
    if method is not None and method not in METHODS:
        raise PhysNetInputError(f"method must be one of {METHODS} or None, received {method!r}")
    if method == "all_pairs" and cell is not None:
        raise PhysNetInputError("method='all_pairs' is for isolated systems; a periodic cell needs 'dense' or 'cell'")
    if method == "all_pairs" and num_atoms < 2:
        raise PhysNetInputError("method='all_pairs' needs at least 2 atoms")
    choose_all_pairs = method is None and cell is None and 2 <= num_atoms <= DENSE_MAX_ATOMS
    list_method = method if method in ("dense", "cell") else ("dense" if num_atoms <= DENSE_MAX_ATOMS else "cell")
    if cell is not None:
        periodic_pair_cutoff(model)
    cell_array = None if cell is None else jnp.asarray(cell)
    separate = pair_cutoff is None or pair_cutoff > model.cutoff

    def builders(multiplier):
        edges = neighbor_list(model.cutoff, skin=skin, method=list_method, cell=cell_array,
                              capacity_multiplier=multiplier)
        if not separate:
            return edges, None
        pair_method = "dense" if pair_cutoff is None else list_method
        return edges, neighbor_list(pair_cutoff, skin=skin, method=pair_method, cell=cell_array,
                                    capacity_multiplier=multiplier)

    edges, pairs = builders(capacity_multiplier)
    all_dst, all_src = molecule_pairs(np.zeros((num_atoms, 3)), None)
    # Every pair-of-pairs of the all-pairs set: valid at any geometry (the switch cuts far sides).
    three_body_cutoff = model_triplet_cutoff(model)
    all_triplets = {} if three_body_cutoff is None else {
        "triplets": pair_triplets(all_dst, np.ones(len(all_dst), bool))}

    def use_all_pairs(positions, multiplier) -> bool:
        if method == "all_pairs":
            return True
        if not choose_all_pairs:
            return False
        within = len(molecule_pairs(np.asarray(positions, np.float64), model.cutoff + skin)[0])
        return len(all_dst) <= multiplier * within

    def allocate(positions, capacity_multiplier: float = capacity_multiplier):
        """Neighbor state for ``positions`` (N, 3) Å (host); pass a larger multiplier after an overflow."""
        check_positions(positions, num_atoms)
        if use_all_pairs(positions, capacity_multiplier):
            refuse_overlaps(positions, all_dst, all_src)
            logger.info("all %d ordered pairs of the %d atoms are the edge set", len(all_dst), num_atoms)
            return AllPairs()
        edge_fns, pair_fns = builders(capacity_multiplier)
        nbrs = NeighborPair(edge_fns.allocate(positions), None if pair_fns is None else pair_fns.allocate(positions))
        mask = np.asarray(nbrs.edges.mask)
        refuse_overlaps(positions, np.asarray(nbrs.edges.dst_idx)[mask], np.asarray(nbrs.edges.src_idx)[mask],
                        None if cell is None else np.asarray(nbrs.edges.shifts)[mask])
        if three_body_cutoff is None:
            return nbrs
        # A list of all pairs (cutoff None) is never rebuilt, so its triplets keep every pair-of-pairs.
        radius = np.inf if nbrs.term_pairs.cutoff is None else three_body_cutoff + skin
        triplets = allocate_triplets(nbrs.term_pairs, jnp.asarray(positions, nbrs.edges.reference_positions.dtype),
                                     radius, capacity_multiplier)
        return nbrs.replace(triplets=triplets)

    def update(positions, nbrs):
        if isinstance(nbrs, AllPairs):
            return nbrs
        updated = NeighborPair(edges.update(positions, nbrs.edges),
                               None if pairs is None else pairs.update(positions, nbrs.pairs))
        if nbrs.triplets is None:
            return updated
        return updated.replace(triplets=update_triplets(nbrs.term_pairs, updated.term_pairs, positions,
                                                        nbrs.triplets))

    def to_batch(positions, nbrs):
        if jnp.shape(positions) != (num_atoms, 3):
            raise PhysNetInputError(f"positions must have shape (n, 3) = ({num_atoms}, 3) to match atomic_numbers, "
                                    f"received shape {jnp.shape(positions)}")
        if not is_traced(nbrs.did_overflow) and bool(nbrs.did_overflow):
            check_neighbors(nbrs)
        if isinstance(nbrs, AllPairs):
            return one_system_batch(z, positions, all_dst, all_src, total_charge=total_charge, **all_triplets)
        return batch_from_neighbors(z, positions, nbrs.edges, pair_nbrs=nbrs.pairs, cell=cell_array,
                                    total_charge=total_charge, triplets=nbrs.triplets)

    def outputs(positions, nbrs, compute_forces: bool = True):
        return nan_where_overflowed(apply_batch(model, params, to_batch(positions, nbrs), compute_forces), nbrs)

    def energy_force(positions, nbrs):
        out = outputs(positions, nbrs)
        return out["energy"][0], out["forces"]

    return Potential(allocate=allocate, update=update, energy_force=energy_force, outputs=outputs)


def nan_where_overflowed(out: dict, nbrs) -> dict:
    """``out`` with every float array NaN where ``nbrs.did_overflow`` (jit-able): the pairs of an overflowed
    list are incomplete, so its energy (eV), forces (N, 3) eV/Å, stress ... are not the model's."""
    flag = nbrs.did_overflow
    return jax.tree.map(lambda x: jnp.where(flag, jnp.nan, x) if jnp.issubdtype(x.dtype, jnp.floating) else x, out)


def refuse_overlaps(positions, dst, src, shifts=None) -> None:
    """PhysNetInputError naming the listed pairs (dst, src (P,), image ``shifts`` (P, 3) Å) of ``positions``
    (N, 3) Å closer than :data:`~physnetjax.validation.MIN_DISTANCE_ERROR` (host): the model's energy is NaN
    there. Every pair that close is in a neighbor list, so no search is needed."""
    r = np.asarray(positions, np.float64)
    vectors = r[src] - r[dst] + (0.0 if shifts is None else np.asarray(shifts, np.float64))
    distances = np.linalg.norm(vectors, axis=-1)
    close = np.nonzero((distances < MIN_DISTANCE_ERROR) & (dst <= src))[0]
    if close.size:
        close = close[np.argsort(distances[close])]
        check_distances(r, contacts=(dst[close], src[close], distances[close]), warn=False)


def check_neighbors(nbrs):
    """Return ``nbrs`` unchanged, or raise NeighborListOverflowError naming the list and its capacity (host)."""
    if isinstance(nbrs, NeighborPair):
        for lst in (nbrs.edges, nbrs.pairs):
            if lst is not None:
                check_overflow(lst)
        if nbrs.triplets is not None:
            check_triplet_overflow(nbrs.triplets)
    return nbrs


@flax.struct.dataclass
class NeighborPair:
    """Edge list, optional long-range pair list and optional triplet list; overflow if any overflowed."""

    edges: Any
    pairs: Any = None
    triplets: Any = None

    @property
    def term_pairs(self):
        """The list the pair terms (and the triplets' indices) use: ``pairs`` if present, else ``edges``."""
        return self.edges if self.pairs is None else self.pairs

    @property
    def did_overflow(self):
        flag = self.edges.did_overflow
        for extra in (self.pairs, self.triplets):
            if extra is not None:
                flag = jnp.logical_or(flag, extra.did_overflow)
        return flag


@flax.struct.dataclass
class AllPairs:
    """Neighbor state of the ``"all_pairs"`` edge set: no arrays, nothing to update, never overflows."""

    @property
    def did_overflow(self):
        return jnp.zeros((), dtype=bool)
