"""One-call inference on a single molecule or periodic cell, with eager input validation."""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from physnetjax.neighbors.batch import apply_batch, model_pair_cutoff
from physnetjax.neighbors.molecules import batch_molecules
from physnetjax.neighbors.periodic import batch_periodic
from physnetjax.physics.dispersion import check_d3_elements


def validate_structure(atomic_numbers, positions, max_atomic_number: int) -> tuple[np.ndarray, np.ndarray]:
    """Check one structure and return (Z as int32 (n,), R as float (n, 3)).

    Raises:
      ValueError: naming the problem — wrong shape, non-integer or out-of-range
        atomic numbers (< 1 or > max_atomic_number), NaN/Inf positions.
    """
    z = np.asarray(atomic_numbers)
    r = np.asarray(positions)
    if z.ndim != 1:
        raise ValueError(f"atomic_numbers must have shape (n,), received shape {z.shape}")
    if r.shape != (z.shape[0], 3):
        raise ValueError(
            f"positions must have shape (n, 3) = ({z.shape[0]}, 3) to match atomic_numbers, "
            f"received shape {r.shape}"
        )
    if z.shape[0] == 0:
        raise ValueError("a structure needs at least one atom")
    if not np.issubdtype(z.dtype, np.integer):
        if not np.all(np.equal(np.mod(z, 1), 0)):
            raise ValueError(f"atomic_numbers must be integers, received {z}")
        z = z.astype(np.int64)
    bad = (z < 1) | (z > max_atomic_number)
    if np.any(bad):
        raise ValueError(
            f"atomic numbers must be in [1, {max_atomic_number}]; received {z[bad].tolist()} "
            f"at atom indices {np.nonzero(bad)[0].tolist()}"
        )
    if not np.issubdtype(r.dtype, np.floating):
        r = r.astype(np.float64)
    finite = np.isfinite(r).all(axis=1)
    if not finite.all():
        raise ValueError(f"positions contain NaN or Inf at atom indices {np.nonzero(~finite)[0].tolist()}")
    return z.astype(np.int32), r


def predict(
    model,
    params,
    atomic_numbers,
    positions,
    total_charge: float = 0.0,
    dtype: Optional[np.dtype] = None,
) -> dict:
    """Energy, forces, charges and dipole of one isolated molecule, as NumPy.

    Builds the neighbor lists on the host (all pairs within the model's cutoff,
    plus the long-range pair list its pair terms need), runs the model once and
    returns physical quantities with padding removed.

    Args:
      model: a :class:`physnetjax.PhysNet`.
      params: its variables (``{"params": ...}``).
      atomic_numbers: (n,) ints in [1, max_atomic_number].
      positions: (n, 3) Å, finite.
      total_charge: total charge Q in e.
      dtype: float dtype of the computation (default: that of ``positions`` if it is
        float64 and x64 is enabled, else float32).

    Returns:
      dict with ``energy`` (float, eV), ``forces`` (n, 3) eV/Å, ``charges`` (n,) e or
      None, ``dipole`` (3,) e·Å or None, ``electrostatics``, ``repulsion`` and ``dispersion`` (eV).
    """
    z, r = validate_structure(atomic_numbers, positions, model.max_atomic_number)
    if getattr(model, "dispersion", None) is not None:
        check_d3_elements(z)
    if dtype is None:
        dtype = np.float64 if (r.dtype == np.float64 and jax.config.jax_enable_x64) else np.float32
    batch = batch_molecules(
        [z], [r], model.cutoff, total_charges=[total_charge], pair_cutoff=model_pair_cutoff(model), dtype=dtype
    )
    out = jitted_apply(model)(params, batch)
    n = z.shape[0]
    return {
        "energy": float(out["energy"][0]),
        "forces": np.asarray(out["forces"][:n]),
        "charges": None if out["charges"] is None else np.asarray(out["charges"][:n]),
        "dipole": None if out["dipoles"] is None else np.asarray(out["dipoles"][0]),
        "electrostatics": float(out["electrostatics"][0]),
        "repulsion": float(out["repulsion"][0]),
        "dispersion": float(out["dispersion"][0]),
    }


def predict_periodic(model, params, atomic_numbers, positions, cell, total_charge: float = 0.0, dtype=None) -> dict:
    """Energy, forces and stress of one periodic cell, as NumPy.

    Args:
      model: a :class:`physnetjax.PhysNet` (its pair terms must have a finite reach).
      params: its variables.
      atomic_numbers: (n,) ints in [1, max_atomic_number].
      positions: (n, 3) Å.  cell: (3, 3) Å, vectors as rows.
      total_charge: e.  dtype: compute dtype (default float64 under x64 for float64 input).

    Returns:
      dict with ``energy`` (eV), ``forces`` (n, 3) eV/Å, ``stress`` (3, 3) eV/Å³
      (σ = (1/V) ∂E/∂ε: positive under tension, pressure = −tr σ / 3), ``charges`` (n,)
      or None, ``electrostatics``, ``repulsion`` and ``dispersion`` (eV).
    """
    z, r = validate_structure(atomic_numbers, positions, model.max_atomic_number)
    if getattr(model, "dispersion", None) is not None:
        check_d3_elements(z)
    if dtype is None:
        dtype = np.float64 if (r.dtype == np.float64 and jax.config.jax_enable_x64) else np.float32
    batch = batch_periodic(
        [z], [r], [cell], model.cutoff, total_charges=[total_charge], pair_cutoff=model_pair_cutoff(model),
        dtype=dtype,
    )
    out = jitted_apply(model)(params, batch)
    n = z.shape[0]
    return {
        "energy": float(out["energy"][0]),
        "forces": np.asarray(out["forces"][:n]),
        "stress": np.asarray(out["stress"][0]),
        "charges": None if out["charges"] is None else np.asarray(out["charges"][:n]),
        "electrostatics": float(out["electrostatics"][0]),
        "repulsion": float(out["repulsion"][0]),
        "dispersion": float(out["dispersion"][0]),
    }


def init_params(model, seed: int | jax.Array = 0) -> dict:
    """Freshly initialised variables ``{"params": ...}`` for ``model`` (jitted init, cached per model).

    Parameter shapes do not depend on the structure, so a two-atom dummy (H–H at
    0.74 Å) is enough. ``seed`` is an int or a ``jax.random`` key.
    """
    key = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
    batch = batch_molecules(
        [np.array([1, 1])], [np.array([[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]])], model.cutoff,
        pair_cutoff=model_pair_cutoff(model), dtype=np.dtype(model.param_dtype),
    )
    if model not in _INIT_CACHE:
        _INIT_CACHE[model] = jax.jit(
            lambda k, b: model.init(k, b.atomic_numbers, b.positions, b.dst_idx, b.src_idx, b.atom_segments,
                                    b.num_molecules, b.edge_mask, b.atom_mask, total_charges=b.total_charges,
                                    pair_dst=b.pair_dst, pair_src=b.pair_src, pair_mask=b.pair_mask)
        )
    return _INIT_CACHE[model](key, batch)


_INIT_CACHE: dict = {}
_JIT_CACHE: dict = {}


def jitted_apply(model):
    """One jitted ``apply_batch`` per model configuration (models are hashable dataclasses)."""
    if model not in _JIT_CACHE:
        _JIT_CACHE[model] = jax.jit(lambda params, batch: apply_batch(model, params, batch))
    return _JIT_CACHE[model]
