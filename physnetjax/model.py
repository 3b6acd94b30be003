"""The PhysNet model as a Flax module (``PhysNet``, legacy name ``EF``).

Total energy of molecule b (DESIGN.md §2)::

    E_b = Σ_{i∈b} [E_i^NN + b_E[Z_i]] + E_elec,b + E_rep,b (+ E_disp,b)

* E_i^NN: e3x message passing (embedding → ``num_iterations`` × (MessagePass +
  refinement block) → scalar head), laid out exactly like the original ``EF`` so
  that legacy parameter trees apply unchanged (Flax auto-names ``Embed_0``,
  ``MessagePass_k``, ``Dense_k`` with one counter shared by e3x and flax Dense).
* E_elec = k_e Σ_{i<j} q_i q_j χ(r_ij), charges corrected to the total charge Q.
* E_rep = ZBL repulsion with the universal coefficients (trainable), smoothly
  switched off at ``zbl_cutoff``.
* E_disp = Grimme D3 with Becke–Johnson damping (``dispersion="d3bj"``), smoothly
  switched off at ``dispersion_cutoff`` (:mod:`physnetjax.model_dispersion`).

Per-atom energies (output ``energies``, (N,) eV; ASE's "energies"): the NN energy of the
atom with its reference, half of each pair term the atom is in and a third of each ATM
triangle, so that Σ_{i∈b} E_i = E_b::

    E_i = E_i^NN + b_E[Z_i] + ½ Σ_j (e^elec_ij + e^rep_ij + e^disp_ij) + ⅓ Σ_{j<k} e^ATM_ijk

(over the full directed pair list, with periodic images: an atom's pair with its own
image gives it both halves). The split is a convention; only the sum is physical.

Forces are F = −∂(Σ_b E_b)/∂R from one ``jax.value_and_grad`` in
:meth:`PhysNet.__call__`; for periodic systems the same call differentiates with
respect to a homogeneous strain ε to give the stress σ = (1/V) ∂E/∂ε. With
``compute_forces=False`` the call skips that gradient and returns the same energies,
charges and dipoles (forces None): the cheap path for functions that are themselves
differentiated (Hessians, dipole derivatives), which would otherwise carry the inner
gradient along.

Padding: atoms with ``atom_mask`` False and pairs with ``batch_mask`` False take no
part in anything: padded edges get a zero radial-angular basis (so they carry no
message), padded atoms get zero energy and charge, and padded pairs go through the
"double where" so their gradient is exactly 0.

Validation of atomic numbers, NaN positions and index ranges happens eagerly in
:func:`physnetjax.predict` and the batch builders; inside ``jit`` the module
cannot raise, so out-of-range indices would be clamped by XLA — use the builders.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional

import e3x
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.errors import displayed, namer
from physnetjax.matmul_precision import at_model_matmul_precision
from physnetjax.message_pass import SparseMessagePass, edge_basis_factors
from physnetjax.model_dispersion import (DISPERSION_CUTOFF_DEFAULT, DispersionParameters, check_dispersion_settings,
                                         dispersion_per_atom, dispersion_per_molecule)
from physnetjax.neighbors.checks import check_all_pairs, check_full_list, is_traced
from physnetjax.neighbors.halves import check_pair_halves
from physnetjax.physics.charges import corrected_charges, dipole_moments
from physnetjax.physics.coulomb import coulomb_pair_energy
from physnetjax.physics.dispersion import D3_MAX_ATOMIC_NUMBER
from physnetjax.physics.molecules import sum_per_molecule
from physnetjax.physics.pairs import (pair_displacements, pair_energy_per_atom, pair_energy_per_molecule,
                                      safe_pair_distances)
from physnetjax.physics.zbl import (
    ZBL_A_COEFFICIENT,
    ZBL_A_EXPONENT,
    ZBL_COEFFICIENTS,
    ZBL_EXPONENTS,
    zbl_pair_energy,
)
from physnetjax.product_basis import ProductBasis


ZBL_CUTOFF_DEFAULT = 2.0
"""Default ``zbl_cutoff`` of new models in Å (``benchmarks/zbl_cutoff.py``; see benchmarks/README.md).

Checkpoints written before this default store ``zbl_cutoff: null`` (= the model cutoff),
which keeps that meaning; migrated legacy models store their cutoff explicitly; the
legacy class :class:`EF` keeps ``None``."""


_INTEGER_FIELDS = ("features", "max_degree", "num_iterations", "num_basis_functions", "max_atomic_number", "n_res",
                   "correlation")
_OPTIONAL_INTEGER_FIELDS = ("edge_chunk_size", "radial_mlp", "message_degree")
_DISTANCE_FIELDS = ("cutoff", "dispersion_cutoff")
_OPTIONAL_DISTANCE_FIELDS = ("coulomb_sr_cutoff", "coulomb_lr_cutoff", "zbl_cutoff")
_BOOL_FIELDS = ("charges", "zbl", "efa", "use_energy_bias", "dispersion_three_body", "dispersion_trainable")


def _received(value) -> str:
    return f"received {value!r} ({type(value).__name__})"


def check_field_types(model, names: Optional[Mapping[str, str]] = None) -> None:
    """Raise ValueError naming the first hyperparameter of ``model`` with a wrong type, or a value no model can use.

    Integers (``features``, ``n_res``, …) must be integers, distances (``cutoff`` and the other
    ``*_cutoff`` fields, Å) and ``total_charge`` (e) real numbers, the switches (``charges``,
    ``zbl``, …) booleans. A bool is no number here (``cutoff=True`` would be 1 Å), and no
    string converts ("6" is refused). Ranges checked here (the others in
    :meth:`PhysNet.check_configuration`): ``max_atomic_number`` >= 1, the optional cutoffs
    None or > 0 and finite, ``total_charge`` finite. ``names``: field → how the messages name it
    (a command line passes its options, e.g. ``{"cutoff": "--cutoff"}``; by default the field).
    """
    def is_bool(value) -> bool:
        return isinstance(value, (bool, np.bool_))

    def is_real(value) -> bool:
        return isinstance(value, numbers.Real) and not is_bool(value)

    for name in _INTEGER_FIELDS + _OPTIONAL_INTEGER_FIELDS:
        value = getattr(model, name)
        if not (value is None and name in _OPTIONAL_INTEGER_FIELDS) and (
                not isinstance(value, numbers.Integral) or is_bool(value)):
            optional = " or None" if name in _OPTIONAL_INTEGER_FIELDS else ""
            raise ValueError(f"{displayed(name, names)} must be an integer{optional}, {_received(value)}")
    for name in _DISTANCE_FIELDS + _OPTIONAL_DISTANCE_FIELDS + ("total_charge",):
        value = getattr(model, name)
        if not (value is None and name in _OPTIONAL_DISTANCE_FIELDS) and not is_real(value):
            what = "a charge in e" if name == "total_charge" else "a distance in Å"
            optional = " or None" if name in _OPTIONAL_DISTANCE_FIELDS else ""
            raise ValueError(f"{displayed(name, names)} must be a real number ({what}){optional}, {_received(value)}")
    for name in _BOOL_FIELDS:
        value = getattr(model, name)
        if not is_bool(value):
            raise ValueError(f"{displayed(name, names)} must be True or False, {_received(value)}")
    if not isinstance(model.dispersion_functional, str):
        raise ValueError(f"{displayed('dispersion_functional', names)} must be a functional's name (str), "
                         f"{_received(model.dispersion_functional)}")
    energies = model.element_energies
    if energies is not None and not (isinstance(energies, (tuple, list, np.ndarray))
                                     and all(is_real(v) and math.isfinite(v) for v in np.ravel(energies))):
        raise ValueError("element_energies must be None or a sequence of finite energies in eV, one per element "
                         f"Z = 0..max_atomic_number, {_received(energies)[:200]}")
    if model.max_atomic_number < 1:
        raise ValueError(f"{displayed('max_atomic_number', names)} must be at least 1, received "
                         f"{model.max_atomic_number}")
    for name in _OPTIONAL_DISTANCE_FIELDS:
        value = getattr(model, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{displayed(name, names)} must be larger than 0 and finite (Å) when given, "
                             f"received {value}")
    if not math.isfinite(model.total_charge):
        raise ValueError(f"{displayed('total_charge', names)} must be finite, received {model.total_charge}")


class ZBLParameters(nn.Module):
    """Trainable ZBL screening parameters, initialised to the universal values.

    Parameter names follow the original (``a_coefficient``, ``a_exponent``,
    ``phi_coefficients``, ``phi_exponents``) so legacy ``repulsion/*`` trees load.
    """

    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self):
        def constant(value):
            return lambda key, shape, dtype: jnp.asarray(value, dtype=dtype).reshape(shape)

        a_coefficient = self.param("a_coefficient", constant(ZBL_A_COEFFICIENT), (), self.param_dtype)
        a_exponent = self.param("a_exponent", constant(ZBL_A_EXPONENT), (), self.param_dtype)
        coefficients = self.param("phi_coefficients", constant(ZBL_COEFFICIENTS), (4,), self.param_dtype)
        exponents = self.param("phi_exponents", constant(ZBL_EXPONENTS), (4,), self.param_dtype)
        return a_coefficient, a_exponent, coefficients, exponents


def _truncated_basis(basis, max_degree: int):
    """The edge basis factors (angular, radial) with the harmonics of degree ≤ max_degree only.

    ``basis`` is the factor pair or a function of per-edge data returning it (chunked
    edges); the harmonics are ordered by degree, so degree ≤ L is the first (L+1)² columns.
    """
    def truncate(factors):
        angular, radial = factors
        return angular[..., : (max_degree + 1) ** 2], radial

    if callable(basis):
        return lambda edges: truncate(basis(edges))
    return truncate(basis)


class PhysNet(nn.Module):
    """PhysNet energy/forces/charges model (e3x message passing + physical pair terms).

    Attributes (the first block is the original ``EF`` constructor):
      features: feature channels per degree.
      max_degree: maximum degree of the equivariant features and of the basis.
      num_iterations: message-passing iterations (the last one outputs scalars only).
      num_basis_functions: radial basis functions (exponential Chebyshev).
      cutoff: message-passing cutoff in Å (smooth e3x cutoff).
      max_atomic_number: largest supported Z (embedding has Z = 0 … max).
      charges: predict atomic charges, dipoles and electrostatics.
      natoms: accepted for compatibility; unused (sizes come from the inputs).
      total_charge: default total charge Q of every molecule in e.
      n_res: residual layers per refinement block (≥ 1; the original's attention
        variant ``n_res < 0`` is not supported).
      zbl: add ZBL nuclear repulsion.
      debug: accepted for compatibility; unused (use ``logging``).
      efa: Euclidean fast attention; not supported (raises NotImplementedError).
      use_energy_bias: learn a per-element energy bias ``energy_bias[Z]``.

    Attributes new in physnetjax:
      coulomb_sr_cutoff: r_sr of the shielded Coulomb kernel in Å (None → ``cutoff``).
      coulomb_lr_cutoff: force-shift cutoff r_lr in Å (> r_sr/2 for a model with charges), or None for bare 1/r
        over the whole pair list (then the pair list must hold all pairs of each molecule).
      zbl_cutoff: where the ZBL switch reaches 0, in Å (default :data:`ZBL_CUTOFF_DEFAULT`;
        None → ``cutoff``, the meaning of every checkpoint written before that default).
      element_energies: fixed per-element reference energies E0[Z] in eV (a tuple of
        length max_atomic_number + 1, fitted by the trainer), added to every atom's
        energy and not trained; None → no offset.
      param_dtype: dtype of freshly initialised parameters.
      edge_chunk_size: process the message-passing edges in chunks of this many,
        recomputing each chunk's basis and messages in the backward pass, so memory
        grows with N + chunk instead of with the number of edges (for periodic
        systems of 10⁵ atoms); same results; None → all edges at once (fastest).
      dispersion: None (off) or ``"d3bj"`` (Grimme D3 with Becke–Johnson damping).
      dispersion_functional: functional whose D3(BJ) parameters are used ("pbe0", …).
      dispersion_three_body: add the Axilrod–Teller–Muto three-body term (s9) over the
        triangles whose three sides are shorter than ``dispersion_cutoff`` (switched
        like the pairs); needs a triplet list in the call (``triplets``, built by the
        host builders with ``three_body_cutoff=model_triplet_cutoff(model)``, or inside
        jit by the :mod:`physnetjax.md` potentials' neighbor lists).
      dispersion_cutoff: Å; pair energies and coordination numbers are switched off
        smoothly over its last 20 %.
      dispersion_trainable: train s6, s8, a1, a2 (kept positive by a softplus).
      correlation: product order of each atom's aggregated messages (1: PhysNet as
        published; ν > 1 adds a :class:`~physnetjax.product_basis.ProductBasis` after
        every message pass, whose messages then keep their full degree in the last
        iteration too, for body order ν + 1 per iteration).
      radial_mlp: width H of a two-layer radial perceptron in every message pass's filter
        (:class:`~physnetjax.message_pass.RadialFilter`; None: PhysNet's filter, linear in
        the radial basis).
      message_degree: degree L_A ≥ max_degree of the edge harmonics and of each atom's
        aggregated messages A in the first message pass (None → max_degree, PhysNet).
        Above max_degree (which needs ``correlation > 1``), these messages carry degrees up
        to L_A into the product basis, whose products couple them (as MACE's edge harmonics
        of degree 3 with features of degree 1), and its output is truncated to max_degree,
        so the per-atom features and the refinement keep their size. Only the first pass:
        its inputs are the scalar embeddings, so each edge costs O((L_A+1)²) more; later
        passes would couple degree-max_degree features with degree-L_A harmonics per edge
        (2.5× the aspirin training step for L_A = 2, max_degree = 1, correlation = 3).
    """

    features: int = 32
    max_degree: int = 3
    num_iterations: int = 2
    num_basis_functions: int = 16
    cutoff: float = 6.0
    max_atomic_number: int = 118
    charges: bool = False
    natoms: int | None = 60
    total_charge: float = 0.0
    n_res: int = 3
    zbl: bool = True
    debug: Any = False
    efa: bool = False
    use_energy_bias: bool = True
    coulomb_sr_cutoff: float | None = None
    coulomb_lr_cutoff: float | None = None
    zbl_cutoff: float | None = ZBL_CUTOFF_DEFAULT
    element_energies: tuple | None = None
    param_dtype: Any = jnp.float32
    edge_chunk_size: int | None = None
    dispersion: str | None = None
    dispersion_functional: str = "pbe0"
    dispersion_three_body: bool = False
    dispersion_cutoff: float = DISPERSION_CUTOFF_DEFAULT
    dispersion_trainable: bool = False
    correlation: int = 1
    radial_mlp: int | None = None
    message_degree: int | None = None

    def check_configuration(self, names: Optional[Mapping[str, str]] = None):
        """Raise ValueError (NotImplementedError for unsupported options) naming any inconsistent setting.

        ``names``: field → how the messages name it (a command line passes its options, e.g.
        ``{"features": "--features"}``); by default the field itself.
        """
        name = namer(names)

        check_field_types(self, names)
        if self.efa:
            raise NotImplementedError(
                "efa=True (Euclidean fast attention) is not supported by physnetjax"
            )
        if self.n_res < 0:
            raise NotImplementedError(
                f"{name('n_res')}={self.n_res} selects the original's attention blocks, which physnetjax "
                f"does not support; use {name('n_res')} >= 1"
            )
        if self.n_res == 0:
            raise ValueError(f"{name('n_res')} must be at least 1 (the refinement block needs a residual layer)")
        for field, least in (("features", 1), ("max_degree", 0), ("num_iterations", 1), ("num_basis_functions", 1)):
            if getattr(self, field) < least:
                raise ValueError(f"{name(field)} must be at least {least}, received {getattr(self, field)}")
        if not (math.isfinite(self.cutoff) and self.cutoff > 0):
            raise ValueError(f"{name('cutoff')} must be larger than 0 and finite, received {self.cutoff}")
        if self.charges and self.coulomb_lr_cutoff is not None and self.coulomb_lr_cutoff <= 0.5 * self.sr_cutoff:
            raise ValueError(f"{name('coulomb_lr_cutoff')} must exceed half the short-range Coulomb cutoff "
                             f"({name('coulomb_sr_cutoff')}, else {name('cutoff')}) = {0.5 * self.sr_cutoff:g} Å, "
                             f"received {self.coulomb_lr_cutoff:g}: the shielded kernel only becomes 1/r there, so "
                             "the force-shifted electrostatics would jump to 0 at the long-range cutoff")
        if self.element_energies is not None and len(self.element_energies) != self.max_atomic_number + 1:
            raise ValueError(
                f"element_energies must have max_atomic_number + 1 = {self.max_atomic_number + 1} "
                f"entries, received {len(self.element_energies)}"
            )
        if self.edge_chunk_size is not None and self.edge_chunk_size < 1:
            raise ValueError(f"{name('edge_chunk_size')} must be at least 1 when given, received "
                             f"{self.edge_chunk_size}")
        check_dispersion_settings(self.dispersion, self.dispersion_functional, self.dispersion_three_body,
                                  self.dispersion_cutoff, self.dispersion_trainable, names)
        if self.correlation < 1:
            raise ValueError(f"{name('correlation')} must be at least 1, received {self.correlation}")
        if self.radial_mlp is not None and self.radial_mlp < 1:
            raise ValueError(f"{name('radial_mlp')} must be at least 1 when given, received {self.radial_mlp}")
        if self.message_degree is not None and self.message_degree < self.max_degree:
            raise ValueError(f"{name('message_degree')} must be at least {name('max_degree')} = {self.max_degree} "
                             f"when given, received {self.message_degree}")
        if self._message_degree > self.max_degree and self.correlation < 2:
            raise ValueError(f"{name('message_degree')} {self.message_degree} > {name('max_degree')} "
                             f"{self.max_degree} needs {name('correlation')} >= 2: only the product basis couples "
                             "the higher degrees")

    @property
    def sr_cutoff(self) -> float:
        return self.cutoff if self.coulomb_sr_cutoff is None else self.coulomb_sr_cutoff

    @property
    def repulsion_cutoff(self) -> float:
        return self.cutoff if self.zbl_cutoff is None else self.zbl_cutoff

    @property
    def supported_max_atomic_number(self) -> int:
        """The largest Z this model evaluates: ``max_atomic_number`` (its embedding), or with D3 dispersion the last
        element D3 has reference data for when that is lower (:data:`~physnetjax.physics.dispersion.D3_MAX_ATOMIC_NUMBER`;
        the tables would otherwise be read clamped, as the last element's). Every eager entry point refuses larger Z."""
        if self.dispersion is None:
            return self.max_atomic_number
        return min(self.max_atomic_number, D3_MAX_ATOMIC_NUMBER)

    def config(self) -> dict:
        """Constructor arguments as a JSON-serialisable dict (see :func:`PhysNet.from_config`)."""
        cfg = {}
        for name in self.__dataclass_fields__:
            if name in ("parent", "name"):
                continue
            value = getattr(self, name)
            if name == "param_dtype":
                value = jnp.dtype(value).name
            elif name == "element_energies" and value is not None:
                value = [float(v) for v in value]
            cfg[name] = value
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> "PhysNet":
        """The model of a :meth:`config` dict; a dict without ``zbl_cutoff`` predates its default: None (= cutoff)."""
        cfg = dict(cfg)
        cfg.setdefault("zbl_cutoff", None)
        if "param_dtype" in cfg:
            cfg["param_dtype"] = jnp.dtype(cfg["param_dtype"])
        if cfg.get("element_energies") is not None:
            cfg["element_energies"] = tuple(float(v) for v in cfg["element_energies"])
        return cls(**cfg)

    # -- network ---------------------------------------------------------------------

    def _refinement_block(self, x):
        """Residual refinement as in the original: returns silu(Dense(last residual Dense output))."""
        dtype = x.dtype
        for _ in range(self.n_res):
            y = e3x.nn.add(x, e3x.nn.silu(x))
            y = e3x.nn.Dense(self.features, dtype=dtype, param_dtype=self._param_dtype)(y)
            x = e3x.nn.add(x, y)
        y = e3x.nn.Dense(self.features, dtype=dtype, param_dtype=self._param_dtype)(y)
        return e3x.nn.silu(y)

    def _edge_basis(self, edges):
        """Basis factors (angular (P, (L+1)²), radial (P, K)) of edges = (displacements (P, 3) Å, mask (P,))."""
        displacements, edge_mask = edges
        return edge_basis_factors(displacements, edge_mask, num=self.num_basis_functions,
                                  max_degree=self._message_degree, cutoff=self.cutoff)

    @property
    def _param_dtype(self):
        """``param_dtype`` as JAX holds it: float64 is float32 while x64 is off, as JAX truncates it anyway (a model
        built with float64 parameters and run in float32 gave JAX's truncation warning at every layer)."""
        return jax.dtypes.canonicalize_dtype(self.param_dtype)

    @property
    def _message_degree(self) -> int:
        return self.max_degree if self.message_degree is None else self.message_degree

    def _atomic_features(self, atomic_numbers, displacements, edge_mask, dst_idx, src_idx):
        dtype = displacements.dtype
        edges = (displacements, edge_mask)
        pad_edges = (jnp.asarray([2.0 * self.cutoff, 0.0, 0.0], dtype), jnp.asarray(False))
        basis = self._edge_basis if self.edge_chunk_size is not None else self._edge_basis(edges)
        feature_basis = _truncated_basis(basis, self.max_degree) if self._message_degree > self.max_degree else basis
        x = e3x.nn.Embed(
            num_embeddings=self.max_atomic_number + 1,
            features=self.features,
            dtype=dtype,
            param_dtype=self._param_dtype,
        )(atomic_numbers)
        products = self.correlation > 1
        for iteration in range(self.num_iterations):
            last = iteration == self.num_iterations - 1
            x = SparseMessagePass(max_degree=0 if last and not products else None,
                                  edge_chunk_size=self.edge_chunk_size, dtype=dtype,
                                  param_dtype=self._param_dtype, radial_hidden_features=self.radial_mlp,
                                  name=f"MessagePass_{iteration}")(
                x, basis if iteration == 0 else feature_basis, dst_idx=dst_idx, src_idx=src_idx,
                num_segments=atomic_numbers.shape[0],
                edges=edges, pad_edges=pad_edges)
            if products:
                x = ProductBasis(self.correlation, max_degree=0 if last else self.max_degree, dtype=dtype,
                                 param_dtype=self._param_dtype, name=f"ProductBasis_{iteration}")(x)
            x = self._refinement_block(x)
        return e3x.nn.change_max_degree_or_type(x, max_degree=0, include_pseudotensors=False)

    def _scalar_head(self, x, atomic_numbers, atom_mask, bias_name: str | None):
        """e3x Dense(1) → zero-initialised flax Dense(1) → + per-element bias (original layout)."""
        y = e3x.nn.Dense(1, use_bias=False, dtype=x.dtype, param_dtype=self._param_dtype)(x)
        y = nn.Dense(1, use_bias=False, kernel_init=nn.initializers.zeros, dtype=x.dtype,
                     param_dtype=self._param_dtype)(y)
        y = y[:, 0, 0, 0]
        if bias_name is not None:
            bias = self.param(bias_name, nn.initializers.zeros, (self.max_atomic_number + 1,), self._param_dtype)
            y = y + bias[atomic_numbers].astype(y.dtype)
        return jnp.where(atom_mask, y, 0.0)

    # -- energy ----------------------------------------------------------------------

    def _energy_terms(self, positions, strain, graph):
        """Per-molecule energies and per-atom quantities; differentiated in ``__call__``."""
        (atomic_numbers, dst_idx, src_idx, segments, num_molecules, edge_mask, atom_mask,
         total_charges, shifts, pairs, triplets, pair_halves) = graph

        # The dispersion term halves its pair list first and deforms only the half's shifts.
        dispersion_shifts = shifts if pairs is None else pairs[3]
        deformation = None
        if strain is not None:
            deformation = jnp.eye(3, dtype=positions.dtype) + 0.5 * (strain + jnp.swapaxes(strain, -1, -2))
            positions = jnp.einsum("ni,nij->nj", positions, deformation[segments])
            shifts = jnp.einsum("pi,pij->pj", shifts, deformation[segments[dst_idx]])
            if pairs is not None:
                pair_dst, pair_src, pair_mask, pair_shifts = pairs
                pair_shifts = jnp.einsum("pi,pij->pj", pair_shifts, deformation[segments[pair_dst]])
                pairs = (pair_dst, pair_src, pair_mask, pair_shifts)

        displacements = pair_displacements(positions, dst_idx, src_idx)
        if shifts is not None:
            displacements = displacements + shifts
        unit = jnp.zeros_like(displacements).at[:, 0].set(2.0 * self.cutoff)
        displacements = jnp.where(edge_mask[:, None], displacements, unit)

        x = self._atomic_features(atomic_numbers, displacements, edge_mask, dst_idx, src_idx)
        atomic_energies = self._scalar_head(
            x, atomic_numbers, atom_mask, "energy_bias" if self.use_energy_bias else None
        )
        if self.element_energies is not None:
            offsets = jnp.asarray(self.element_energies, dtype=atomic_energies.dtype)
            atomic_energies = atomic_energies + jnp.where(atom_mask, offsets[atomic_numbers], 0.0)
        nn_energy = sum_per_molecule(atomic_energies, segments, num_molecules)
        energy = nn_energy
        energies = atomic_energies
        num_atoms = atomic_numbers.shape[0]
        zero = jnp.zeros_like(nn_energy)

        if pairs is None:
            pair_dst, pair_src, pair_mask = dst_idx, src_idx, edge_mask
            pair_vectors = displacements
        else:
            pair_dst, pair_src, pair_mask, pair_shifts = pairs
            pair_vectors = pair_displacements(positions, pair_dst, pair_src)
            if pair_shifts is not None:
                pair_vectors = pair_vectors + pair_shifts
        r = safe_pair_distances(pair_vectors, pair_mask)

        raw_charges = charges = electrostatics = None
        dipoles = sum_charges = None
        if self.charges:
            raw_charges = self._scalar_head(x, atomic_numbers, atom_mask, "charge_bias")
            charges = corrected_charges(raw_charges, atom_mask, segments, num_molecules, total_charges)
            pair_elec = coulomb_pair_energy(
                charges[pair_dst], charges[pair_src], r, pair_mask, self.sr_cutoff, self.coulomb_lr_cutoff
            )
            electrostatics = pair_energy_per_molecule(pair_elec, pair_dst, segments, num_molecules)
            energy = energy + electrostatics
            energies = energies + pair_energy_per_atom(pair_elec, pair_dst, num_atoms)
            dipoles = dipole_moments(charges, positions, segments, num_molecules)
            sum_charges = sum_per_molecule(charges, segments, num_molecules)

        repulsion = zero
        if self.zbl:
            a_coef, a_exp, coefs, exps = ZBLParameters(param_dtype=self._param_dtype, name="repulsion")()
            # ZBL is 0 beyond its cutoff: when that is within the message-passing cutoff, the
            # (shorter) edge list holds every pair it needs, however far the pair list reaches.
            rep_dst, rep_src, rep_mask, rep_r = pair_dst, pair_src, pair_mask, r
            if pairs is not None and self.repulsion_cutoff <= self.cutoff:
                rep_dst, rep_src, rep_mask = dst_idx, src_idx, edge_mask
                rep_r = safe_pair_distances(displacements, edge_mask)
            pair_rep = zbl_pair_energy(
                atomic_numbers[rep_dst], atomic_numbers[rep_src], rep_r, rep_mask,
                self.repulsion_cutoff, a_coef, a_exp, coefs, exps,
            )
            repulsion = pair_energy_per_molecule(pair_rep, rep_dst, segments, num_molecules)
            energy = energy + repulsion
            energies = energies + pair_energy_per_atom(pair_rep, rep_dst, num_atoms)

        dispersion = zero
        if self.dispersion is not None:
            damping = DispersionParameters(self.dispersion_functional, self.dispersion_three_body,
                                           self.dispersion_trainable, self._param_dtype, name="dispersion")()
            dispersion = dispersion_per_molecule(atomic_numbers, positions, pair_dst, pair_src, pair_mask,
                                                 dispersion_shifts, pair_vectors, segments, num_molecules, damping,
                                                 self.dispersion_cutoff, triplets, deformation, pair_halves)
            energy = energy + dispersion
            energies = energies + dispersion_per_atom(atomic_numbers, pair_dst, pair_src, pair_mask, pair_vectors,
                                                      damping, self.dispersion_cutoff, triplets)

        aux = {
            "energy": energy,
            "nn_energy": nn_energy,
            "atomic_energies": atomic_energies,
            "energies": energies,
            "charges": charges,
            "raw_charges": raw_charges,
            "electrostatics": electrostatics if self.charges else zero,
            "repulsion": repulsion,
            "dispersion": dispersion,
            "dipoles": dipoles,
            "sum_charges": sum_charges,
            "state": x[:, 0, 0, :],
        }
        return jnp.sum(energy), aux

    def _check_lists(self, graph, cells):
        """Eager pair-list checks of an un-jitted call (skipped under ``jit``, see :mod:`~physnetjax.neighbors.checks`).

        Raises ValueError for a half edge or pair list, for bare Coulomb over a list
        missing some pairs of a molecule, and for bare Coulomb in a periodic cell.
        """
        (_, dst_idx, src_idx, segments, num_molecules, edge_mask, atom_mask, _, shifts, pairs, _, pair_halves) = graph
        check_full_list(dst_idx, src_idx, edge_mask, shifts, cells=cells, atom_segments=segments,
                        name="edge list (dst_idx, src_idx)")
        if pairs is not None:
            check_full_list(*pairs, cells=cells, atom_segments=segments, name="pair list (pair_dst, pair_src)")
            if pair_halves:
                check_pair_halves(*pairs, name="pair list (pair_dst, pair_src)")
        if self.charges and self.coulomb_lr_cutoff is None:
            if cells is not None:
                raise ValueError("bare Coulomb (coulomb_lr_cutoff=None) is not defined in a periodic cell "
                                 "(the sum needs Ewald); give the model a coulomb_lr_cutoff")
            pair_dst, pair_src, pair_mask = pairs[:3] if pairs is not None else (dst_idx, src_idx, edge_mask)
            check_all_pairs(pair_dst, pair_src, pair_mask, segments, atom_mask, num_molecules)

    @nn.compact
    @at_model_matmul_precision
    def __call__(
        self,
        atomic_numbers,
        positions,
        dst_idx,
        src_idx,
        batch_segments=None,
        batch_size: int | None = None,
        batch_mask=None,
        atom_mask=None,
        *,
        total_charges=None,
        shifts=None,
        cells=None,
        pair_dst=None,
        pair_src=None,
        pair_mask=None,
        pair_shifts=None,
        triplets=None,
        triplet_mask=None,
        pair_halves: bool = False,
        compute_forces: bool = True,
    ) -> dict:
        """Energy, forces and (optionally) charges, dipoles and stress of a batch.

        Args:
          atomic_numbers: (N,) int atomic numbers (padded atoms: any valid Z, usually 0).
          positions: (N, 3) Å; their dtype sets the compute dtype.
          dst_idx, src_idx: (P,) full directed message-passing edge list (i ← j).
          batch_segments: (N,) molecule index per atom (None → one molecule).
          batch_size: number of molecules B (static).
          batch_mask: (P,) edge mask, True for real edges (None → all True).
          atom_mask: (N,) atom mask, True for real atoms (None → all True).
          total_charges: (B,) total charge per molecule in e (None → ``total_charge``).
          shifts: (P, 3) periodic image shift in Å added to r_src − r_dst (None → 0).
          cells: (B, 3, 3) cell vectors (rows) in Å; when given, stress is returned.
          pair_dst, pair_src, pair_mask, pair_shifts: optional separate full directed
            pair list for electrostatics, ZBL and dispersion (None → use the edge list).
          triplets: (T, 2) int indices into that pair list of pairs sharing their first
            atom (:mod:`physnetjax.neighbors.triplets`); triplet_mask: (T,) bool (None →
            all real). Required with ``dispersion_three_body=True``, ignored otherwise.
          pair_halves: the pair list is in halves layout (slot k + Q/2 is the reverse of
            slot k, :mod:`physnetjax.neighbors.halves`, as the host builders store it);
            the dispersion term then slices its first half instead of selecting one
            direction of each pair inside ``jit``. Static.
          compute_forces: False skips the gradient: ``forces`` is None and there is no
            ``stress``/``virial``; every other output is computed by the same code and
            equals that of the default call exactly.

        Returns:
          dict with ``energy`` (B,) eV, ``forces`` (N, 3) eV/Å, ``charges`` (N,) e or
          None, ``electrostatics`` (B,) eV, ``repulsion`` (B,) eV, ``dispersion`` (B,) eV
          (0 when off), ``dipoles`` (B, 3)
          e·Å or None, ``sum_charges`` (B,) or None, ``state`` (N, F) final scalar
          features, plus ``nn_energy`` (B,), ``atomic_energies`` (N,) (E_i^NN + E0[Z_i]),
          ``energies`` (N,) eV, the per-atom split of ``energy`` (module docstring; Σ over
          a molecule's atoms = its ``energy``, padded atoms 0; not differentiated: under
          ``jit`` it costs nothing unless returned), ``raw_charges``
          and, with ``cells``, ``stress`` (B, 3, 3) eV/Å³ (σ = (1/V) ∂E/∂ε, positive
          under tension; ``virial`` = −V σ).

        Raises:
          ValueError: ``dispersion_three_body=True`` without ``triplets`` (also under
            ``jit``). Only when called outside ``jit`` (concrete arrays): a half edge or
            pair list (a pair without its reverse), or bare Coulomb (``charges=True``,
            ``coulomb_lr_cutoff=None``) over a list missing pairs of a molecule or in a
            periodic cell. Under ``jit`` these checks are skipped (build lists with the
            builders in :mod:`physnetjax.neighbors`, which check them).
        """
        self.check_configuration()
        positions = jnp.asarray(positions)
        if not jnp.issubdtype(positions.dtype, jnp.floating):
            positions = positions.astype(jnp.result_type(float))
        num_atoms = atomic_numbers.shape[0]
        if batch_segments is None:
            batch_segments = jnp.zeros((num_atoms,), dtype=jnp.int32)
            batch_size = 1
        elif batch_size is None:
            raise ValueError("batch_size must be given together with batch_segments")
        edge_mask = jnp.ones(dst_idx.shape, dtype=bool) if batch_mask is None else batch_mask.astype(bool)
        atom_mask = jnp.ones((num_atoms,), dtype=bool) if atom_mask is None else atom_mask.astype(bool)
        if total_charges is None:
            total_charges = jnp.full((batch_size,), self.total_charge, dtype=positions.dtype)
        pairs = None
        if pair_dst is not None:
            if pair_mask is None:
                pair_mask = jnp.ones(pair_dst.shape, dtype=bool)
            pairs = (pair_dst, pair_src, pair_mask.astype(bool), pair_shifts)
        if cells is not None and shifts is None:
            shifts = jnp.zeros((dst_idx.shape[0], 3), dtype=positions.dtype)
        if cells is not None and pairs is not None and pair_shifts is None:
            pairs = (pair_dst, pair_src, pairs[2], jnp.zeros((pair_dst.shape[0], 3), positions.dtype))
        if self.dispersion is not None and self.dispersion_three_body:
            if triplets is None:
                raise ValueError(
                    "dispersion_three_body=True needs a triplet list: pass triplets= (build batches with "
                    "three_body_cutoff=physnetjax.neighbors.model_triplet_cutoff(model)); the physnetjax.md potentials "
                    "build one, and so does physnetjax.md.jax_md with a Dense jax_md list")
            if triplet_mask is None:
                triplet_mask = jnp.ones(triplets.shape[:1], dtype=bool)
            triplets = (triplets, triplet_mask.astype(bool))
        else:
            triplets = None
        if pair_halves and pairs is None:
            raise ValueError("pair_halves=True describes the separate pair list (pair_dst, ...), but none was given")
        graph = (atomic_numbers, dst_idx, src_idx, batch_segments, batch_size, edge_mask,
                 atom_mask, total_charges, shifts, pairs, triplets, pair_halves)
        if not is_traced(dst_idx, src_idx, edge_mask, batch_segments, shifts, cells, *(pairs or ())):
            self._check_lists(graph, cells)

        if not compute_forces:
            _, aux = self._energy_terms(positions, None, graph)
            return {**aux, "forces": None}
        if cells is None:
            (_, aux), grad_positions = jax.value_and_grad(
                lambda pos: self._energy_terms(pos, None, graph), has_aux=True
            )(positions)
            grad_strain = None
        else:
            strain = jnp.zeros((batch_size, 3, 3), dtype=positions.dtype)
            (_, aux), (grad_positions, grad_strain) = jax.value_and_grad(
                lambda pos, eps: self._energy_terms(pos, eps, graph), argnums=(0, 1), has_aux=True
            )(positions, strain)

        output = dict(aux)
        output["forces"] = -grad_positions
        if grad_strain is not None:
            volume = jnp.abs(jnp.linalg.det(cells))
            output["stress"] = grad_strain / volume[:, None, None]
            output["virial"] = -grad_strain
        return output


class EF(PhysNet):
    """The original's name and defaults: :class:`PhysNet` with ``zbl_cutoff=None`` (ZBL switched off at ``cutoff``).

    Same constructor arguments, call signature and parameter tree as :class:`PhysNet`;
    only the ZBL reach defaults to the model cutoff, as in the original, so legacy code
    constructing ``EF(...)`` keeps its energies.
    """

    zbl_cutoff: float | None = None
