"""Neighbor lists and the batch pytree consumed by the model.

* :mod:`~physnetjax.neighbors.batch`: the :class:`Batch` pytree and :func:`apply_batch`.
* :mod:`~physnetjax.neighbors.molecules`: host lists for isolated molecules.
* :mod:`~physnetjax.neighbors.periodic`: host lists for periodic cells (vesin).
* :mod:`~physnetjax.neighbors.bucketing`: padded batches of mixed sizes, ≤ 4 shapes.
* :mod:`~physnetjax.neighbors.neighbor_list`: fixed-capacity lists built inside jit (MD).
* :mod:`~physnetjax.neighbors.triplets`: host triplet lists for the three-body dispersion term.
* :mod:`~physnetjax.neighbors.neighbor_triplets`: fixed-capacity triplet lists built inside jit (MD).
"""

from physnetjax.neighbors.batch import (
    Batch,
    apply_batch,
    model_pair_cutoff,
    image_reach,
    model_triplet_cutoff,
    one_system_batch,
)
from physnetjax.neighbors.bucketing import CompileCounter, MoleculeBatcher, concatenate_padded, iterate_batches
from physnetjax.neighbors.molecules import assemble_batch, batch_molecules, molecule_pairs, round_up
from physnetjax.neighbors.neighbor_list import (
    NeighborList,
    NeighborListFns,
    NeighborListOverflowError,
    batch_from_neighbors,
    check_overflow,
    needs_update,
    neighbor_list,
)
from physnetjax.neighbors.neighbor_triplets import (
    TripletList,
    allocate_triplets,
    build_triplets,
    check_triplet_overflow,
)
from physnetjax.neighbors.periodic import batch_periodic, periodic_pairs
from physnetjax.neighbors.triplets import count_triplets, pair_triplets, padded_triplets

__all__ = [
    "Batch",
    "CompileCounter",
    "MoleculeBatcher",
    "NeighborList",
    "NeighborListFns",
    "NeighborListOverflowError",
    "TripletList",
    "allocate_triplets",
    "apply_batch",
    "assemble_batch",
    "batch_from_neighbors",
    "batch_molecules",
    "batch_periodic",
    "build_triplets",
    "check_overflow",
    "check_triplet_overflow",
    "concatenate_padded",
    "count_triplets",
    "iterate_batches",
    "model_pair_cutoff",
    "image_reach",
    "model_triplet_cutoff",
    "molecule_pairs",
    "one_system_batch",
    "padded_triplets",
    "pair_triplets",
    "needs_update",
    "neighbor_list",
    "periodic_pairs",
    "round_up",
]
