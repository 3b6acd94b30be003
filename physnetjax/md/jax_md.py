"""A PhysNet model as a jax_md energy function (optional; ``pip install physnetjax[jaxmd]``).

:func:`jax_md_energy_fn` returns ``energy_fn(R, neighbor=None, **kwargs) -> E`` (scalar,
eV) for positions R (N, 3) in Å (or fractional, with ``periodic_general(...,
fractional_coordinates=True)``), the form jax_md's integrators take
(``simulate.nve(energy_fn, shift_fn, dt)``, ``simulate.nvt_langevin(...)``); jax_md
computes the forces itself as F = −∂E/∂R (``quantity.force``; for fractional R jax_md's
``transform`` makes that gradient the real-space one, in eV/Å).
:func:`jax_md_neighbor_list` builds the matching ``jax_md.partition.neighbor_list``
with the model's reach, in jax_md's ``Sparse`` format (a full directed list of pairs,
the layout of physnetjax's own edge lists); the energy function also accepts
``Dense`` and ``OrderedSparse`` lists. Check ``nbrs.did_buffer_overflow`` outside jit,
as for any jax_md list.

Edges. Each neighbor slot (i, j) becomes the edge i ← j with edge vector
d_ij = displacement_fn(R_j, R_i), the vector jax_md's space defines (minimum image
in a periodic space). The model sees it as r_j − r_i + s_ij with the shift

    s_ij = displacement_fn(R_j, R_i) − (R_j − R_i),

so free, periodic and periodic_general spaces (fractional coordinates included) all
work, and gradients flow through ``displacement_fn`` (∂s/∂R cancels the wrap); keyword
arguments of ``energy_fn`` (``box=``, ``perturbation=``) go to ``displacement_fn``, so
``quantity.stress`` works with periodic_general too (jax_md's sign: −1 × physnetjax's
``stress``). A slot holding the index N is empty: it is masked and contributes exactly
zero. With ``neighbor=None`` the model uses all N(N−1) directed pairs.

Periodic boxes. jax_md keeps one (minimum) image per pair, which is exact when every
perpendicular width w of the box satisfies w ≥ 2 · reach (reach = the largest of the
message-passing cutoff and the pair-term reach); both functions check it when given
the ``box``. Models whose pair terms need *all* pairs (charges without
``coulomb_lr_cutoff``) only work in free space; there the pair terms use a fixed list
of all pairs and the messages the neighbor list.

Three-body dispersion (``dispersion_three_body=True``). The ATM term needs triplets of
the pair-term list. With ``neighbor=None`` (or pair terms over all pairs) they are every
pair-of-pairs of the all-pairs list, fixed. With a jax_md list it must be in
``NeighborListFormat.Dense``: each atom's row of M slots then bounds its triplets by
M(M−1)/2, so the triplets are every slot pair (a, b), a < b, of each row, a static list of
N·M(M−1)/2 entries masked by the slots' occupancy: none can be dropped, and jax_md's own
``did_buffer_overflow`` covers the list. ``Sparse`` lists (no such bound) raise ValueError.

Units. jax_md has none of its own: with R in Å, E in eV and masses in amu its time
unit is τ = Å·√(amu/eV) = :data:`JAX_MD_TIME_UNIT_FS` fs ≈ 10.18 fs (ASE's). So
dt_jax_md = dt[fs] / JAX_MD_TIME_UNIT_FS, momenta are amu·Å/τ = p[amu·Å/fs] ·
JAX_MD_TIME_UNIT_FS, kT is in eV (k_B T with ``physnetjax.units.BOLTZMANN``) and a
Langevin friction γ is in 1/τ = γ[fs⁻¹] · JAX_MD_TIME_UNIT_FS. jax_md rounds dt to
float32 (relative 6e-8) inside its integrators.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.neighbors import (
    apply_batch,
    model_pair_cutoff,
    model_triplet_cutoff,
    molecule_pairs,
    one_system_batch,
    pair_triplets,
)
from physnetjax.units import ASE_TIME_UNIT_FS

JAX_MD_TIME_UNIT_FS = ASE_TIME_UNIT_FS
"""jax_md's time unit Å·√(amu/eV) in fs (≈ 10.18) when R is in Å, E in eV and masses in amu."""

_MISSING = (
    "physnetjax.md.jax_md needs the optional dependency jax-md: pip install physnetjax[jaxmd]"
)


def _jax_md():
    try:
        import jax_md
        import jax_md.partition
    except ImportError as err:
        raise ImportError(_MISSING) from err
    return jax_md


def model_reach(model) -> float | None:
    """Radius in Å a neighbor list needs for ``model``: max(cutoff, pair-term reach).

    None when the pair terms need all pairs (charges without ``coulomb_lr_cutoff``);
    the message-passing edges then still only need ``model.cutoff``.
    """
    pair_cutoff = model_pair_cutoff(model)
    if pair_cutoff is None:
        return None
    return max(float(model.cutoff), float(pair_cutoff))


def _box_widths(box) -> np.ndarray:
    """Perpendicular widths (3,) Å of a jax_md box: scalar, (3,) side lengths or (3, 3) lattice vectors as columns."""
    box = np.asarray(box, dtype=np.float64)
    if box.ndim == 0:
        return np.full(3, float(box))
    if box.ndim == 1:
        return box
    # Columns of the box are the lattice vectors, so the rows of its inverse are the
    # reciprocal vectors b_k with |b_k| = 1 / w_k.
    return 1.0 / np.linalg.norm(np.linalg.inv(box), axis=1)


def _check_box(model, box) -> None:
    reach = model_reach(model)
    if reach is None:
        raise ValueError(
            "this model's pair terms need all pairs (charges without coulomb_lr_cutoff), which a "
            "periodic box does not have; use a model with coulomb_lr_cutoff, or free space (box=None)"
        )
    widths = _box_widths(box)
    if np.min(widths) < 2.0 * reach:
        raise ValueError(
            f"the box is too narrow for jax_md's minimum-image neighbor list: its smallest "
            f"perpendicular width {np.min(widths):.4g} Å is below 2 x the model's reach "
            f"{reach:.4g} Å (use a supercell)"
        )


PROBE_SEPARATION = 1.0e6
"""Å (or box fractions) between the two points :func:`_check_free_space` gives the displacement function: a
periodic space wraps it to at most half a box diagonal."""


def _check_free_space(displacement_fn: Callable) -> None:
    """ValueError when ``displacement_fn``, given as free space (no ``box``), wraps a separation of
    :data:`PROBE_SEPARATION` along each axis: it is periodic, and the box's widths, which a box narrower than twice
    the model's reach turns into wrong energies (16 meV off on ethanol in an 8 Å box), would go unchecked. A
    function that cannot be called without its keyword arguments is left unjudged."""
    far = jnp.full(3, PROBE_SEPARATION, jnp.float32)
    try:
        length = float(jnp.linalg.norm(displacement_fn(far, jnp.zeros(3, jnp.float32))))
    except TypeError:
        return
    if not length >= 0.99 * float(jnp.linalg.norm(far)):
        raise ValueError(
            f"displacement_fn is periodic (it wraps a separation of {PROBE_SEPARATION:g} along each axis to "
            f"{length:.4g}) but no box was given: pass box= as given to the jax_md space, so that its widths are "
            "checked against twice the model's reach (jax_md keeps one image per pair)")


def jax_md_neighbor_list(
    model,
    displacement_fn: Callable,
    box=None,
    *,
    dr_threshold: float = 0.5,
    capacity_multiplier: float = 1.25,
    **neighbor_kwargs: Any,
):
    """A ``jax_md.partition.neighbor_list`` (``Sparse`` format) with the reach of ``model``.

    Its radius is :func:`model_reach` (the message-passing cutoff, or the pair-term
    reach if larger) plus the skin ``dr_threshold`` Å; jax_md rebuilds it when an atom
    has moved more than dr_threshold/2. As with any jax_md list, check
    ``nbrs.did_buffer_overflow`` outside jit and re-allocate when it is set.

    Args:
      model: a :class:`physnetjax.PhysNet`.
      displacement_fn: jax_md displacement function of the space.
      box: the periodic box as given to the jax_md space (scalar, (3,) side lengths or
        (3, 3) lattice vectors as columns) in Å, or None for free space (then the list
        is searched over all pairs, without a cell list).
      dr_threshold: skin in Å.
      capacity_multiplier: head-room of the pair capacity.
      **neighbor_kwargs: passed to ``jax_md.partition.neighbor_list`` (e.g.
        ``fractional_coordinates=True``, or ``format=NeighborListFormat.Dense``); a
        ``custom_mask_function`` gets the candidates cast to int32 (:func:`_int32_candidates`).

    Returns:
      jax_md ``NeighborListFns`` (``allocate(R)``, ``update(R, nbrs)``).

    Raises:
      ImportError: jax-md is not installed.
      ValueError: a periodic box with a model whose pair terms need all pairs, or a box
        narrower than twice the model's reach.
    """
    jax_md = _jax_md()
    neighbor_kwargs.setdefault("format", jax_md.partition.NeighborListFormat.Sparse)
    neighbor_kwargs["custom_mask_function"] = _int32_candidates(neighbor_kwargs.get("custom_mask_function"))
    if box is None:
        reach = model_reach(model)
        radius = float(model.cutoff) if reach is None else reach
        neighbor_kwargs.setdefault("disable_cell_list", True)
        box = 1.0  # not used without a cell list
    else:
        _check_box(model, box)
        radius = model_reach(model)
    return jax_md.partition.neighbor_list(
        displacement_fn,
        box,
        radius,
        dr_threshold=dr_threshold,
        capacity_multiplier=capacity_multiplier,
        **neighbor_kwargs,
    )


def _int32_candidates(custom_mask_function: Callable | None = None) -> Callable:
    """A ``custom_mask_function`` for ``jax_md.partition.neighbor_list`` that casts the candidate indices to int32,
    then applies ``custom_mask_function`` (the caller's own, if any).

    Without a cell list (free space) jax_md's candidates are ``jnp.arange(N)`` of the default integer type, int64
    once x64 is enabled (float64 runs); pruning them into its int32 index list is a scatter JAX warns about
    ("scatter inputs have incompatible types", a FutureWarning that later JAX releases make an error). The cast
    removes it for the ``Dense`` format (the one the three-body term needs); jax_md's ``Sparse`` pruning also
    scatters its own int64 ``arange`` of senders, which no argument reaches.
    """

    def mask(idx):
        idx = idx.astype(jnp.int32)
        return idx if custom_mask_function is None else custom_mask_function(idx)

    return mask


def _edges_of(neighbor, n: int, formats):
    """(dst, src, mask) of a jax_md neighbor list; empty slots (index N) masked, pointed at atom N − 1.

    A list without slots (allocated where no two atoms were within reach) gets one masked slot: the model's edge
    arrays cannot be empty.
    """
    idx = neighbor.idx
    if neighbor.format is formats.Dense:
        dst = jnp.repeat(jnp.arange(n, dtype=idx.dtype), idx.shape[1])
        src = idx.reshape(-1)
    elif neighbor.format is formats.Sparse:
        dst, src = idx[0], idx[1]
    elif neighbor.format is formats.OrderedSparse:
        # Each unordered pair once: add the reverse direction for a full directed list.
        dst = jnp.concatenate([idx[0], idx[1]])
        src = jnp.concatenate([idx[1], idx[0]])
    else:
        raise ValueError(f"unknown jax_md neighbor-list format {neighbor.format!r}")
    if dst.shape[0] == 0:
        dst = src = jnp.full((1,), n, dtype=idx.dtype)
    mask = (dst < n) & (src < n)
    dst = jnp.where(mask, dst, n - 1).astype(jnp.int32)
    src = jnp.where(mask, src, n - 1).astype(jnp.int32)
    return dst, src, mask


def jax_md_energy_fn(
    model,
    params,
    atomic_numbers,
    displacement_fn: Callable,
    *,
    box=None,
    total_charge: float = 0.0,
) -> Callable[..., jax.Array]:
    """``energy_fn(R, neighbor=None, **kwargs) -> E`` (eV, scalar) of ``model`` for jax_md.

    Args:
      model: a :class:`physnetjax.PhysNet`.
      params: its variables ``{"params": ...}``, in the dtype of the positions.
      atomic_numbers: (N,) ints.
      displacement_fn: jax_md displacement function (``space.free()``,
        ``space.periodic(...)``, ``space.periodic_general(...)``); ``**kwargs`` of
        ``energy_fn`` (e.g. ``box=`` for a changing periodic_general box) go to it.
      box: the periodic box as given to the jax_md space (scalar, (3,) or (3, 3) with
        lattice vectors as columns) in Å, only to check it (see module docstring);
        None for free space (a periodic ``displacement_fn`` without it is refused).
      total_charge: total charge Q in e.

    ``neighbor`` is a jax_md neighbor list (any format; see
    :func:`jax_md_neighbor_list`) holding every pair within the model's reach, or None
    for all pairs. Jit-able and differentiable in R.

    Raises:
      ImportError: jax-md is not installed.
      ValueError: see :func:`jax_md_neighbor_list`.
    """
    formats = _jax_md().partition.NeighborListFormat
    if box is not None:
        _check_box(model, box)
    else:
        _check_free_space(displacement_fn)
    z = jnp.asarray(np.asarray(atomic_numbers), jnp.int32)
    n = int(z.shape[0])
    all_dst, all_src = molecule_pairs(np.zeros((n, 3)), None)  # all n(n−1) ordered pairs
    needs_all_pairs = model_pair_cutoff(model) is None
    three_body = model_triplet_cutoff(model) is not None
    all_triplets = pair_triplets(all_dst, np.ones(len(all_dst), bool)) if three_body else None

    def triplet_fields(neighbor, mask):
        if not three_body:
            return {}
        if neighbor is None or needs_all_pairs:
            return {"triplets": jnp.asarray(all_triplets)}
        if neighbor.format is not formats.Dense:
            raise ValueError(
                "the three-body dispersion term (dispersion_three_body=True) needs a jax_md neighbor list in "
                "NeighborListFormat.Dense, whose rows bound the triplets: jax_md_neighbor_list(..., "
                f"format=jax_md.partition.NeighborListFormat.Dense); received {neighbor.format}")
        triplets = jnp.asarray(_row_triplets(n, neighbor.idx.shape[1]))
        return {"triplets": triplets, "triplet_mask": mask[triplets[:, 0]] & mask[triplets[:, 1]]}

    def shifts_of(positions, dst, src, **kwargs):
        # The displacement r_src − r_dst of each pair is its minimum image, taken once per unordered pair (higher
        # index minus lower) and negated for the other direction: two atoms exactly half a box apart (a perfect
        # supercell) have two minimum images, and jax_md's wrap picks the same one for both directions, which would
        # list i <- j and j <- i with the same shift, not a full list. kwargs (e.g. box=) are the same for every
        # pair: bind them before vmapping.
        higher, lower = jnp.maximum(dst, src), jnp.minimum(dst, src)
        minimum_image = jax.vmap(functools.partial(displacement_fn, **kwargs))(positions[higher], positions[lower])
        r_src, r_dst = positions[src], positions[dst]
        return jnp.where((src > dst)[:, None], minimum_image, -minimum_image) - (r_src - r_dst)

    def energy_fn(R, neighbor=None, **kwargs):
        R = jnp.asarray(R)
        if neighbor is None:
            dst, src = jnp.asarray(all_dst), jnp.asarray(all_src)
            mask = jnp.ones(dst.shape, dtype=bool)
        else:
            dst, src, mask = _edges_of(neighbor, n, formats)
        pair_fields = {}
        if needs_all_pairs and neighbor is not None:
            pair_dst, pair_src = jnp.asarray(all_dst), jnp.asarray(all_src)
            pair_fields = {
                "pair_dst": pair_dst,
                "pair_src": pair_src,
                "pair_mask": jnp.ones(pair_dst.shape, dtype=bool),
                "pair_shifts": shifts_of(R, pair_dst, pair_src, **kwargs),
            }
        batch = one_system_batch(z, R, dst, src, mask, total_charge=total_charge,
                                 shifts=shifts_of(R, dst, src, **kwargs), **pair_fields,
                                 **triplet_fields(neighbor, mask))
        return apply_batch(model, params, batch)["energy"][0]

    return energy_fn


def _row_triplets(num_atoms: int, width: int) -> np.ndarray:
    """(N · M(M−1)/2, 2) int32 slot pairs (i·M + a, i·M + b), a < b, of a Dense list's rows (host)."""
    a, b = np.triu_indices(width, k=1)
    rows = np.arange(num_atoms)[:, None] * width
    return np.stack([(rows + a).ravel(), (rows + b).ravel()], axis=1).astype(np.int32)
