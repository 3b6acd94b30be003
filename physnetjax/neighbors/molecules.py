"""Host-side (NumPy) neighbor lists for isolated molecules, packed into padded batches."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from physnetjax.neighbors.batch import Batch


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ≥ ``value`` (and ≥ ``multiple``)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, received {multiple}")
    return max(multiple, -(-int(value) // multiple) * multiple)


def molecule_pairs(positions: np.ndarray, cutoff: Optional[float]) -> tuple[np.ndarray, np.ndarray]:
    """Full directed pair list (dst, src) of one molecule with |r_src − r_dst| < cutoff.

    Brute force O(n²) in float64; ``cutoff=None`` returns all n(n−1) ordered pairs.
    Pairs are sorted by dst, then src.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n = positions.shape[0]
    dst, src = np.nonzero(~np.eye(n, dtype=bool))
    if cutoff is not None and len(dst):
        d = np.linalg.norm(positions[src] - positions[dst], axis=-1)
        keep = d < cutoff
        dst, src = dst[keep], src[keep]
    return dst.astype(np.int32), src.astype(np.int32)


def batch_molecules(
    atomic_numbers: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    cutoff: float,
    *,
    total_charges: Optional[Sequence[float]] = None,
    pair_cutoff: Optional[float] = 0.0,
    num_atoms: Optional[int] = None,
    num_edges: Optional[int] = None,
    num_pairs: Optional[int] = None,
    num_molecules: Optional[int] = None,
    dtype=np.float32,
) -> Batch:
    """Pack molecules into one padded :class:`Batch` with host-built neighbor lists.

    Args:
      atomic_numbers, positions: per molecule, (n_k,) ints and (n_k, 3) Å.
      cutoff: message-passing cutoff in Å.
      total_charges: per-molecule total charge in e (default 0).
      pair_cutoff: reach of the pair terms (see :func:`model_pair_cutoff`): ``0.0``
        or ≤ ``cutoff`` → no separate pair list; ``None`` → all pairs; else pairs
        closer than ``pair_cutoff``.
      num_atoms, num_edges, num_pairs, num_molecules: padded sizes (default: exact).
        A requested size smaller than needed raises ValueError (never truncates).
      dtype: float dtype of positions and charges.

    Returns:
      A :class:`Batch` of NumPy arrays (pass through ``jax.device_put`` or use in jit).
    """
    if len(atomic_numbers) != len(positions):
        raise ValueError(
            f"got {len(atomic_numbers)} atomic-number arrays but {len(positions)} position arrays"
        )
    if len(atomic_numbers) == 0:
        raise ValueError("cannot build a batch of zero molecules")
    if total_charges is None:
        total_charges = [0.0] * len(atomic_numbers)
    separate_pairs = pair_cutoff is None or pair_cutoff > cutoff
    z_all, r_all, seg_all, dst_all, src_all, pdst_all, psrc_all = [], [], [], [], [], [], []
    offset = 0
    for k, (z, r) in enumerate(zip(atomic_numbers, positions)):
        z = np.asarray(z).reshape(-1)
        r = np.asarray(r, dtype=np.float64).reshape(-1, 3)
        if z.shape[0] != r.shape[0]:
            raise ValueError(
                f"molecule {k}: {z.shape[0]} atomic numbers but positions of shape {r.shape}"
            )
        dst, src = molecule_pairs(r, cutoff)
        dst_all.append(dst + offset)
        src_all.append(src + offset)
        if separate_pairs:
            pdst, psrc = molecule_pairs(r, pair_cutoff)
            pdst_all.append(pdst + offset)
            psrc_all.append(psrc + offset)
        z_all.append(z)
        r_all.append(r)
        seg_all.append(np.full(z.shape[0], k, dtype=np.int32))
        offset += z.shape[0]

    n_real, b_real = offset, len(atomic_numbers)
    dst = np.concatenate(dst_all)
    src = np.concatenate(src_all)
    n_pad = _padded("num_atoms", n_real, num_atoms)
    b_pad = _padded("num_molecules", b_real, num_molecules)
    p_pad = _padded("num_edges", dst.shape[0], num_edges)

    atomic = np.zeros(n_pad, dtype=np.int32)
    atomic[:n_real] = np.concatenate(z_all)
    pos = np.zeros((n_pad, 3), dtype=dtype)
    pos[:n_real] = np.concatenate(r_all)
    seg = np.full(n_pad, b_pad - 1, dtype=np.int32)
    seg[:n_real] = np.concatenate(seg_all)
    atom_mask = np.arange(n_pad) < n_real
    charges = np.zeros(b_pad, dtype=dtype)
    charges[:b_real] = np.asarray(total_charges, dtype=np.float64)

    def padded_list(d, s, size):
        out_d = np.full(size, n_pad - 1, dtype=np.int32)
        out_s = np.full(size, n_pad - 1, dtype=np.int32)
        out_d[: d.shape[0]] = d
        out_s[: s.shape[0]] = s
        return out_d, out_s, np.arange(size) < d.shape[0]

    dst_p, src_p, edge_mask = padded_list(dst, src, p_pad)
    pair_fields = {}
    if separate_pairs:
        pdst = np.concatenate(pdst_all)
        psrc = np.concatenate(psrc_all)
        q_pad = _padded("num_pairs", pdst.shape[0], num_pairs)
        pd, ps, pm = padded_list(pdst, psrc, q_pad)
        pair_fields = dict(pair_dst=pd, pair_src=ps, pair_mask=pm)
    return Batch(
        atomic_numbers=atomic,
        positions=pos,
        atom_segments=seg,
        atom_mask=atom_mask,
        dst_idx=dst_p,
        src_idx=src_p,
        edge_mask=edge_mask,
        total_charges=charges,
        molecule_mask=np.arange(b_pad) < b_real,
        num_molecules=b_pad,
        **pair_fields,
    )


def _padded(name: str, needed: int, requested: Optional[int]) -> int:
    if requested is None:
        return max(needed, 1)
    if requested < needed:
        raise ValueError(f"{name}={requested} is smaller than the {needed} required; refusing to truncate")
    return requested
