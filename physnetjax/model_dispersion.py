"""The D3(BJ) dispersion term of :class:`physnetjax.PhysNet` (its damping parameters as a Flax module).

Kept apart from ``model.py`` so that the model only calls :func:`dispersion_per_molecule`;
the physics lives in :mod:`physnetjax.physics.dispersion`.

Parameters: s6, s8, a1, a2 (Bohr) of the chosen functional, and s9 (0 unless the
three-body term is on). With ``trainable=True`` the first four are Flax parameters
θ stored through the inverse softplus and used as softplus(θ) > 0, as in PhysNet
(TF1), initialised to the functional's values; otherwise they are constants.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.errors import PhysNetInputWarning, displayed, warn_caller
from physnetjax.physics.dispersion import d3_atomic_energies, d3_bj_parameters, d3_dispersion_energy, one_direction
from physnetjax.physics.pairs import pair_displacements

DISPERSION_METHODS = ("d3bj",)
"""Values accepted by ``PhysNet(dispersion=...)`` besides None."""
DISPERSION_SWITCH_FRACTION = 0.2
"""The dispersion switch runs over the last 20 % of ``dispersion_cutoff``."""
TRAINABLE_DAMPING = ("s6", "s8", "a1", "a2")
DISPERSION_CUTOFF_DEFAULT = 15.0
"""Default ``dispersion_cutoff`` in Å (the reference s-dftd3 sums pairs to 60 bohr = 31.75 Å and
coordination numbers and ATM triangles to 40 bohr = 21.2 Å)."""
DISPERSION_CUTOFF_WARN = 0.5 * DISPERSION_CUTOFF_DEFAULT
"""A ``dispersion_cutoff`` below this (Å) gives a :class:`~physnetjax.errors.PhysNetInputWarning`.

D3 pair energies fall as C6/r⁶ while the number of pairs grows as r², so the energy left out
beyond a cutoff R falls only as 1/R³. For 64 ethanol molecules at liquid density (576 atoms,
PBE0-D3(BJ), the model's switch over the last 20 %), against the reference cutoffs:

=========  ======================  =============
cutoff Å   D3 energy left out       meV per atom
=========  ======================  =============
15         0.1 %                    0.03
10         1 %                      0.3
7.5        4 %                      1.0
6          10 %                     2.7
5          21 %                     5.4
3          59 %                     15
1          100 %                    26
=========  ======================  =============

(below ~4 Å even an isolated ethanol molecule loses its own D3 energy: 61 % at 2 Å.)
"""


def check_dispersion_settings(method, functional: str, three_body: bool, cutoff, trainable: bool,
                              names: Optional[Mapping[str, str]] = None) -> None:
    """Raise ValueError for settings the dispersion term cannot honour (``cutoff`` in Å).

    ``names``: the model's field (``dispersion``, ``dispersion_cutoff``, ``dispersion_trainable``) → how the
    messages name it (a command line passes its options); by default the field itself. A cutoff below
    :data:`DISPERSION_CUTOFF_WARN` (Å) gives a :class:`~physnetjax.errors.PhysNetInputWarning` saying what
    the truncation costs; it names no setting, so that the model's own check at every call repeats the
    warning of a command line's earlier check word for word (shown once).
    """
    if method is None:
        return
    if method not in DISPERSION_METHODS:
        raise ValueError(f"{displayed('dispersion', names)} must be None or one of {DISPERSION_METHODS}, "
                         f"received {method!r}")
    parameters = d3_bj_parameters(functional)
    if isinstance(cutoff, (bool, np.bool_)) or not isinstance(cutoff, numbers.Real) or not (
            math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"{displayed('dispersion_cutoff', names)} must be a positive, finite distance in Å, "
                         f"received {cutoff!r}")
    if cutoff < DISPERSION_CUTOFF_WARN:
        if cutoff < 4.0:
            cost = ("even within one molecule (ethanol alone loses 14 / 61 / 100 % of its D3 energy at 3 / 2 / 1 Å); "
                    "a cutoff this short is no D3")
        else:
            cost = ("in liquid ethanol a cutoff of 7.5 / 6 / 5 Å leaves out 4 / 10 / 21 % of the dispersion energy "
                    "(1.0 / 2.7 / 5.4 meV per atom); right only for molecules smaller than the cutoff")
        warn_caller(
            f"the D3 dispersion cutoff of {cutoff:g} Å is below {DISPERSION_CUTOFF_WARN:g} Å, half the default "
            f"{DISPERSION_CUTOFF_DEFAULT:g} Å (the reference s-dftd3 sums D3 pairs to 31.75 Å): D3 pair energies "
            "decay only as C6/r⁶, so every pair and coordination-number count beyond the cutoff is dropped "
            f"(switched off from {(1 - DISPERSION_SWITCH_FRACTION) * cutoff:g} Å), {cost}; use a dispersion cutoff "
            f">= {DISPERSION_CUTOFF_WARN:g} Å", PhysNetInputWarning)
    if trainable:
        bad = [name for name in TRAINABLE_DAMPING if getattr(parameters, name) <= 0.0]
        if bad:
            raise ValueError(
                f"{displayed('dispersion_trainable', names)} keeps {', '.join(TRAINABLE_DAMPING)} positive through "
                f"a softplus, but {functional!r} has {', '.join(f'{n} = {getattr(parameters, n)}' for n in bad)}"
            )


class DispersionParameters(nn.Module):
    """D3(BJ) damping parameters of ``functional``, fixed or trainable (softplus-positive)."""

    functional: str = "pbe0"
    three_body: bool = False
    trainable: bool = False
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self) -> dict:
        reference = d3_bj_parameters(self.functional)
        values = {name: getattr(reference, name) for name in ("s6", "s8", "a1", "a2", "s9", "alp")}
        if not self.three_body:
            values["s9"] = 0.0
        if self.trainable:
            for name in TRAINABLE_DAMPING:
                raw = float(np.log(np.expm1(values[name])))
                theta = self.param(name, lambda key, shape, dtype, v=raw: jnp.full(shape, v, dtype), (),
                                   self.param_dtype)
                values[name] = jax.nn.softplus(theta)
        return values


def dispersion_per_molecule(atomic_numbers, positions, pair_dst, pair_src, pair_mask, pair_shifts, pair_vectors,
                            segments, num_molecules: int, parameters: dict, cutoff: float, triplets=None,
                            deformation=None, pair_halves: bool = False):
    """E_D3 per molecule in eV, (B,), over a full directed pair list (see the physics module).

    Args: positions (N, 3) Å (already deformed); the pair list (P,) with its image
    shifts (P, 3) Å or None *before* the deformation, and its vectors (P, 3) Å =
    r_src − r_dst + shift *after* it; ``triplets`` = ((T, 2) pair indices, (T,) mask)
    for the ATM term, or None; ``deformation``: (B, 3, 3) I + ε of the strain
    derivative (stress), or None. The image shifts are deformed here, for the half
    list only (a shift s of molecule b becomes s · deformation[b]). ``pair_halves``:
    the list is in halves layout (:mod:`physnetjax.neighbors.halves`), so its first
    half is the half list, a static slice.

    The two-body energy, the coordination numbers and each side of an ATM triangle are
    switched off smoothly over [(1 − 0.2) · cutoff, cutoff]. Without ATM each unordered
    pair is selected once *before* its vector is formed, so only half the list's vectors
    (and their gradients) are computed.
    """
    parameters = {k: jnp.asarray(v, pair_vectors.dtype) for k, v in parameters.items()}
    settings = dict(cutoff=cutoff, switch_width=DISPERSION_SWITCH_FRACTION * cutoff)
    # a host batch's NumPy indices are indexed below by arrays traced from the pair vectors (a jitted function
    # closing over the batch): as JAX arrays they can be
    atomic_numbers, pair_dst, pair_src, segments = map(jnp.asarray, (atomic_numbers, pair_dst, pair_src, segments))
    if triplets is not None:
        return d3_dispersion_energy(
            atomic_numbers, pair_vectors, pair_dst, pair_src, pair_mask, segments, num_molecules, parameters,
            triplets=triplets[0], triplet_mask=triplets[1], three_body_cutoff=cutoff, **settings,
        )
    if pair_halves:
        half = slice(0, pair_dst.shape[0] // 2)
        half_mask = pair_mask[half]
    else:
        half, half_mask = one_direction(pair_dst, pair_src, pair_vectors if pair_shifts is None else pair_shifts,
                                        pair_mask)
    dst, src = pair_dst[half], pair_src[half]
    vectors = pair_displacements(positions, dst, src)
    if pair_shifts is not None:
        shifts = pair_shifts[half]
        if deformation is not None:
            # s · D as three broadcast products: one (3, 3) matrix for a single cell, else
            # one per pair; XLA fuses these, where a batched (P, 3) × (3, 3) dot is slow on CPU.
            rows = deformation[0][None] if num_molecules == 1 else deformation[segments[dst]]
            shifts = shifts[:, 0:1] * rows[:, 0] + shifts[:, 1:2] * rows[:, 1] + shifts[:, 2:3] * rows[:, 2]
        vectors = vectors + shifts
    return d3_dispersion_energy(atomic_numbers, vectors, dst, src, half_mask, segments, num_molecules, parameters,
                                half_list=True, **settings)


def dispersion_per_atom(atomic_numbers, pair_dst, pair_src, pair_mask, pair_vectors, parameters: dict,
                        cutoff: float, triplets=None):
    """E_D3 split among the atoms in eV, (N,): ½ of each pair energy, ⅓ of each ATM triangle.

    The per-atom split (:func:`~physnetjax.physics.dispersion.d3_atomic_energies`) of
    :func:`dispersion_per_molecule`'s energy, with the same switch, over the full directed
    pair list with its vectors (P, 3) Å; ``triplets`` = ((T, 2) pair indices, (T,) mask) or None.
    """
    parameters = {k: jnp.asarray(v, pair_vectors.dtype) for k, v in parameters.items()}
    three_body = {} if triplets is None else dict(triplets=triplets[0], triplet_mask=triplets[1],
                                                  three_body_cutoff=cutoff)
    return d3_atomic_energies(atomic_numbers, pair_vectors, pair_dst, pair_src, pair_mask, parameters, cutoff=cutoff,
                              switch_width=DISPERSION_SWITCH_FRACTION * cutoff, **three_body)


def with_dispersion(model, functional: str = "pbe0", cutoff: float = DISPERSION_CUTOFF_DEFAULT):
    """``model`` with a fixed D3(BJ) term added at inference; its parameters work unchanged.

    For a model trained on data *without* dispersion: E = E_model + E_D3(functional).
    The damping parameters are constants (no new parameters), so the same ``params``
    apply. Raises ValueError if the model already has a dispersion term.
    """
    if model.dispersion is not None:
        raise ValueError(f"the model already has dispersion={model.dispersion!r} "
                         f"({model.dispersion_functional}); refusing to add a second one")
    check_dispersion_settings("d3bj", functional, False, cutoff, False)
    return model.clone(dispersion="d3bj", dispersion_functional=functional, dispersion_cutoff=cutoff,
                       dispersion_three_body=False, dispersion_trainable=False)
