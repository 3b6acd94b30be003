"""Evaluating a model (or an injected energy/force function) on many geometries of one molecule or crystal.

Every check compares energies and forces at many geometries of the same molecule (or periodic cell).
The :class:`Evaluator` builds, once per structure, a :class:`~physnetjax.Batch` that
holds *all* n(n−1) ordered atom pairs of the molecule, and at each geometry sets the
masks from the positions inside ``jit``::

    edge_mask_ij = |r_j − r_i| < cutoff          (message passing)
    pair_mask_ij = |r_j − r_i| < pair reach      (separate pair list, when the model has one)

This is exactly the graph the host builders (:func:`physnetjax.batch_molecules`) and
the in-jit neighbor lists produce, with the out-of-range pairs present as masked
padding; the invariance checks compare it with the host-built batches. For a cell
periodic along x, y and z the template holds every pair (i, j, image n) within the
model's reaches plus :data:`PERIODIC_SKIN` at the given positions and cell (shift
n · cell, Å), with the same masks by distance. A homogeneous deformation D = I + ε
(positions, shifts and cell vectors as rows: r → r D) maps the template to the
strained crystal (:meth:`Evaluator.strained_energies`, :meth:`Evaluator.stress`). Geometries
are evaluated with ``jax.vmap`` in fixed-size chunks, so each structure size compiles
once; :meth:`Evaluator.energies` compiles the energies alone (XLA drops the unused
force pass: finite differences need no forces) and :meth:`Evaluator.evaluate_one`
one geometry without a padded chunk.

An *energy/force function* has the signature of :func:`physnetjax.apply_batch`
with the model bound: ``energy_and_forces(params, batch) -> dict`` with ``energy``
(B,) eV, ``forces`` (N, 3) eV/Å and, optionally, the per-term energies (B,) eV
``nn_energy``, ``electrostatics``, ``repulsion`` and ``dispersion``; for a periodic cell also
``stress`` (B, 3, 3) eV/Å³, σ = (1/V) ∂E/∂ε. It must be a JAX-traceable
function (it is jitted and vmapped). Tests inject deliberately broken ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax import compilation
from physnetjax.neighbors import (Batch, apply_batch, batch_molecules, batch_periodic, model_pair_cutoff,
                                  model_triplet_cutoff)
from physnetjax.neighbors.periodic import lattice_images

EnergyAndForces = Callable[[Any, Batch], dict]

TERMS = ("network", "electrostatics", "repulsion", "dispersion")
"""Energy terms checked separately, in the order of the energy columns after the total."""
TERM_KEYS = {"network": "nn_energy", "electrostatics": "electrostatics", "repulsion": "repulsion",
             "dispersion": "dispersion"}
"""Output key of each term in the model's output dict."""

CHUNK = 32
"""Geometries per vmapped call (the last chunk is padded by repeating a geometry)."""


@dataclasses.dataclass(frozen=True)
class Structure:
    """One isolated molecule to check, or a cell periodic along x, y and z (a crystal or a liquid).

    Fields:
      atomic_numbers: (n,) int.
      positions: (n, 3) Å.
      total_charge: Q in e.
      name: label used in the report (e.g. ``"geometries.npz[0]"``).
      cell: (3, 3) Å, the periodic cell vectors (rows) of the frame it was read from, zero rows along the
        directions that are not periodic (all zero, the default: an isolated molecule).
        :func:`~physnetjax.check.check_model` checks a full-rank cell whose images lie within the model's reach as a
        crystal, with its images, refuses a slab or wire within reach of its images, and checks every other
        structure as an isolated molecule.
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    total_charge: float = 0.0
    name: str = "structure"
    cell: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 3)))

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def periodic(self) -> bool:
        """Whether the cell is periodic along x, y and z (three independent cell vectors)."""
        return bool(np.linalg.matrix_rank(self.cell) == 3)

    @property
    def volume(self) -> float:
        """Å³: |det cell| (0 for a structure that is not periodic along x, y and z)."""
        return float(abs(np.linalg.det(self.cell))) if self.periodic else 0.0

    def formula(self) -> str:
        from ase.data import chemical_symbols
        from ase.formula import Formula

        return Formula("".join(chemical_symbols[int(z)] for z in self.atomic_numbers)).format("hill")


def model_energy_and_forces(model) -> EnergyAndForces:
    """The model's own energy/force function: ``apply_batch`` with ``model`` bound.

    One function per configuration (``model.config()``), so that a model rebuilt from
    a checkpoint shares the compiled checks of an equal one.
    """
    key = json.dumps(model.config(), sort_keys=True)
    if key not in _BOUND:
        _BOUND[key] = lambda params, batch: apply_batch(model, params, batch)
    return _BOUND[key]


_BOUND: dict = {}
_JIT: dict = {}


def cast_to_float64(params):
    """``params`` with every floating-point leaf as a float64 jax array (needs x64 enabled)."""
    return jax.tree_util.tree_map(
        lambda p: jnp.asarray(p, jnp.float64) if jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating) else p, params
    )


def separate_pair_list(model) -> bool:
    """Whether the model's pair terms need a pair list beyond the message-passing cutoff."""
    reach = model_pair_cutoff(model)
    return reach is None or reach > model.cutoff


def _distances(positions, dst, src, shifts) -> jax.Array:
    """(P,) Å: |r_src − r_dst + shift| of a list's pairs (``shifts`` (P, 3) Å, None for a molecule)."""
    vectors = positions[src] - positions[dst]
    return jnp.linalg.norm(vectors if shifts is None else vectors + shifts, axis=-1)


def _masked(template: Batch, positions, cutoff: float, pair_reach: float | None) -> Batch:
    """``template`` at ``positions`` with edge/pair masks set by distance (see module docstring)."""
    d = _distances(positions, template.dst_idx, template.src_idx, template.shifts)
    batch = template.replace(positions=positions, edge_mask=template.edge_mask & (d < cutoff))
    if template.pair_dst is not None:
        dp = _distances(positions, template.pair_dst, template.pair_src, template.pair_shifts)
        batch = batch.replace(pair_mask=template.pair_mask if pair_reach is None
                              else template.pair_mask & (dp < pair_reach))
    return batch


def _deformed(template: Batch, deformation) -> Batch:
    """``template`` of a periodic cell strained homogeneously: shifts, pair shifts and cells times ``deformation`` D
    (3, 3) from the right (rows: s → s D). With the positions also mapped r → r D, every pair vector r_j − r_i + s
    becomes (r_j − r_i + s) D: the crystal under the deformation gradient Dᵀ."""
    return template.replace(
        shifts=template.shifts @ deformation, cells=template.cells @ deformation,
        pair_shifts=None if template.pair_shifts is None else template.pair_shifts @ deformation)


def _stress_of(out: dict) -> jax.Array:
    """(3, 3) eV/Å³: the stress of cell 0 of an energy/force function's output.

    Raises:
      ValueError: the output has no ``stress`` (a function that does not compute it for periodic cells).
    """
    if out.get("stress") is None:
        raise ValueError("the energy/force function returns no 'stress' for a periodic cell; the check of a crystal "
                         "needs σ = (1/V) ∂E/∂ε (B, 3, 3) eV/Å³, as physnetjax.apply_batch gives for a batch with cells")
    return out["stress"][0]


def _energy_row(out: dict) -> jax.Array:
    """(1 + len(TERMS),) energies of molecule 0: total, then each term (0 where absent), eV."""
    total = out["energy"][0]
    terms = [out[TERM_KEYS[t]][0] if out.get(TERM_KEYS[t]) is not None else jnp.zeros_like(total) for t in TERMS]
    return jnp.stack([total] + terms)


def _compiled(model, fn: EnergyAndForces):
    """Jitted (vmapped outputs, vmapped energies, one geometry's outputs, term forces, single energy/forces,
    vmapped energies over deformations, one deformed geometry's stress) for one model and function."""
    key = (json.dumps(model.config(), sort_keys=True), fn)
    if key not in _JIT:
        reach = model_pair_cutoff(model)

        def single(params, template, positions):
            out = fn(params, _masked(template, positions, model.cutoff, reach))
            return _energy_row(out), out["forces"]

        def term_forces(params, template, positions):
            jac = jax.jacrev(lambda pos: single(params, template, pos)[0][1:])(positions)
            return -jac

        def energy_force(positions, inputs):
            energies, forces = single(inputs[0], inputs[1], positions)
            return energies[0], forces

        def energies(params, template, positions):
            return (single(params, template, positions)[0],)

        def strained_energy(params, template, positions, deformation):
            return single(params, _deformed(template, deformation), positions @ deformation)[0][0]

        def stress(params, template, positions, deformation):
            strained = _deformed(template, deformation)
            return _stress_of(fn(params, _masked(strained, positions @ deformation, model.cutoff, reach)))

        def strained_outputs(params, template, positions, deformation):
            strained = _deformed(template, deformation)
            out = fn(params, _masked(strained, positions @ deformation, model.cutoff, reach))
            return _energy_row(out), out["forces"], _stress_of(out)

        _JIT[key] = (compilation.jit(jax.vmap(single, in_axes=(None, None, 0))),
                     compilation.jit(jax.vmap(energies, in_axes=(None, None, 0))), compilation.jit(single),
                     compilation.jit(term_forces), energy_force,
                     compilation.jit(jax.vmap(strained_energy, in_axes=(None, None, None, 0))),
                     compilation.jit(stress),
                     compilation.jit(jax.vmap(strained_outputs, in_axes=(None, None, None, 0))))
    return _JIT[key]


PERIODIC_SKIN = 1.0
"""Å: a periodic structure's lists (:func:`_template`) reach this far beyond the model's cutoffs, so that atoms
displaced by less than half of it keep every pair within reach (the masks select those inside)."""


def _template(model, structure: Structure, dtype) -> Batch:
    """The batch of all pairs of a molecule, or, for a cell periodic along x, y and z, of the pairs with every image
    within the model's reaches plus :data:`PERIODIC_SKIN` (positions must lie in the cell: the shifts belong to
    those positions).

    Raises:
      ValueError: a periodic structure whose atoms lie outside its cell.
    """
    if np.linalg.matrix_rank(structure.cell) < 3:
        return batch_molecules(
            [structure.atomic_numbers], [structure.positions], np.inf, total_charges=[structure.total_charge],
            pair_cutoff=None if separate_pair_list(model) else 0.0,
            three_body_cutoff=None if model_triplet_cutoff(model) is None else np.inf, dtype=dtype)
    if np.any(lattice_images(structure.positions, structure.cell)):
        raise ValueError(f"{structure.name}: atoms lie outside the cell; wrap them in first "
                         "(physnetjax.neighbors.periodic.wrapped_positions)")
    reach, triplet_reach = model_pair_cutoff(model), model_triplet_cutoff(model)
    return batch_periodic(
        [structure.atomic_numbers], [structure.positions], [structure.cell], model.cutoff + PERIODIC_SKIN,
        total_charges=[structure.total_charge], pair_cutoff=reach if reach is None else reach + PERIODIC_SKIN,
        three_body_cutoff=None if triplet_reach is None else triplet_reach + PERIODIC_SKIN, dtype=dtype)


class Evaluator:
    """Energies and forces of one structure at many geometries (float64; see module docstring).

    Args:
      model: a :class:`physnetjax.PhysNet` (gives the cutoffs and the default function).
      params: variables, already in ``dtype``.
      structure: the molecule, or a cell periodic along x, y and z with its atoms in the cell; its atomic numbers,
        total charge and cell are fixed (a deformation strains the cell with the positions).
      energy_and_forces: the function to check (default: the model's own).
      dtype: of the positions and the batch: float64 (the checks), or float32 to evaluate as MD and the
        calculator do by default (:mod:`physnetjax.check.precision`, with x64 off).

    Attributes:
      energy_force: ``energy_force(positions (n, 3), inputs) -> (E () eV, F (n, 3) eV/Å)``
        with ``inputs`` = :attr:`inputs`, a pure function of the model and the energy/
        force function only (the form MD integrators take, ``inputs`` in the place of
        the neighbor list), so compiled MD is shared between structures of one size.
    """

    def __init__(self, model, params, structure: Structure, energy_and_forces: EnergyAndForces | None = None,
                 dtype=np.float64):
        self.model = model
        self.params = params
        self.structure = structure
        self.dtype = np.dtype(dtype)
        self.fn = energy_and_forces or model_energy_and_forces(model)
        self.template = jax.device_put(_template(model, structure, self.dtype))
        (self._batched, self._energies, self._single, self._term_forces, self.energy_force, self._strained,
         self._stress, self._strained_outputs) = _compiled(model, self.fn)

    def evaluate(self, positions) -> tuple[np.ndarray, np.ndarray]:
        """Energies (K, 1 + len(TERMS)) eV [total, then each of TERMS] and forces (K, n, 3) eV/Å.

        ``positions``: (K, n, 3) Å. Evaluated in chunks of :data:`CHUNK` geometries.
        """
        return self._chunked(self._batched, positions)

    def energies(self, positions) -> np.ndarray:
        """Energies (K, 1 + len(TERMS)) eV of :meth:`evaluate`, without computing forces."""
        return self._chunked(self._energies, positions)[0]

    def evaluate_one(self, positions) -> tuple[np.ndarray, np.ndarray]:
        """Energies (1 + len(TERMS),) eV and forces (n, 3) eV/Å at one geometry ``positions`` (n, 3) Å."""
        energies, forces = self._single(self.params, self.template, jnp.asarray(positions, self.dtype))
        return np.asarray(energies), np.asarray(forces)

    def _chunked(self, function, positions) -> tuple:
        """``function(params, template, chunk)``'s outputs over (K, n, 3) ``positions`` in chunks of CHUNK."""
        positions = np.asarray(positions, np.float64)
        count = positions.shape[0]
        padded = -(-count // CHUNK) * CHUNK
        stacked = np.concatenate([positions, np.repeat(positions[-1:], padded - count, axis=0)])
        parts = [function(self.params, self.template, jnp.asarray(stacked[start:start + CHUNK], self.dtype))
                 for start in range(0, padded, CHUNK)]
        return tuple(np.concatenate([np.asarray(part[k]) for part in parts])[:count] for k in range(len(parts[0])))

    def term_forces(self, positions) -> np.ndarray:
        """(len(TERMS), n, 3) eV/Å: −∂E_t/∂R by autodiff for each of TERMS."""
        return np.asarray(self._term_forces(self.params, self.template, jnp.asarray(positions, self.dtype)))

    def strained_energies(self, positions, deformations) -> np.ndarray:
        """(K,) eV: total energies of the periodic cell with ``positions`` (n, 3) Å and the cell, both mapped by each of
        ``deformations`` (K, 3, 3) D (r → r D, cell → cell D), without forces."""
        return self._over_deformations(self._strained, positions, deformations)[0]

    def strained_outputs(self, positions, deformations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energies (K, 1 + len(TERMS)) eV, forces (K, n, 3) eV/Å and stress (K, 3, 3) eV/Å³ of the periodic cell with
        ``positions`` (n, 3) Å and the cell, both mapped by each of ``deformations`` (K, 3, 3) D (r → r D,
        cell → cell D; the forces are those on the mapped positions)."""
        return self._over_deformations(self._strained_outputs, positions, deformations)

    def _over_deformations(self, function, positions, deformations) -> tuple:
        """``function(params, template, positions, chunk)``'s outputs over (K, 3, 3) ``deformations`` in chunks of
        CHUNK (a single array output as a 1-tuple)."""
        self._require_periodic()
        deformations = np.asarray(deformations, np.float64)
        count = deformations.shape[0]
        padded = -(-count // CHUNK) * CHUNK
        stacked = np.concatenate([deformations, np.repeat(deformations[-1:], padded - count, axis=0)])
        r = jnp.asarray(positions, self.dtype)
        parts = [function(self.params, self.template, r, jnp.asarray(stacked[start:start + CHUNK], self.dtype))
                 for start in range(0, padded, CHUNK)]
        parts = [part if isinstance(part, tuple) else (part,) for part in parts]
        return tuple(np.concatenate([np.asarray(part[k]) for part in parts])[:count] for k in range(len(parts[0])))

    def stress(self, positions, deformation=None) -> np.ndarray:
        """(3, 3) eV/Å³: the function's stress of the periodic cell with ``positions`` (n, 3) Å and the cell, both mapped
        by ``deformation`` (3, 3) D (default: the identity)."""
        self._require_periodic()
        deformation = np.eye(3) if deformation is None else np.asarray(deformation, np.float64)
        return np.asarray(self._stress(self.params, self.template, jnp.asarray(positions, self.dtype),
                                       jnp.asarray(deformation, self.dtype)))

    def _require_periodic(self) -> None:
        if not self.structure.periodic:
            raise ValueError(f"{self.structure.name} is not periodic along x, y and z: it has no strain or stress")

    @property
    def inputs(self) -> tuple:
        """``(params, template)``: the second argument of :attr:`energy_force`."""
        return self.params, self.template

    def host_batch(self, atomic_numbers, positions, total_charges, cells=None, **padding) -> Batch:
        """A batch built by the production host builder (cutoff neighbor lists, optional padding): of periodic cells
        (:func:`~physnetjax.neighbors.batch_periodic`, which wraps the atoms into them) with ``cells`` (one (3, 3) Å
        per structure), else of molecules."""
        if cells is not None:
            return batch_periodic(
                atomic_numbers, positions, cells, self.model.cutoff, total_charges=total_charges,
                pair_cutoff=model_pair_cutoff(self.model), three_body_cutoff=model_triplet_cutoff(self.model),
                dtype=self.dtype, **padding)
        return batch_molecules(
            atomic_numbers, positions, self.model.cutoff, total_charges=total_charges,
            pair_cutoff=model_pair_cutoff(self.model), three_body_cutoff=model_triplet_cutoff(self.model),
            dtype=self.dtype, **padding,
        )

    def apply(self, batch: Batch) -> dict:
        """The function on any batch (jitted per function), outputs as NumPy: ``energy`` (B,) eV, ``forces`` (N, 3)
        eV/Å and, for a batch of periodic cells, ``stress`` (B, 3, 3) eV/Å³."""
        key = ("apply", self.fn)
        if key not in _JIT:
            _JIT[key] = compilation.jit(self.fn)
        out = _JIT[key](self.params, batch)
        result = {"energy": np.asarray(out["energy"]), "forces": np.asarray(out["forces"])}
        if batch.cells is not None:
            _stress_of(out)
            result["stress"] = np.asarray(out["stress"])
        return result
