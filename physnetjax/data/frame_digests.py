"""Which frames a model was trained and validated on, recorded in its checkpoint: frame digests.

Evaluation and calibration promise errors on frames held out of training. A file that is the training file is easy
to see (its SHA-256); a file that *holds* training frames is not: a subset written out again, the same frames in
another format, the training file given as a test set to the learning loop, a model fine-tuned from one that had
trained on today's test split. So the trainer records a digest of every training frame, and the tools that promise
held-out errors compare the frames they are given with it.

A frame's digest is the first 8 bytes of BLAKE2b over its real atoms' atomic numbers (int16), positions rounded
to :data:`POSITION_QUANTUM` Å (int64) and its total charge rounded to :data:`CHARGE_QUANTUM` e (int64: an anion
and the neutral radical at one geometry are different frames), so the same frame read from npz or from extxyz (written with 8 decimals) has
the same digest except where a coordinate lies within the files' round-off of a rounding boundary (for 9 atoms about
3 frames in 10⁴, 5 in 10⁴ against a float32 npz); distinct frames of a real data set differ by far more than 1e-3 Å
in some coordinate.

A checkpoint stores ``metadata["training_frames"]`` = ``{"scheme": SCHEME, "frames": n, "digests": base64 of the
sorted little-endian uint64 digests}``, and its validation split's frames (which chose the best epoch) likewise
under ``metadata["validation_frames"]``. For more than :data:`MAX_RECORDED` training frames only the
:data:`MAX_RECORDED` smallest digests are kept: a bottom-k sample of the frames (uniform, since the hash is), from
which the share of training frames among any frames is estimated from those of their digests below the largest one
kept (Broder's bottom-k sketch); ~11 bytes of config.json per recorded frame.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Iterable, Optional

import numpy as np

TRAINING_FRAMES_KEY = "training_frames"
"""Checkpoint metadata key of the training frames' digests."""

VALIDATION_FRAMES_KEY = "validation_frames"
"""Checkpoint metadata key of the validation frames' digests (the frames that chose the best epoch)."""

SCHEME = "blake2b-8(Z int16, round(R / 1e-3 Å) int64, round(Q / 1e-3 e) int64)"
"""Names the digest, so that a later change of it is not compared with these (records of the scheme before the total
charge was hashed, ``blake2b-8(Z int16, round(R / 1e-3 Å) int64)``, read as none)."""

POSITION_QUANTUM = 1e-3
"""Å: positions are rounded to multiples of this before hashing."""

CHARGE_QUANTUM = 1e-3
"""e: total charges are rounded to multiples of this before hashing."""

MAX_RECORDED = 100_000
"""Most digests a checkpoint stores (1.1 MB of config.json); beyond, a bottom-k sample."""


def frame_digests(atomic_numbers, positions, atom_counts, total_charges=None) -> np.ndarray:
    """(M,) uint64 digests of M frames: Z (M, n) ints, R (M, n, 3) Å, N (M,) real atoms (the first N of each row),
    Q (M,) total charges in e (None: all neutral)."""
    z = np.asarray(atomic_numbers)
    quantized = np.rint(np.asarray(positions, np.float64) / POSITION_QUANTUM).astype(np.int64)
    charges = np.zeros(len(z)) if total_charges is None else np.asarray(total_charges, np.float64)
    quantized_charges = np.rint(charges / CHARGE_QUANTUM).astype("<i8")
    digests = np.empty(len(z), np.uint64)
    for k, n in enumerate(np.asarray(atom_counts)):
        h = hashlib.blake2b(z[k, :n].astype("<i2").tobytes(), digest_size=8)
        h.update(quantized[k, :n].astype("<i8").tobytes())
        h.update(quantized_charges[k].tobytes())
        digests[k] = np.frombuffer(h.digest(), "<u8")[0]
    return digests


def dataset_digests(dataset, indices=None) -> np.ndarray:
    """:func:`frame_digests` of a :class:`~physnetjax.data.Dataset`'s frames (all, or ``indices``)."""
    rows = slice(None) if indices is None else np.asarray(indices)
    return frame_digests(dataset.Z[rows], dataset.R[rows], dataset.N[rows], dataset.Q[rows])


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """The digests of a set of frames (a model's training or validation frames).

    Attributes:
      digests: sorted unique uint64 digests; all of them when ``complete``, else the smallest ones (bottom-k).
      frames: how many distinct frames there were.
    """

    digests: np.ndarray
    frames: int

    @property
    def complete(self) -> bool:
        return len(self.digests) == self.frames

    @classmethod
    def of(cls, digests) -> "FrameRecord":
        unique = np.unique(np.asarray(digests, np.uint64))
        return cls(digests=unique[:MAX_RECORDED], frames=len(unique))

    @classmethod
    def from_metadata(cls, metadata, key: str = TRAINING_FRAMES_KEY) -> Optional["FrameRecord"]:
        """The record under ``key`` of checkpoint ``metadata``; None when it has none (older checkpoints, another
        scheme)."""
        record = (metadata or {}).get(key)
        if not isinstance(record, dict) or record.get("scheme") != SCHEME:
            return None
        digests = np.frombuffer(base64.b64decode(record["digests"]), "<u8").astype(np.uint64)
        return cls(digests=digests, frames=int(record["frames"]))

    def to_metadata(self) -> dict:
        return {"scheme": SCHEME, "frames": self.frames,
                "digests": base64.b64encode(self.digests.astype("<u8").tobytes()).decode("ascii")}

    def union(self, other: Optional["FrameRecord"]) -> "FrameRecord":
        """The frames of both (a model fine-tuned from another, an ensemble of separately trained members). When
        either is a sample, so is the union: the digests below the smaller of the samples' largest, its frame count
        estimated as (digests kept) × 2⁶⁴ / (largest kept), the k-minimum-values estimate of a distinct count."""
        if other is None:
            return self
        merged = np.union1d(self.digests, other.digests)
        if self.complete and other.complete:
            return FrameRecord.of(merged)
        ceiling = min(record.digests[-1] for record in (self, other) if not record.complete)
        kept = merged[merged <= ceiling][:MAX_RECORDED]
        estimate = round(len(kept) * 2.0**64 / (float(kept[-1]) + 1.0))
        return FrameRecord(digests=kept, frames=max(estimate, len(kept) + 1))

    def share_of(self, digests) -> "RecordedShare":
        """How many of the frames of ``digests`` are recorded frames (estimated from the sample when not
        complete)."""
        digests = np.asarray(digests, np.uint64)
        if self.complete:
            return RecordedShare(matched=int(np.isin(digests, self.digests).sum()), compared=len(digests),
                                total=len(digests))
        comparable = digests[digests <= self.digests[-1]]
        return RecordedShare(matched=int(np.isin(comparable, self.digests).sum()), compared=len(comparable),
                            total=len(digests))


@dataclasses.dataclass(frozen=True)
class RecordedShare:
    """``matched`` recorded frames among ``compared`` frames (all ``total`` frames, or a hash-uniform sample)."""

    matched: int
    compared: int
    total: int

    @property
    def any(self) -> bool:
        return self.matched > 0

    def describe(self) -> str:
        """'7 of the 100 frames' or 'about 30 % of the 100 000 frames (from a sample of 1000)'."""
        if self.compared == self.total:
            return f"{self.matched} of the {self.total} frames"
        return (f"about {100.0 * self.matched / self.compared:.0f} % of the {self.total} frames (estimated from "
                f"{self.compared} of them)")


def union_of(records: Iterable[Optional[FrameRecord]]) -> Optional[FrameRecord]:
    """The union of several models' records; None when any of them has none (its training frames are unknown)."""
    records = list(records)
    if not records or any(r is None for r in records):
        return None
    result = records[0]
    for record in records[1:]:
        result = result.union(record)
    return result


def checkpoint_metadata_sources(metadata) -> list:
    """A checkpoint's metadata and, for an ensemble combined from separate checkpoints, each input's (kept under
    ``ensemble_sources`` by ``python -m physnetjax.ensemble combine``)."""
    metadata = metadata or {}
    return [metadata, *((source or {}).get("metadata") or {} for source in metadata.get("ensemble_sources") or [])]


def recorded_frames(metadata, key: str = TRAINING_FRAMES_KEY) -> Optional[FrameRecord]:
    """The frames a checkpoint records under ``key`` (its training frames, or :data:`VALIDATION_FRAMES_KEY`), over
    all its sources (:func:`checkpoint_metadata_sources`); None when none of them records any."""
    records = [FrameRecord.from_metadata(meta, key) for meta in checkpoint_metadata_sources(metadata)]
    return union_of(record for record in records if record is not None)
