"""Padded batches of molecules of mixed sizes that compile a handful of shapes.

A jitted function compiles once per distinct input shape. Batches of B random
molecules have varying numbers of atoms, edges and pairs, so packing each batch
exactly would compile almost every step. :class:`MoleculeBatcher` instead fixes, once
per dataset, at most ``num_shapes`` padded sizes ("levels"): for each of atoms N,
edges P, pairs Q (and triplets T with a three-body cutoff) the level is a quantile
of that sum over random batches,
rounded up to a multiple, and the last level is the exact worst case (the sum of
the B largest molecules), so *every* batch fits one of them. Each batch is padded
to the smallest level that holds it. The number of molecule slots is always B
(the last, partial batch gets empty slots with ``molecule_mask`` False).

Dataset layout (the usual PhysNet ``.npz``): ``Z`` (M, n_max) int atomic numbers
with 0 for padding, ``R`` (M, n_max, 3) Å, optionally ``Q`` (M,) total charges in e.
Real atoms are those with Z > 0 (in any column order; they keep their order).
"""

from __future__ import annotations

import logging
from typing import Iterator, Mapping, Optional, Sequence

import jax
import numpy as np

from physnetjax.neighbors.batch import Batch
from physnetjax.neighbors.molecules import assemble_batch, round_up
from physnetjax.validation import (MAX_ATOMIC_NUMBER, PhysNetInputError, check_atomic_numbers, check_batch_charges,
                                   check_batch_structures, check_distances, check_positions, check_range,
                                   overlapping_frame)

logger = logging.getLogger(__name__)

_LEVEL_QUANTILES = {1: (), 2: (0.9,), 3: (0.6, 0.95), 4: (0.5, 0.9, 0.99)}
_SAMPLED_BATCHES = 512


class CompileCounter:
    """``jax.jit(fn)`` that counts how often ``fn`` is traced (one trace per compiled shape).

    >>> step = CompileCounter(lambda params, batch: apply_batch(model, params, batch))
    >>> ...; assert step.count <= 4
    """

    def __init__(self, fn, **jit_kwargs):
        self.fn = fn
        self.count = 0
        self._jitted = jax.jit(self._traced, **jit_kwargs)

    def _traced(self, *args, **kwargs):
        self.count += 1
        return self.fn(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        return self._jitted(*args, **kwargs)


def concatenate_padded(datasets: Sequence[Mapping[str, np.ndarray]], atom_keys=("Z", "R", "F", "Qa")) -> dict:
    """Concatenate datasets with different n_max, zero-padding per-atom arrays.

    Args:
      datasets: mappings of arrays with a leading molecule axis M_k.
      atom_keys: keys whose second axis is the atom axis (padded to the largest n_max).

    Returns:
      dict of the keys present (as arrays with a molecule axis) in every dataset; keys
      missing from some are dropped with a log message.
    """
    if not datasets:
        raise ValueError("concatenate_padded needs at least one dataset")
    common = [k for k in datasets[0] if all(k in d and np.ndim(d[k]) >= 1 for d in datasets)]
    dropped = sorted({k for d in datasets for k in d} - set(common))
    if dropped:
        logger.info("concatenate_padded: dropping keys not present in every dataset: %s", dropped)
    n_max = max(np.shape(d["Z"])[1] for d in datasets)
    out = {}
    for key in common:
        parts = []
        for d in datasets:
            value = np.asarray(d[key])
            if key in atom_keys:
                pad = [(0, 0)] * value.ndim
                pad[1] = (0, n_max - value.shape[1])
                value = np.pad(value, pad)
            parts.append(value)
        out[key] = np.concatenate(parts)
    return out


class MoleculeBatcher:
    """Bucketed, padded batches of a molecular dataset (see module docstring).

    Args:
      data: a :class:`~physnetjax.data.Dataset` (:func:`~physnetjax.data.load_dataset`), or a mapping with ``Z``
        (M, n_max), ``R`` (M, n_max, 3) Å, optional ``Q`` (M,) e.
      batch_size: molecules per batch B (molecule slots of every batch).
      cutoff: message-passing cutoff in Å.
      pair_cutoff: reach of the pair terms (:func:`model_pair_cutoff`): ≤ cutoff → no
        separate pair list, None → all pairs, else pairs closer than it.
      three_body_cutoff: with a value (Å; :func:`model_triplet_cutoff` of a model with
        ``dispersion_three_body=True``), every batch carries the triplet list of the
        pair-term list restricted to pairs shorter than it (host-built, exact: the
        levels bound the triplets like the pairs, so no batch can overflow); None →
        no triplets.
      num_shapes: at most this many distinct (N, P, Q[, T]) levels (1 … 4).
      atom_multiple, edge_multiple: rounding of the levels (pairs use edge_multiple).
      drop_last: drop the final partial batch of an epoch.
      dtype: float dtype of positions and charges.
      seed: seed of the random batches that set the level quantiles (levels are a
        deterministic function of data, batch_size and this seed).

    Attributes:
      levels: list of (num_atoms, num_edges, num_pairs or None) padded sizes, with
        num_triplets appended when ``three_body_cutoff`` is given.
      shapes: the ``Batch.shape_key`` of every level.

    Raises:
      PhysNetInputError: a molecule that :func:`~physnetjax.neighbors.batch_molecules` refuses too (named by its
        row): atomic numbers outside the periodic table, positions beyond ±10⁴ Å, overlapping atoms, a total charge
        that is not finite or beyond ±ΣZ.
      ValueError: missing keys, shapes that do not match, NaN positions, bad settings.
    """

    def __init__(
        self,
        data,
        batch_size: int,
        cutoff: float,
        pair_cutoff: Optional[float] = 0.0,
        *,
        three_body_cutoff: Optional[float] = None,
        num_shapes: int = 4,
        atom_multiple: int = 8,
        edge_multiple: int = 64,
        drop_last: bool = False,
        dtype=np.float32,
        seed: int = 0,
    ):
        if num_shapes not in _LEVEL_QUANTILES:
            raise ValueError(f"num_shapes must be 1, 2, 3 or 4, received {num_shapes}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, received {batch_size}")
        self.cutoff = check_range("cutoff", cutoff, "Å", 0.0, strict=True, finite=False)
        self.atomic_numbers, self.positions, self.total_charges = _validated(data)
        self.present = self.atomic_numbers > 0
        self.batch_size = int(batch_size)
        self.pair_cutoff = pair_cutoff
        self.separate_pairs = pair_cutoff is None or pair_cutoff > cutoff
        if three_body_cutoff is not None:
            check_range("three_body_cutoff", three_body_cutoff, "Å", 0.0, strict=True, finite=False)
        self.three_body_cutoff = three_body_cutoff
        self.drop_last = drop_last
        self.dtype = dtype
        num = len(self.atomic_numbers)
        if drop_last and num < batch_size:
            raise ValueError(f"drop_last=True with {num} molecules < batch_size={batch_size} gives no batch")
        overlap = overlapping_frame(self.positions, self.present)  # batch_molecules refuses them: finite nonsense
        if overlap is not None:
            k = overlap[0]
            check_distances(self.positions[k][self.present[k]], where=f"molecule {k}")

        atoms = self.present.sum(axis=1)
        counts = [atoms, self._pair_counts(cutoff)]
        if self.separate_pairs:
            counts.append(self._pair_counts(pair_cutoff))
        if three_body_cutoff is not None:
            counts.append(self._triplet_counts())
        counts = np.stack(counts, axis=1)
        self.counts = counts
        multiples = np.array([atom_multiple, edge_multiple] + [edge_multiple] * self.separate_pairs
                             + [edge_multiple] * (three_body_cutoff is not None))

        take = min(self.batch_size, num)
        worst = np.sort(counts, axis=0)[-take:].sum(axis=0)
        rng = np.random.default_rng(seed)
        sampled = np.stack([
            counts[rng.choice(num, size=take, replace=False)].sum(axis=0) for _ in range(_SAMPLED_BATCHES)
        ])
        quantiles = [np.quantile(sampled, q, axis=0, method="higher") for q in _LEVEL_QUANTILES[num_shapes]]
        levels = []
        for sizes in [*quantiles, worst]:
            level = tuple(round_up(int(v), int(m)) for v, m in zip(sizes, multiples))
            if level not in levels:
                levels.append(level)
        self.levels = [lv if self.separate_pairs else (*lv[:2], None, *lv[2:]) for lv in levels]
        self.shapes = [(*lv[:3], self.batch_size, False, *lv[3:]) for lv in self.levels]
        logger.info("MoleculeBatcher: %d molecules, batch %d, padded levels (atoms, edges, pairs) %s",
                    num, batch_size, self.levels)

    def __len__(self) -> int:
        num = len(self.atomic_numbers)
        return num // self.batch_size if self.drop_last else -(-num // self.batch_size)

    def epoch(self, shuffle_rng: Optional[np.random.Generator] = None) -> Iterator[tuple[Batch, np.ndarray]]:
        """Yield ``(batch, indices)`` over the dataset once.

        Args:
          shuffle_rng: a ``numpy.random.Generator`` to shuffle with, or None for
            dataset order.

        Yields:
          batch: :class:`Batch` of NumPy arrays with B molecule slots, padded to one of
            :attr:`levels`; ``indices`` (b,) int: dataset rows of its b ≤ B real
            molecules, in slot order (gather labels with :meth:`molecule_labels`,
            :meth:`atom_labels`).
        """
        num = len(self.atomic_numbers)
        order = np.arange(num) if shuffle_rng is None else shuffle_rng.permutation(num)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            indices = order[start:start + self.batch_size]
            yield self.batch(indices), indices

    def batch(self, indices) -> Batch:
        """The padded :class:`Batch` of dataset rows ``indices`` (at most batch_size of them)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not 1 <= len(indices) <= self.batch_size:
            raise ValueError(f"a batch takes 1 to {self.batch_size} molecules, received {len(indices)}")
        present = self.present[indices]
        global_index = np.cumsum(present.ravel()).reshape(present.shape) - 1

        def pair_list(cutoff):
            k, a, c = np.nonzero(self._pair_mask(indices, cutoff))
            return global_index[k, a].astype(np.int32), global_index[k, c].astype(np.int32), None

        edges = pair_list(self.cutoff)
        pairs = pair_list(self.pair_cutoff) if self.separate_pairs else None
        needed = (present.sum(), len(edges[0]), None if pairs is None else len(pairs[0]))
        if self.three_body_cutoff is not None:
            needed = needed + (int(self.counts[indices, -1].sum()),)
        level = next(lv for lv in self.levels
                     if all(n is None or n <= cap for n, cap in zip(needed, lv)))
        return assemble_batch(
            [z[p] for z, p in zip(self.atomic_numbers[indices], present)],
            [r[p] for r, p in zip(self.positions[indices], present)],
            edges, pairs, self.total_charges[indices], None,
            num_atoms=level[0], num_edges=level[1], num_pairs=level[2], num_molecules=self.batch_size,
            three_body_cutoff=self.three_body_cutoff, num_triplets=level[3] if len(level) > 3 else None,
            dtype=self.dtype,
        )

    def molecule_labels(self, values, indices, batch: Batch) -> np.ndarray:
        """Per-molecule labels (M, ...) gathered into the batch's slots (B, ...), zero-padded."""
        values = np.asarray(values)
        out = np.zeros((batch.num_molecules,) + values.shape[1:], dtype=values.dtype)
        out[: len(indices)] = values[indices]
        return out

    def atom_labels(self, values, indices, batch: Batch) -> np.ndarray:
        """Per-atom labels (M, n_max, ...) gathered into the batch's atom slots (N, ...), zero-padded."""
        values = np.asarray(values)
        real = values[indices][self.present[indices]]
        out = np.zeros((batch.num_atoms,) + values.shape[2:], dtype=values.dtype)
        out[: len(real)] = real
        return out

    def _pair_counts(self, cutoff, chunk: int = 1024) -> np.ndarray:
        """(M,) number of directed pairs closer than ``cutoff`` in every molecule (chunked)."""
        num = len(self.atomic_numbers)
        return np.concatenate([
            self._pair_mask(np.arange(start, min(start + chunk, num)), cutoff).sum(axis=(1, 2))
            for start in range(0, num, chunk)
        ])

    def _triplet_counts(self, chunk: int = 1024) -> np.ndarray:
        """(M,) triplets per molecule, Σ_i n_i (n_i − 1) / 2 over the pair-term list's pairs < three_body_cutoff."""
        num = len(self.atomic_numbers)
        list_cutoff = self.pair_cutoff if self.separate_pairs else self.cutoff
        parts = []
        for start in range(0, num, chunk):
            indices = np.arange(start, min(start + chunk, num))
            mask = self._pair_mask(indices, list_cutoff) & self._pair_mask(indices, self.three_body_cutoff)
            neighbours = mask.sum(axis=2)
            parts.append((neighbours * (neighbours - 1) // 2).sum(axis=1))
        return np.concatenate(parts)

    def _pair_mask(self, indices, cutoff) -> np.ndarray:
        """(b, n_max, n_max) True where atoms a ≠ c of molecule k are both real and closer than cutoff."""
        present = self.present[indices]
        mask = present[:, :, None] & present[:, None, :] & ~np.eye(present.shape[1], dtype=bool)
        if cutoff is not None:
            r = self.positions[indices]
            distance = np.linalg.norm(r[:, None, :, :] - r[:, :, None, :], axis=-1)
            mask &= distance < cutoff
        return mask



def iterate_batches(
    data,
    batch_size: int,
    cutoff: float,
    pair_cutoff: Optional[float] = 0.0,
    shuffle_rng: Optional[np.random.Generator] = None,
    **kwargs,
) -> Iterator[tuple[Batch, np.ndarray]]:
    """One epoch of ``(Batch, indices)``: ``MoleculeBatcher(data, ...).epoch(shuffle_rng)``.

    The levels depend only on the data, ``batch_size`` and the batcher's ``seed``, so
    calling this every epoch keeps the same ≤ ``num_shapes`` shapes; build a
    :class:`MoleculeBatcher` once to avoid recounting the pairs each epoch.
    """
    return MoleculeBatcher(data, batch_size, cutoff, pair_cutoff, **kwargs).epoch(shuffle_rng)


def _as_mapping(data) -> Mapping[str, np.ndarray]:
    """``data`` as a mapping of arrays: a :class:`~physnetjax.data.Dataset` gives its ``Z``, ``R`` and ``Q``."""
    if isinstance(data, Mapping):
        return data
    if hasattr(data, "Z") and hasattr(data, "R"):
        return {key: getattr(data, key) for key in ("Z", "R", "Q") if getattr(data, key, None) is not None}
    raise TypeError(f"data must be a physnetjax.data.Dataset (load_dataset) or a mapping of arrays Z, R[, Q], "
                    f"received {type(data).__name__}")


def _validated(data):
    data = _as_mapping(data)
    for key in ("Z", "R"):
        if key not in data:
            raise ValueError(f"dataset needs key {key!r}; it has {sorted(data)}")
    z = np.asarray(data["Z"])
    r = np.asarray(data["R"], dtype=np.float64)
    if z.ndim != 2 or r.shape != z.shape + (3,):
        raise ValueError(f"Z must be (M, n_max) and R (M, n_max, 3); received {z.shape} and {r.shape}")
    if not np.issubdtype(z.dtype, np.integer):
        if not np.all(np.mod(z, 1) == 0):
            raise ValueError("Z must hold integer atomic numbers")
        z = z.astype(np.int64)
    if np.any(z < 0):
        raise ValueError(f"Z must be >= 0 (0 = padding); molecules {np.nonzero((z < 0).any(1))[0].tolist()}")
    empty = ~(z > 0).any(axis=1)
    if np.any(empty):
        raise ValueError(f"molecules without atoms (all Z = 0) at rows {np.nonzero(empty)[0].tolist()}")
    bad = ~np.isfinite(r).all(axis=-1) & (z > 0)
    if np.any(bad):
        raise ValueError(f"R has NaN/Inf for real atoms of molecules {np.nonzero(bad.any(1))[0].tolist()}")
    real = z > 0
    try:  # as batch_molecules checks its molecules: elements of the periodic table, positions within ±10⁴ Å
        check_positions(r[real], check_atomic_numbers(z[real], MAX_ATOMIC_NUMBER).shape[0])
    except PhysNetInputError:
        check_batch_structures([row[m] for row, m in zip(z, real)], [row[m] for row, m in zip(r, real)])
        raise
    if "Q" in data:
        q = np.asarray(data["Q"], dtype=np.float64).reshape(-1)
        if q.shape != (z.shape[0],):
            raise ValueError(f"Q must have shape (M,) = ({z.shape[0]},), received {np.shape(data['Q'])}")
        q = check_batch_charges(q, np.where(real, z, 0).sum(axis=1))
    else:
        q = np.zeros(z.shape[0])
    return z.astype(np.int32), r, q
