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

from physnetjax.data.dataset import DataError, Dataset, nearest_images, warn_unused_cells
from physnetjax.errors import PhysNetInputWarning, warn_caller
from physnetjax.neighbors import (
    batch_molecules,
    batch_periodic,
    count_triplets,
    model_pair_cutoff,
    image_reach,
    model_triplet_cutoff,
    molecule_pairs,
    periodic_pairs,
    round_up,
)


@dataclasses.dataclass(frozen=True)
class BatchShapes:
    """Static sizes of one device's batch: molecules B, atoms N, edges P, pairs (None → no pair list),
    triplets (None → no three-body term); ``periodic``: the data holds periodic frames, so every batch is a periodic
    one (:func:`batch_cells`) with ``cells``, ``shifts`` and stress; ``weighted``: the data carry per-frame loss
    weights (:attr:`~physnetjax.data.Dataset.weighted`), so every batch's labels hold them (:func:`iterate_batches`)."""

    num_devices: int
    molecules: int
    atoms: int
    edges: int
    pairs: Optional[int]
    triplets: Optional[int] = None
    periodic: bool = False
    weighted: bool = False


def as_batched(dataset: Dataset, model) -> Dataset:
    """``dataset`` as the trainer and ``eval`` batch it for ``model``: a periodic frame whose atoms all lie beyond the
    model's reach (:func:`physnetjax.neighbors.image_reach`) of every periodic image, and that carries no stress
    label, is taken as the isolated molecule it is (its cell cleared: same energy and forces, its dipole label
    kept, and a charge model's all-pairs Coulomb stays defined); the dipole labels of the other periodic frames are
    unset, with a :class:`~physnetjax.errors.PhysNetInputWarning`: the dipole of a periodic cell depends on where
    its atoms are wrapped (it changes by q_i · a when atom i moves by the cell vector a), so no output matches it.
    """
    if not dataset.periodic.any():
        return dataset
    reach, _ = image_reach(model)
    positions = [dataset.R[k, : dataset.N[k]] for k in range(len(dataset))]
    boxed = dataset.periodic & ~np.isfinite(nearest_images(dataset.cell, positions, reach)) & ~dataset.has_S
    cell = np.where(boxed[:, None, None], 0.0, dataset.cell)
    periodic_dipoles = dataset.has_D & cell.any(axis=(1, 2))
    if periodic_dipoles.any():
        warn_caller(f"dipole labels of {int(periodic_dipoles.sum())} periodic frame(s) are not used (e.g. "
                    f"{dataset.sources[np.argmax(periodic_dipoles)]}): the dipole of a periodic cell depends on where "
                    "its atoms are wrapped into it", PhysNetInputWarning)
    return dataclasses.replace(dataset, cell=cell, has_D=dataset.has_D & ~periodic_dipoles,
                               D=np.where(periodic_dipoles[:, None], 0.0, dataset.D))


def batch_shapes(dataset: Dataset, model, batch_size: int, num_devices: int = 1) -> BatchShapes:
    """Capacities fitting any ``batch_size`` frames of ``dataset`` split over ``num_devices``.

    Periodic frames count their pairs with every image within reach (:func:`physnetjax.neighbors.periodic_pairs`).

    Raises:
      DataError: periodic frames the trainer cannot take (:func:`check_trainable_cells`).
    """
    molecules = math.ceil(batch_size / num_devices)
    reach, reach_text = image_reach(model)
    periodic = bool(dataset.periodic.any())
    if periodic:
        check_trainable_cells(dataset, model, reach)
    warn_unused_cells(dataset, reach, reach_text)
    pair_cutoff = model_pair_cutoff(model)
    separate = pair_cutoff is None or pair_cutoff > model.cutoff
    three_body_cutoff = model_triplet_cutoff(model)
    max_edges = max_pairs = max_triplets = 0
    for k in range(len(dataset)):
        r = dataset.R[k, : dataset.N[k]]
        cell = dataset.cell[k] if dataset.periodic[k] else None
        max_edges = max(max_edges, len(frame_pairs(r, cell, model.cutoff)[0]))
        if separate:
            max_pairs = max(max_pairs, len(frame_pairs(r, cell, pair_cutoff)[0]))
        if three_body_cutoff is not None:
            dst, src, shifts = frame_pairs(r, cell, three_body_cutoff)
            vectors = r[src] - r[dst] + shifts
            max_triplets = max(max_triplets, count_triplets(dst, np.ones(len(dst), bool), vectors, np.inf))
    return BatchShapes(
        num_devices=num_devices,
        molecules=molecules,
        atoms=round_up(molecules * dataset.max_atoms + 1, 8),
        edges=round_up(molecules * max_edges, 8),
        pairs=round_up(molecules * max_pairs, 8) if separate else None,
        triplets=None if three_body_cutoff is None else round_up(molecules * max_triplets, 8),
        periodic=periodic,
        weighted=dataset.weighted,
    )


def frame_pairs(positions, cell, cutoff: float) -> tuple:
    """(dst, src, shifts (P, 3) Å): the full directed pair list within ``cutoff`` Å of one frame, with every periodic
    image for a ``cell`` (3, 3) Å (:func:`physnetjax.neighbors.periodic_pairs`), of the molecule for ``cell`` None."""
    if cell is not None:
        return periodic_pairs(positions, cell, cutoff)
    dst, src = molecule_pairs(positions, cutoff)
    return dst, src, np.zeros((len(dst), 3))


def check_trainable_cells(dataset: Dataset, model, reach: float) -> None:
    """Refuse periodic frames the trainer and ``eval`` cannot batch for ``model``.

    Raises:
      DataError: frames periodic along one or two directions (a slab or a wire: the model sees only cells periodic
        along all three), or a charge model's bare Coulomb sum (infinite in a crystal without Ewald).
    """
    partial = dataset.periodic & (np.linalg.matrix_rank(dataset.cell) < 3)
    if partial.any():
        k = int(np.argmax(partial))
        raise DataError(f"{int(partial.sum())} frame(s) are periodic along one or two directions only (e.g. "
                        f"{dataset.sources[k]}, pbc {dataset.cell[k].any(axis=1).tolist()}): training and eval take "
                        "cells periodic along x, y and z; give a slab or wire a cell vector across at least "
                        f"{reach:g} Å of vacuum (more than the model's reach) along its open directions and set pbc "
                        "True there: its energies and forces are those of the isolated slab")
    if model_pair_cutoff(model) is None:
        k = int(np.argmax(dataset.periodic))
        raise DataError(f"{int(dataset.periodic.sum())} frame(s) are periodic cells (e.g. {dataset.sources[k]}), "
                        "and a charge model's Coulomb term without a long-range cutoff "
                        "(coulomb_lr_cutoff) sums over all atom pairs, which is infinite in a crystal (no Ewald sum "
                        "here): periodic cells need a model without charges (train with --no-charges) or, built from "
                        "Python, a model with a coulomb_lr_cutoff")


def batch_cells(dataset: Dataset, frames, reach: float) -> list:
    """The (3, 3) Å cell of each of ``frames`` in a periodic batch: a periodic frame's own; for a molecule a cubic box
    of side L = 2 r_max + reach + 1 Å (:func:`isolation_box_side`; r_max its largest distance from its centroid),
    in whose middle :func:`batch_offsets` puts it: no atom is wrapped and every image lies beyond the model's reach,
    so its energy, forces and dipole are those of the isolated molecule."""
    return [dataset.cell[k] if dataset.periodic[k] else np.eye(3) * isolation_box_side(dataset.R[k, : dataset.N[k]],
                                                                                        reach)
            for k in frames]


def isolation_box_side(positions, reach: float) -> float:
    """Å: the side L = 2 r_max + reach + 1 of a cubic box holding a molecule (:func:`batch_cells`)."""
    centred = positions - positions.mean(axis=0)
    return 2.0 * float(np.linalg.norm(centred, axis=1).max()) + reach + 1.0


def batch_offsets(dataset: Dataset, frames, reach: Optional[float] = None) -> np.ndarray:
    """(len(frames), 3) Å, float64: the vector o subtracted from each frame's positions before the cast to the
    compute dtype (its dipole label is taken about o: D − Q·o).

    Molecules are moved to their centroid c (:meth:`Dataset.centroids`), or, in a periodic batch (``reach`` given),
    to the middle of their box (c − L/2, :func:`batch_cells`); periodic frames are not moved (o = 0: the
    batch wraps their atoms into the cell).
    """
    frames = np.asarray(frames, np.int64)
    offsets = dataset.centroids(frames)
    if reach is not None:
        for row, k in enumerate(frames):
            if dataset.periodic[k]:
                offsets[row] = 0.0
            else:
                offsets[row] -= isolation_box_side(dataset.R[k, : dataset.N[k]], reach) / 2.0
    return offsets


def _device_batch(dataset: Dataset, frames: np.ndarray, energies: np.ndarray, model, shapes: BatchShapes,
                  dtype) -> tuple:
    """One device's (Batch, labels) for ``frames`` (may be empty: an all-padding batch), each molecule moved by its
    offset o (:func:`batch_offsets`) in float64 before the cast to ``dtype`` (its dipole label about o)."""
    real = frames if len(frames) else np.zeros(0, np.int64)
    reach = image_reach(model)[0] if shapes.periodic else None
    offsets = batch_offsets(dataset, real, reach)
    z = [dataset.Z[k, : dataset.N[k]] for k in real]
    r = [dataset.R[k, : dataset.N[k]] - o for k, o in zip(real, offsets)]
    charges = [dataset.Q[k] for k in real]
    cells = batch_cells(dataset, real, reach) if shapes.periodic else None
    if not len(real):  # an all-padding batch: one hydrogen atom, masked below
        z, r, charges, cells = [np.array([1])], [np.zeros((1, 3))], [0.0], [np.eye(3) * 100.0]
    capacities = dict(total_charges=charges, pair_cutoff=model_pair_cutoff(model), num_atoms=shapes.atoms,
                      num_edges=shapes.edges, num_pairs=shapes.pairs, num_molecules=shapes.molecules,
                      three_body_cutoff=model_triplet_cutoff(model), num_triplets=shapes.triplets, dtype=dtype)
    batch = (batch_periodic(z, r, cells, model.cutoff, **capacities) if shapes.periodic
             else batch_molecules(z, r, model.cutoff, **capacities))
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
    labels["D"][:m] = dataset.D[real] - dataset.Q[real][:, None] * offsets
    labels["D_mask"][:m] = dataset.has_D[real]
    labels["Q"][:m] = dataset.Q[real]
    labels["Q_mask"][:m] = dataset.has_Q[real]
    labels["num_atoms"][:m] = dataset.N[real]
    if shapes.periodic:
        labels["S"] = np.zeros((b, 3, 3), dtype)
        labels["S_mask"] = np.zeros(b, bool)
        labels["volume_per_atom"] = np.zeros(b, dtype)
        labels["S"][:m] = dataset.S[real]
        labels["S_mask"][:m] = dataset.has_S[real]
        labels["volume_per_atom"][:m] = np.abs(np.linalg.det(dataset.cell[real])) / dataset.N[real]
    if shapes.weighted:
        weights = dataset.term_weights[real]
        labels["frame_weight"], labels["E_weight"] = np.zeros(b, dtype), np.zeros(b, dtype)
        labels["F_weight"] = np.zeros(n, dtype)
        labels["frame_weight"][:m], labels["E_weight"][:m] = weights[:, 0], weights[:, 1]
        if shapes.periodic:
            labels["S_weight"] = np.zeros(b, dtype)
            labels["S_weight"][:m] = weights[:, 3]
    start = 0
    for j, k in enumerate(real):
        count = int(dataset.N[k])
        labels["F"][start:start + count] = dataset.F[k, :count]
        labels["F_mask"][start:start + count] = dataset.has_F[k]
        if shapes.weighted:
            labels["F_weight"][start:start + count] = weights[j, 2]
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
      missing labels False) and ``num_atoms`` (B,); with ``shapes.weighted`` the per-frame loss weights
      (:attr:`~physnetjax.data.Dataset.term_weights`, dimensionless, 0 on padding): ``frame_weight`` (B,) of the
      dipole and charge terms, ``E_weight`` (B,), ``F_weight`` (N,) (each atom its frame's forces weight) and, in a
      periodic batch, ``S_weight`` (B,) (:data:`physnetjax.train.loss.WEIGHT_LABELS`).
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
