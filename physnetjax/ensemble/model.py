"""A K-member ensemble of one PhysNet architecture, evaluated by one compiled call over its members.

:class:`PhysNetEnsemble` holds one member :class:`~physnetjax.model.PhysNet` and the
member count K. Its parameters are the member's variables with a leading axis of
length K on every leaf ("stacked": leaf ``[k]`` belongs to member k), so K members
cost one compiled program (:func:`map_members`: a ``jax.lax.map`` over the member
axis, one dispatch, not K calls). It stands in for a PhysNet wherever a consumer takes
``(model, params)`` (``predict``, the ASE calculator, MD, ``check``): it has the
member's attributes (``cutoff``, ``charges``, ``max_atomic_number``, pair cutoffs, ...)
and ``apply`` with PhysNet's call signature, returning PhysNet's output dict with
every entry the *mean over members*, plus the member spread (K members, outputs
x_k, mean x̄ = (1/K) Σ_k x_k, scale s = ``calibration_scale``)::

    energy_std[b]  = s · sqrt((1/K) Σ_k (E_k,b − Ē_b)²)               (B,)  eV
    energies_std[i] = s · sqrt((1/K) Σ_k (E_k,i − Ē_i)²)              (N,)  eV     (per-atom energies)
    forces_std[i]  = s · sqrt((1/K) Σ_k |F_k,i − F̄_i|²)              (N,)  eV/Å
    charges_std[i] = s · sqrt((1/K) Σ_k (q_k,i − q̄_i)²)              (N,)  e      (None without charges)
    dipoles_std[b] = s · sqrt((1/K) Σ_k |μ_k,b − μ̄_b|²)              (B,)  e·Å    (None without charges)
    stress_std[b]  = s · sqrt((1/K) Σ_k ‖σ_k,b − σ̄_b‖²_F)            (B,)  eV/Å³  (periodic cells only)

The spreads are population standard deviations (divisor K). ``forces_std`` and
``dipoles_std`` are the root-mean-square Euclidean distance of a member's vector
from the mean vector (not a per-component std; the per-component std of an
isotropic spread is ``forces_std / √3``), so they compare directly with the norm
of a force error |F_pred − F_ref|. Padded atoms have ``forces_std`` 0.

The mean forces are the negated gradient of the mean energy (the mean is linear:
(1/K) Σ_k −∂E_k/∂R = −∂Ē/∂R), so MD with an ensemble conserves Ē.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from physnetjax.model import PhysNet

ENSEMBLE_FIELDS = ("size", "calibration_scale")
"""Fields of the ensemble itself; every other ``clone`` argument goes to the member."""

MEMBER_PROPERTIES = ("sr_cutoff", "repulsion_cutoff", "supported_max_atomic_number")
"""Derived member attributes readable on the ensemble besides the member's constructor fields."""


def map_members(function, stacked):
    """``function`` applied to every member's slice of the pytree ``stacked`` (leading axis K), results stacked.

    On the CPU one compiled program runs the members one after another (``jax.lax.map``);
    on an accelerator they run side by side (``jax.vmap``); either result equals
    ``jax.vmap(function)(stacked)``. Why not ``vmap`` on the CPU: a vmapped member
    axis makes every intermediate (edge messages, their scatters, the backward pass)
    K times larger, so on XLA:CPU they leave the cache. Measured on 2 CPU cores with
    the default trainer model (features 32, 2 iterations; wall time, interleaved
    calls, compiled as :mod:`physnetjax.compilation` compiles them; see
    benchmarks/README.md "Ensemble cost"): energy+forces of K = 4 members cost
    2.0x / 2.1-2.3x / 2.1-2.2x one member for 1 / 16 / 64 ethanol molecules with
    ``lax.map`` and 1.8x / 2.6x / 7.4x with ``vmap``. On an NVIDIA H200, where such a
    call is bound by kernel launches, not arithmetic: 1.44-1.53x with ``lax.map`` and
    0.93-1.05x with ``vmap`` for 1 and 16 molecules (benchmarks/README.md, "On a GPU").
    The choice is made when ``function`` is traced, by ``jax.default_backend()``.
    """
    if jax.default_backend() == "cpu":
        return jax.lax.map(function, stacked)
    return jax.vmap(function)(stacked)


def is_ensemble(model) -> bool:
    """True for a :class:`PhysNetEnsemble`."""
    return isinstance(model, PhysNetEnsemble)


@dataclasses.dataclass(frozen=True)
class PhysNetEnsemble:
    """K PhysNet members of one architecture with stacked parameters (see module docstring).

    Attributes:
      member: the architecture of every member (a :class:`~physnetjax.model.PhysNet`).
      size: number of members K (≥ 2).
      calibration_scale: s > 0 multiplying every reported spread
        (:func:`physnetjax.ensemble.calibration.fit_calibration_scale`; 1 = uncalibrated).

    Every constructor field of the member (``cutoff``, ``charges``, ``zbl``, ...) and
    its ``sr_cutoff``/``repulsion_cutoff`` can be read on the ensemble.

    Raises:
      ValueError: ``size`` < 2, a non-positive or non-finite ``calibration_scale``, or
        a ``member`` that is not a PhysNet.
    """

    member: PhysNet
    size: int
    calibration_scale: float = 1.0

    def __post_init__(self):
        if not isinstance(self.member, PhysNet):
            raise ValueError(f"member must be a PhysNet, received {type(self.member).__name__}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 2:
            raise ValueError(f"an ensemble needs size >= 2 members, received {self.size!r}")
        scale = float(self.calibration_scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"calibration_scale must be finite and > 0, received {self.calibration_scale!r}")
        object.__setattr__(self, "calibration_scale", scale)

    def __getattr__(self, name: str) -> Any:
        if name != "member" and (name in PhysNet.__dataclass_fields__ or name in MEMBER_PROPERTIES):
            return getattr(self.member, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -- configuration ---------------------------------------------------------------

    def config(self) -> dict:
        """``{"ensemble_size": K, "calibration_scale": s, "member": PhysNet.config()}`` (JSON-serialisable)."""
        return {"ensemble_size": self.size, "calibration_scale": self.calibration_scale,
                "member": self.member.config()}

    @classmethod
    def from_config(cls, cfg: dict) -> "PhysNetEnsemble":
        """The ensemble of a :meth:`config` dict; a missing ``calibration_scale`` means 1."""
        return cls(member=PhysNet.from_config(cfg["member"]), size=int(cfg["ensemble_size"]),
                   calibration_scale=float(cfg.get("calibration_scale", 1.0)))

    def clone(self, **changes) -> "PhysNetEnsemble":
        """A copy with ``size``/``calibration_scale`` and any member field (e.g. ``edge_chunk_size``) changed."""
        own = {key: changes.pop(key) for key in ENSEMBLE_FIELDS if key in changes}
        member = self.member.clone(**changes) if changes else self.member
        return dataclasses.replace(self, member=member, **own)

    # -- parameters and evaluation ---------------------------------------------------

    def init(self, key, *args, **kwargs) -> dict:
        """Stacked variables of K members initialised from ``jax.random.split(key, K)`` (member.init's arguments)."""
        keys = jax.random.split(key, self.size)
        return jax.vmap(lambda k: self.member.init(k, *args, **kwargs))(keys)

    def member_outputs(self, params, *args, **kwargs) -> dict:
        """Every member's PhysNet output, stacked on a leading axis K (:func:`map_members`; PhysNet.apply's arguments)."""
        return map_members(lambda p: self.member.apply(p, *args, **kwargs), params)

    def apply(self, params, *args, **kwargs) -> dict:
        """Ensemble mean of PhysNet's outputs plus the calibrated spreads (module docstring).

        Args:
          params: stacked variables (leading axis K on every leaf).
          args, kwargs: exactly those of :meth:`physnetjax.model.PhysNet.__call__`.

        Returns:
          PhysNet's output dict, each entry the mean over members, plus
          ``energy_std`` (B,) eV, ``energies_std`` (N,) eV (spread of the per-atom energies),
          ``forces_std`` (N,) eV/Å, ``charges_std`` (N,) e and
          ``dipoles_std`` (B,) e·Å (the last two None for a model without charges;
          ``forces_std`` None for ``compute_forces=False``).
        """
        outputs = self.member_outputs(params, *args, **kwargs)
        return ensemble_statistics(outputs, self.calibration_scale)


def _rms_distance(stacked: jax.Array, vector: bool) -> jax.Array:
    """sqrt((1/K) Σ_k |x_k − x̄|²) over the leading member axis; ``vector``: |·| over the last axis."""
    squared = (stacked - jnp.mean(stacked, axis=0)) ** 2
    if vector:
        squared = jnp.sum(squared, axis=-1)
    return jnp.sqrt(jnp.mean(squared, axis=0))


def ensemble_statistics(outputs: dict, calibration_scale: float = 1.0) -> dict:
    """Mean of every stacked output (leading axis K) and the spreads of the module docstring, times the scale."""
    result = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), outputs)
    result["energy_std"] = calibration_scale * _rms_distance(outputs["energy"], vector=False)
    if outputs.get("energies") is not None:
        result["energies_std"] = calibration_scale * _rms_distance(outputs["energies"], vector=False)
    forces, charges, dipoles = outputs.get("forces"), outputs.get("charges"), outputs.get("dipoles")
    result["forces_std"] = None if forces is None else calibration_scale * _rms_distance(forces, vector=True)
    result["charges_std"] = None if charges is None else calibration_scale * _rms_distance(charges, vector=False)
    result["dipoles_std"] = None if dipoles is None else calibration_scale * _rms_distance(dipoles, vector=True)
    stress = outputs.get("stress")
    if stress is not None:  # the Frobenius distance: the nine components as one vector
        result["stress_std"] = calibration_scale * _rms_distance(stress.reshape(*stress.shape[:2], 9), vector=True)
    return result


def member_params(params, k: int):
    """The variables of member ``k`` (leaf ``[k]`` of every stacked leaf), 0 ≤ k < K (negative k counts from the
    end, as in Python).

    Raises:
      IndexError: k outside −K … K − 1 (JAX arrays clamp an index beyond their ends: member 5 of 2 was member 1).
    """
    size = len(jax.tree_util.tree_leaves(params)[0])
    if not -size <= operator.index(k) < size:
        raise IndexError(f"member {k} of an ensemble of {size} members: members are 0 … {size - 1}")
    return jax.tree_util.tree_map(lambda leaf: leaf[k], params)


def stack_members(members: Sequence) -> Any:
    """Stacked ensemble variables from K ≥ 2 members' variables of identical structure and shapes.

    Raises:
      ValueError: fewer than 2 members, or members whose parameter trees or leaf
        shapes differ (the first difference is named).
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, received {len(members)}")
    reference = _leaf_shapes(members[0])
    for k, tree in enumerate(members[1:], start=1):
        shapes = _leaf_shapes(tree)
        if shapes != reference:
            raise ValueError(f"member {k} does not have member 0's parameters: {_first_difference(reference, shapes)}")
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack([jnp.asarray(x) for x in leaves]), *members)


def member_count_mismatch(model: PhysNetEnsemble, params) -> Optional[str]:
    """A message when the leaves of ``params`` do not all have leading axis ``model.size``, else None."""
    counts = {int(jnp.shape(leaf)[0]) if jnp.ndim(leaf) else 0 for leaf in jax.tree_util.tree_leaves(params)}
    if counts == {model.size}:
        return None
    if len(counts) == 1:
        return f"the model is an ensemble of {model.size} members but the parameters hold {counts.pop()} member(s)"
    found = ", ".join(str(c) for c in sorted(counts))
    return (f"the model is an ensemble of {model.size} members but the parameters are not stacked (their leading "
            f"axes have lengths {found}; stack the members with physnetjax.ensemble.stack_members)")


def _leaf_shapes(tree) -> dict:
    return {jax.tree_util.keystr(path): tuple(jnp.shape(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _first_difference(reference: dict, other: dict) -> str:
    """The first parameter (sorted by path) that is missing from, extra in, or shaped differently in ``other``."""
    name = min(name for name in set(reference) | set(other) if reference.get(name) != other.get(name))
    if name not in other:
        return f"{name} missing"
    if name not in reference:
        return f"{name} not in member 0"
    return f"{name} has shape {other[name]}, member 0 has {reference[name]}"
