"""Training frames kept on the device, batches gathered inside ``jax.jit``.

The neighbor lists of every frame are built once per run on the host
(:func:`build_device_frames`) and stored per frame, zero-padded to the largest
frame: M frames, n atom slots, e edge slots and p pair slots each. A training
step then receives only the (D, b) frame rows of its batch (−1 for an empty
molecule slot) and :func:`gather_batch` assembles the padded :class:`Batch`
and labels inside the jitted step, so no batch is packed or copied per step.

Layout of a gathered device batch (b molecule slots, same capacities N, P, Q as
:func:`physnetjax.train.batching.batch_shapes`, so the step has the shapes of the
host-packed batches)::

    atom  j·n + i      atom i of the frame in slot j (i < n; atom_mask False for
                       i ≥ its atom count and for empty slots; Z 0, position 0)
    atoms b·n … N−1    trailing padding atoms of the last slot
    edge  j·e + k      edge k of slot j's frame, atom indices shifted by j·n
    edges b·e … P−1    padding; padded edges point at atom N−1 (mask False)

With molecules of mixed sizes the padding atoms of a slot sit inside the batch
rather than at its end; the model masks them the same way (padded atoms and edges
contribute exactly zero), so energies and forces equal those of the host-packed
batch up to the order of floating-point sums. Labels are those of
:func:`physnetjax.train.batching.iterate_batches` (E, F, D, Q with masks, num_atoms, and the per-frame
loss weights of weighted data).

Models with a three-body dispersion term need triplet lists, and periodic data
needs image shifts and cells; they keep the host batches (:func:`supports_device_batches`).
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.data.dataset import Dataset
from physnetjax.neighbors import Batch, model_pair_cutoff, molecule_pairs
from physnetjax.train.batching import BatchShapes


@flax.struct.dataclass
class DeviceFrames:
    """Per-frame arrays of M frames (n atom, e edge, p pair slots; units Å, eV, e, e·Å).

    Fields: atomic_numbers (M, n) int32, positions (M, n, 3), atom_counts (M,) int32,
    edge_dst/edge_src (M, e) int32 frame-local atom indices, edge_counts (M,) int32,
    pair_dst/pair_src (M, p) and pair_counts (M,) (None without a separate pair list),
    total_charges (M,); labels energy (M,) (shifted by E0), forces (M, n, 3),
    dipoles (M, 3), charge (M,) with has_energy/has_forces/has_dipoles/has_charge (M,) bool;
    weights (M, 4) the per-frame loss weights of the frame, energy, forces and stress terms
    (:attr:`~physnetjax.data.Dataset.term_weights`), None when the data carry none.
    """

    atomic_numbers: jax.Array
    positions: jax.Array
    atom_counts: jax.Array
    edge_dst: jax.Array
    edge_src: jax.Array
    edge_counts: jax.Array
    total_charges: jax.Array
    energy: jax.Array
    forces: jax.Array
    dipoles: jax.Array
    has_energy: jax.Array
    has_forces: jax.Array
    has_dipoles: jax.Array
    has_charge: jax.Array
    pair_dst: Optional[jax.Array] = None
    pair_src: Optional[jax.Array] = None
    pair_counts: Optional[jax.Array] = None
    weights: Optional[jax.Array] = None


def supports_device_batches(shapes: BatchShapes) -> bool:
    """Whether batches of these shapes can be gathered on the device (no triplet lists, no periodic frames: their
    batches are host-packed with their images' shifts and cells)."""
    return shapes.triplets is None and not shapes.periodic


def _padded_lists(lists: list, dtype=np.int32) -> tuple:
    """(dst (M, c), src (M, c), counts (M,)) from per-frame (dst, src); c the largest count (≥ 1)."""
    counts = np.array([len(dst) for dst, _ in lists], np.int32)
    width = max(1, int(counts.max(initial=0)))
    dst = np.zeros((len(lists), width), dtype)
    src = np.zeros((len(lists), width), dtype)
    for k, (d, s) in enumerate(lists):
        dst[k, : len(d)] = d
        src[k, : len(s)] = s
    return dst, src, counts


def build_device_frames(dataset: Dataset, frames: np.ndarray, energies: np.ndarray, model,
                        dtype=np.float32) -> DeviceFrames:
    """Host :class:`DeviceFrames` of dataset ``frames`` (row r holds frame ``frames[r]``).

    Edges are the full directed lists within ``model.cutoff``; a separate pair list
    within the model's pair-term reach when it exceeds the cutoff (as
    :func:`physnetjax.neighbors.batch_molecules` builds them). ``energies`` (M_dataset,)
    are the training energies (shifted by E0), eV. The per-frame loss weights are kept when the dataset carries
    any (:attr:`~physnetjax.data.Dataset.weighted`, as :func:`~physnetjax.train.batching.batch_shapes` decides).
    """
    frames = np.asarray(frames, np.int64)
    counts = dataset.N[frames].astype(np.int32)
    n = dataset.Z.shape[1]
    real = np.arange(n)[None, :] < counts[:, None]
    pair_cutoff = model_pair_cutoff(model)
    separate = pair_cutoff is None or pair_cutoff > model.cutoff
    edges, pairs = [], []
    for k, count in zip(frames, counts):
        r = dataset.R[k, :count]
        edges.append(molecule_pairs(r, model.cutoff))
        if separate:
            pairs.append(molecule_pairs(r, pair_cutoff))
    edge_dst, edge_src, edge_counts = _padded_lists(edges)
    centroids = dataset.centroids(frames)  # each molecule about its centroid, as the host batches
    extra = {}
    if separate:
        pair_dst, pair_src, pair_counts = _padded_lists(pairs)
        extra = {"pair_dst": pair_dst, "pair_src": pair_src, "pair_counts": pair_counts}
    if dataset.weighted:
        extra["weights"] = dataset.term_weights[frames].astype(dtype)
    return DeviceFrames(
        atomic_numbers=np.where(real, dataset.Z[frames], 0).astype(np.int32),
        positions=np.where(real[..., None], dataset.R[frames] - centroids[:, None], 0.0).astype(dtype),
        atom_counts=counts,
        edge_dst=edge_dst, edge_src=edge_src, edge_counts=edge_counts,
        total_charges=dataset.Q[frames].astype(dtype),
        energy=energies[frames].astype(dtype),
        forces=np.where(real[..., None], dataset.F[frames], 0.0).astype(dtype),
        dipoles=(dataset.D[frames] - dataset.Q[frames][:, None] * centroids).astype(dtype),
        has_energy=dataset.has_E[frames].copy(), has_forces=dataset.has_F[frames].copy(),
        has_dipoles=dataset.has_D[frames].copy(), has_charge=dataset.has_Q[frames].copy(),
        **extra,
    )


def frame_rows(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames,) int: the :class:`DeviceFrames` row of every dataset frame, −1 where absent."""
    rows = np.full(num_frames, -1, np.int64)
    rows[np.asarray(frames)] = np.arange(len(frames))
    return rows


def batch_rows(rows: np.ndarray, batch_size: int, shapes: BatchShapes) -> np.ndarray:
    """(S, D, b) int32: ``rows`` (K,) cut into S = ⌈K / batch_size⌉ batches, each split over D devices
    of b = ``shapes.molecules`` slots, in the order of :func:`physnetjax.train.batching.iterate_batches`;
    empty slots −1."""
    rows = np.asarray(rows)
    steps = -(-len(rows) // batch_size)
    out = np.full((steps, shapes.num_devices * shapes.molecules), -1, np.int32)
    for step in range(steps):
        chunk = rows[step * batch_size:(step + 1) * batch_size]
        out[step, : len(chunk)] = chunk
    return out.reshape(steps, shapes.num_devices, shapes.molecules)


def _flat(x, size: int, fill):
    """(b, c, ...) → (size, ...): slots laid end to end, then ``fill`` up to ``size``."""
    flat = x.reshape((-1,) + x.shape[2:])
    pad = jnp.full((size - flat.shape[0],) + x.shape[2:], fill, x.dtype)
    return jnp.concatenate([flat, pad])


def _slot_list(dst, src, counts, slot_real, offsets, size: int, pad_atom: int) -> tuple:
    """(dst (size,), src (size,), mask (size,)) of the gathered slots' lists (layout in module docstring)."""
    mask = (jnp.arange(dst.shape[1])[None, :] < counts[:, None]) & slot_real[:, None]
    dst = jnp.where(mask, dst + offsets, pad_atom)
    src = jnp.where(mask, src + offsets, pad_atom)
    return _flat(dst, size, pad_atom), _flat(src, size, pad_atom), _flat(mask, size, False)


def gather_device_batch(frames: DeviceFrames, rows, shapes: BatchShapes) -> tuple:
    """One device's (Batch, labels) of frame ``rows`` (b,) (−1: empty slot); jit-able.

    Shapes as :func:`physnetjax.train.batching.batch_shapes` (atoms N, edges P, pairs Q);
    labels as :func:`physnetjax.train.batching.iterate_batches`.
    """
    b, n = rows.shape[0], frames.atomic_numbers.shape[1]
    slot_real = rows >= 0
    r = jnp.maximum(rows, 0)
    atom_real = (jnp.arange(n)[None, :] < frames.atom_counts[r][:, None]) & slot_real[:, None]
    pad_atom = shapes.atoms - 1
    offsets = (jnp.arange(b, dtype=jnp.int32) * n)[:, None]
    dtype = frames.positions.dtype
    dst, src, edge_mask = _slot_list(frames.edge_dst[r], frames.edge_src[r], frames.edge_counts[r], slot_real,
                                     offsets, shapes.edges, pad_atom)
    extra = {}
    if frames.pair_dst is not None:
        pdst, psrc, pmask = _slot_list(frames.pair_dst[r], frames.pair_src[r], frames.pair_counts[r], slot_real,
                                       offsets, shapes.pairs, pad_atom)
        extra = {"pair_dst": pdst, "pair_src": psrc, "pair_mask": pmask}
    batch = Batch(
        atomic_numbers=_flat(jnp.where(atom_real, frames.atomic_numbers[r], 0), shapes.atoms, 0),
        positions=_flat(jnp.where(atom_real[..., None], frames.positions[r], 0.0), shapes.atoms, 0.0),
        atom_segments=_flat(jnp.broadcast_to(jnp.arange(b, dtype=jnp.int32)[:, None], (b, n)), shapes.atoms,
                            b - 1),
        atom_mask=_flat(atom_real, shapes.atoms, False),
        dst_idx=dst, src_idx=src, edge_mask=edge_mask,
        total_charges=jnp.where(slot_real, frames.total_charges[r], 0.0),
        molecule_mask=slot_real,
        num_molecules=b,
        **extra,
    )
    forces_real = atom_real & frames.has_forces[r][:, None]
    labels = {
        "E": jnp.where(slot_real, frames.energy[r], 0.0), "E_mask": slot_real & frames.has_energy[r],
        "F": _flat(jnp.where(atom_real[..., None], frames.forces[r], 0.0), shapes.atoms, 0.0),
        "F_mask": _flat(forces_real, shapes.atoms, False),
        "D": jnp.where(slot_real[:, None], frames.dipoles[r], 0.0), "D_mask": slot_real & frames.has_dipoles[r],
        "Q": jnp.where(slot_real, frames.total_charges[r], 0.0), "Q_mask": slot_real & frames.has_charge[r],
        "num_atoms": jnp.where(slot_real, frames.atom_counts[r], 1).astype(dtype),
    }
    if frames.weights is not None:
        weights = jnp.where(slot_real[:, None], frames.weights[r], 0.0)
        labels["frame_weight"], labels["E_weight"] = weights[:, 0], weights[:, 1]
        labels["F_weight"] = _flat(jnp.where(atom_real, weights[:, 2:3], 0.0), shapes.atoms, 0.0)
    return batch, labels


def gather_batch(frames: DeviceFrames, rows, shapes: BatchShapes) -> tuple:
    """(Batch, labels) with a leading device axis from ``rows`` (D, b); jit-able."""
    return jax.vmap(lambda device_rows: gather_device_batch(frames, device_rows, shapes))(rows)
