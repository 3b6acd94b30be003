"""Fixed-shape training batches: molecules → padded :class:`Batch` + label arrays, per device.

Every batch of a run has the same shapes, so the train step compiles once: each
of the D devices gets ``ceil(batch_size / D)`` molecule slots, ``slots × n_max``
atom slots and edge/pair capacities from the densest frame of the dataset. The
per-device batches are stacked along a leading axis of length D, which
:mod:`physnetjax.train.parallel` shards over the device mesh.

:func:`iterate_batches` is the one place that packs molecules; swap it for a
bucketed packer without touching the training loop.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Optional

import jax
import numpy as np

from physnetjax.data.dataset import PERIODIC_TRAINING_REMEDY, Dataset, check_isolated
from physnetjax.neighbors import (
    batch_molecules,
    count_triplets,
    model_pair_cutoff,
    image_reach,
    model_triplet_cutoff,
    molecule_pairs,
    round_up,
)


@dataclasses.dataclass(frozen=True)
class BatchShapes:
    """Static sizes of one device's batch: molecules B, atoms N, edges P, pairs (None → no pair list),
    triplets (None → no three-body term)."""

    num_devices: int
    molecules: int
    atoms: int
    edges: int
    pairs: Optional[int]
    triplets: Optional[int] = None


def batch_shapes(dataset: Dataset, model, batch_size: int, num_devices: int = 1,
                 periodic_remedy: str = PERIODIC_TRAINING_REMEDY) -> BatchShapes:
    """Capacities fitting any ``batch_size`` frames of ``dataset`` split over ``num_devices``.

    Raises:
      DataError: periodic frames whose images lie within the model's reach
        (:func:`physnetjax.neighbors.image_reach`), the message ending with ``periodic_remedy``.
    """
    molecules = math.ceil(batch_size / num_devices)
    reach, reach_text = image_reach(model)
    check_isolated(dataset, reach, reach_text, periodic_remedy)
    pair_cutoff = model_pair_cutoff(model)
    separate = pair_cutoff is None or pair_cutoff > model.cutoff
    three_body_cutoff = model_triplet_cutoff(model)
    max_edges = max_pairs = max_triplets = 0
    for k in range(len(dataset)):
        r = dataset.R[k, : dataset.N[k]]
        max_edges = max(max_edges, molecule_pairs(r, model.cutoff)[0].shape[0])
        if separate:
            max_pairs = max(max_pairs, molecule_pairs(r, pair_cutoff)[0].shape[0])
        if three_body_cutoff is not None:
            dst, src = molecule_pairs(r, three_body_cutoff)
            max_triplets = max(max_triplets, count_triplets(dst, np.ones(len(dst), bool), r[src] - r[dst], np.inf))
    return BatchShapes(
        num_devices=num_devices,
        molecules=molecules,
        atoms=round_up(molecules * dataset.max_atoms + 1, 8),
        edges=round_up(molecules * max_edges, 8),
        pairs=round_up(molecules * max_pairs, 8) if separate else None,
        triplets=None if three_body_cutoff is None else round_up(molecules * max_triplets, 8),
    )


def _device_batch(dataset: Dataset, frames: np.ndarray, energies: np.ndarray, model, shapes: BatchShapes,
                  dtype) -> tuple:
    """One device's (Batch, labels) for ``frames`` (may be empty: an all-padding batch), each molecule moved to its
    centroid c in float64 before the cast to ``dtype`` (:meth:`Dataset.centroids`; its dipole label about c)."""
    real = frames if len(frames) else np.zeros(0, np.int64)
    centroids = dataset.centroids(real)
    z = [dataset.Z[k, : dataset.N[k]] for k in real]
    r = [dataset.R[k, : dataset.N[k]] - c for k, c in zip(real, centroids)]
    charges = [dataset.Q[k] for k in real]
    if not len(real):
        z, r, charges = [np.array([1])], [np.zeros((1, 3))], [0.0]
    batch = batch_molecules(
        z, r, model.cutoff, total_charges=charges, pair_cutoff=model_pair_cutoff(model),
        num_atoms=shapes.atoms, num_edges=shapes.edges, num_pairs=shapes.pairs,
        num_molecules=shapes.molecules, three_body_cutoff=model_triplet_cutoff(model),
        num_triplets=shapes.triplets, dtype=dtype,
    )
    if not len(real):
        batch = batch.replace(atom_mask=np.zeros_like(batch.atom_mask), edge_mask=np.zeros_like(batch.edge_mask),
                              molecule_mask=np.zeros_like(batch.molecule_mask))
    b, n = shapes.molecules, shapes.atoms
    m = len(real)
    labels = {
        "E": np.zeros(b, dtype), "E_mask": np.zeros(b, bool),
        "F": np.zeros((n, 3), dtype), "F_mask": np.zeros(n, bool),
        "D": np.zeros((b, 3), dtype), "D_mask": np.zeros(b, bool),
        "Q": np.zeros(b, dtype), "Q_mask": np.zeros(b, bool),
        "num_atoms": np.ones(b, dtype),
    }
    labels["E"][:m] = energies[real]
    labels["E_mask"][:m] = dataset.has_E[real]
    labels["D"][:m] = dataset.D[real] - dataset.Q[real][:, None] * centroids
    labels["D_mask"][:m] = dataset.has_D[real]
    labels["Q"][:m] = dataset.Q[real]
    labels["Q_mask"][:m] = dataset.has_Q[real]
    labels["num_atoms"][:m] = dataset.N[real]
    start = 0
    for k in real:
        count = int(dataset.N[k])
        labels["F"][start:start + count] = dataset.F[k, :count]
        labels["F_mask"][start:start + count] = dataset.has_F[k]
        start += count
    return batch, labels


def iterate_batches(dataset: Dataset, indices: np.ndarray, energies: np.ndarray, model, batch_size: int,
                    shapes: BatchShapes, *, seed: Optional[int] = None, dtype=np.float32) -> Iterator[tuple]:
    """Yield ``(batch, labels)`` stacked over devices, covering ``indices`` once.

    Args:
      dataset: the frames.
      indices: (K,) frame indices to visit.
      energies: (M,) float64 training energies (already shifted by E0), eV.
      model: the PhysNet being trained (its cutoffs select the neighbor lists).
      batch_size: global molecules per batch (the last batch may be partly padding).
      shapes: from :func:`batch_shapes`.
      seed: shuffle ``indices`` with ``numpy.random.default_rng(seed)``; None keeps the order.
      dtype: float dtype of positions and labels.

    Yields:
      ``(Batch, labels)`` whose leaves carry a leading device axis of length D;
      labels: E (B,), F (N, 3), D (B, 3), Q (B,) with boolean ``*_mask`` (padding and
      missing labels False) and ``num_atoms`` (B,).
    """
    order = np.asarray(indices)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(order)
    per_device = shapes.molecules
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        parts = [_device_batch(dataset, chunk[d * per_device:(d + 1) * per_device], energies, model, shapes, dtype)
                 for d in range(shapes.num_devices)]
        yield jax.tree_util.tree_map(lambda *xs: np.stack(xs), *parts)


def num_batches(num_frames: int, batch_size: int) -> int:
    return math.ceil(num_frames / batch_size)
