"""ASE calculator for PhysNet models.

:class:`PhysNetCalculator` evaluates energy and free_energy (eV), energies (n,) eV per atom
(``atoms.get_potential_energies()``; they sum to the energy: each atom's NN energy with its
element reference, half of each pair term it is in, a third of each D3 three-body triangle, see
:mod:`physnetjax.model`; computed only when asked for), forces (eV/Å), and,
when the model predicts charges, charges (e) and dipole (e·Å, μ = Σ_i q_i r_i about
the origin of the given coordinates); for cells periodic along at least one direction also
stress (eV/Å³, Voigt order xx, yy, zz, yz, xz, xy, σ = (1/V) ∂E/∂ε as in ASE, V the volume
of the three cell vectors: a slab or wire needs a vector across its vacuum, and its stress
is that of the fully periodic cell with a vacuum wider than the model's reach). ``results`` also holds
``dispersion_energy`` (eV, the model's D3 term, included in ``energy``; 0 when off).

With a :class:`~physnetjax.ensemble.PhysNetEnsemble` every property is the ensemble
mean, evaluated in one compiled call over the members, and ``results`` also holds the
calibrated member spreads (definitions in :mod:`physnetjax.ensemble.model`):
``energy_std`` (eV), ``forces_std`` (n,) eV/Å per atom, with per-atom energies ``energies_std`` (n,) eV,
with a stress ``stress_std`` (eV/Å³) and, with
charges, ``charges_std`` (n,) e and ``dipole_std`` (e·Å); they are implemented properties, so
``calc.get_property("forces_std", atoms)`` works. A single model has none of them.

Every call rebuilds the neighbor lists on the host (vesin, full directed list with
periodic image shifts) from the atoms as they are now, so a change of positions,
atomic numbers, cell or PBC can never be served a stale list. Atoms and edges are
padded up to bucket sizes (:func:`physnetjax.neighbors.round_up`), and an already
compiled shape is reused whenever it fits, so an MD run or a scan over systems of
similar size compiles only a handful of times; calculators of the same model
share their compilations.
"""

from __future__ import annotations

import logging
from typing import Optional

import jax
import numpy as np
import vesin
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from physnetjax.distance_domain import TrainingDistancesWarning, outside_message, unique_pairs
from physnetjax.ensemble.model import is_ensemble
from physnetjax.errors import warn_caller
from physnetjax.neighbors.batch import Batch, model_pair_cutoff, model_triplet_cutoff, periodic_pair_cutoff
from physnetjax.neighbors.molecules import assemble_batch, molecule_pairs, round_up
from physnetjax.neighbors.periodic import lattice_translations
from physnetjax.neighbors.triplets import count_triplets, triplet_slots
from physnetjax.predict import (
    apply_fitting,
    atom_energies,
    check_dtype,
    check_params_fit,
    element_energy_sum,
    evaluation_dtype,
    require_finite,
    split_element_energies,
    spread_of,
)
from physnetjax.training_record import TrainingRecord, training_record_of
from physnetjax.validation import (
    MIN_DISTANCE_WARNING,
    PhysNetInputError,
    atoms_total_charge,
    check_distances,
    formula,
    is_real_number,
    neighbor_box,
    validate_structure,
)

logger = logging.getLogger(__name__)


def cast_params(params, dtype):
    """``params`` with every floating-point leaf cast to ``dtype``."""
    dtype = np.dtype(dtype)

    def cast(x):
        return x.astype(dtype) if np.issubdtype(np.asarray(x).dtype, np.floating) else x

    return jax.tree.map(cast, params)


ASE_ARGUMENTS = ("restart", "ignore_bad_restart_file", "label", "atoms", "directory")
"""Keywords of ASE's ``Calculator`` that :class:`PhysNetCalculator` passes on."""


class PhysNetCalculator(Calculator):
    """ASE calculator running a :class:`physnetjax.PhysNet` model or an ensemble of them.

    Args:
      model, params: the model (a PhysNet or a :class:`~physnetjax.ensemble.PhysNetEnsemble`)
        and its variables ``{"params": ...}``; or
      checkpoint: a checkpoint directory (new or legacy format) instead of them.
      dtype: ``"float32"`` or ``"float64"`` (needs ``jax_enable_x64``); default: the model's precision, float64 for
        a model trained with ``--float64``, else float32 (:func:`~physnetjax.predict.evaluation_dtype`: a float64
        model while JAX's 64-bit mode is off runs in float32 with a warning).
      total_charge: total charge Q in e (default: ``atoms.info["charge"]`` if set, else 0);
        a Q outside the training data's (or Q ≠ 0 for a model without charges when that
        is unknown) gives a :class:`~physnetjax.validation.PhysNetInputWarning`. It is the
        calculator's one ASE parameter: ``calc.set(total_charge=1.0)`` (or assigning
        ``calc.total_charge``) discards the results computed at the old charge.
      atom_bucket, edge_bucket: padding multiples for atoms and edges/pairs.
      training_record: what the model's training data held (default: the record in the
        checkpoint's metadata, :meth:`~physnetjax.training_record.TrainingRecord.from_metadata`;
        none for (model, params)); elements, a total charge or a composition outside it give a
        :class:`~physnetjax.validation.PhysNetInputWarning` once per composition and charge, judged on
        the first structure of each
        (:meth:`~physnetjax.training_record.TrainingRecord.check_structure`). Interatomic distances are
        judged on every structure, from its neighbor list
        (:meth:`~physnetjax.distance_domain.DistanceDomain.pair_excursion`): the first structure of a
        composition outside the training data's gives a
        :class:`~physnetjax.distance_domain.TrainingDistancesWarning` naming how many structures this
        calculator had evaluated (an ASE MD run that drifts out is reported when it leaves), later ones of
        that composition none.

    Every structure passes :func:`physnetjax.validation.validate_structure` first
    (overlapping atoms, bad cells for the PBC, NaN positions or charge, unknown
    elements raise :class:`~physnetjax.validation.PhysNetInputError`). Atoms closer than 0.5 Å give a
    :class:`~physnetjax.errors.CloseContactWarning` for the first such structure of each composition (an
    optimisation or NEB through a squeezed geometry is told once, not at every step).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "charges", "dipole", "stress"]
    default_parameters = {"total_charge": None}
    discard_results_on_any_change = True

    def __init__(
        self,
        model=None,
        params=None,
        *,
        checkpoint: Optional[str] = None,
        dtype=None,
        total_charge: Optional[float] = None,
        atom_bucket: int = 16,
        edge_bucket: int = 256,
        training_record: Optional[TrainingRecord] = None,
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - set(ASE_ARGUMENTS))
        if unknown:
            raise TypeError(f"PhysNetCalculator got unexpected keyword argument(s) {', '.join(unknown)}: its settings "
                            "are model, params, checkpoint, dtype, total_charge, atom_bucket, edge_bucket and "
                            f"training_record, besides ASE's {', '.join(ASE_ARGUMENTS)}")
        super().__init__(**kwargs)
        if checkpoint is not None:
            if model is not None or params is not None:
                raise ValueError("give either checkpoint or (model, params), not both")
            from physnetjax.checkpoint import load_checkpoint

            model, params, metadata = load_checkpoint(checkpoint, with_metadata=True)
            if training_record is None:
                training_record = TrainingRecord.from_metadata(metadata)
        if model is None or params is None:
            raise ValueError("PhysNetCalculator needs (model, params) or checkpoint=PATH")
        check_params_fit(model, params)
        for name, multiple in (("atom_bucket", atom_bucket), ("edge_bucket", edge_bucket)):
            if isinstance(multiple, bool) or not isinstance(multiple, (int, np.integer)) or multiple < 1:
                raise ValueError(f"{name} must be an integer >= 1 (a padding multiple), received {multiple!r}")
        self.model = model
        self.dtype = evaluation_dtype(dtype, model, "PhysNetCalculator")
        self.params = cast_params(params, self.dtype)
        self.total_charge = total_charge
        self.atom_bucket = atom_bucket
        self.edge_bucket = edge_bucket
        self.training_record = training_record_of(training_record)
        self._judged_inputs: set[tuple[str, float]] = set()
        self._seen_inputs: set[tuple[bytes, float]] = set()
        self._left_domain: set[bytes] = set()
        self._crowded: set[bytes] = set()
        self._structures = 0
        self.pair_cutoff = model_pair_cutoff(model)
        self.three_body_cutoff = model_triplet_cutoff(model)
        self.ensemble = is_ensemble(model)
        self.implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"] + (
            ["charges", "dipole"] if model.charges else []
        ) + (["energy_std", "energies_std", "forces_std", "stress_std"]
             + (["charges_std", "dipole_std"] if model.charges else []) if self.ensemble else [])
        network, self._element_energies = split_element_energies(model)
        self._network = network
        self._shapes: set[tuple] = set()
        self._make_neighbor_lists()

    def _make_neighbor_lists(self) -> None:
        """vesin's neighbor lists of the model cutoff and, where the pair terms reach farther, of the pair cutoff."""
        self._neighbors = vesin.NeighborList(cutoff=float(self.model.cutoff), full_list=True)
        self._pairs = None
        if self.pair_cutoff is not None and self.pair_cutoff > self.model.cutoff:
            self._pairs = vesin.NeighborList(cutoff=float(self.pair_cutoff), full_list=True)

    def __getstate__(self) -> dict:
        """The calculator's state without vesin's neighbor lists (C handles that cannot be pickled), so that
        ``copy.deepcopy`` (one calculator per NEB image) and pickling (multiprocessing) work; they are rebuilt."""
        state = self.__dict__.copy()
        del state["_neighbors"], state["_pairs"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._make_neighbor_lists()

    @property
    def total_charge(self) -> Optional[float]:
        """Total charge Q in e given to this calculator (None: the atoms' own, see the class docstring)."""
        return self.parameters.get("total_charge")

    @total_charge.setter
    def total_charge(self, value: Optional[float]) -> None:
        self.set(total_charge=value)

    def set(self, **kwargs) -> dict:
        """ASE's ``set``: change ``total_charge`` (the only parameter; results at the old value are discarded).

        Raises:
          TypeError: any other keyword (it would be stored and ignored).
        """
        unknown = sorted(set(kwargs) - set(self.default_parameters))
        if unknown:
            raise TypeError(f"PhysNetCalculator.set got unknown parameter(s) {', '.join(unknown)}: the only one is "
                            "total_charge")
        charge = kwargs.get("total_charge")
        if charge is not None and not (is_real_number(charge) and np.isfinite(charge)):
            raise PhysNetInputError(f"total_charge must be a finite number in e (or None: the atoms' own), received "
                                    f"{charge!r}")
        return super().set(**kwargs)

    @classmethod
    def from_checkpoint(cls, path: str, **kwargs) -> "PhysNetCalculator":
        """Calculator for the model stored at ``path`` (see :func:`physnetjax.load_checkpoint`)."""
        return cls(checkpoint=path, **kwargs)

    @property
    def compiled_shapes(self) -> set:
        """Padded shapes (atoms, edges, pairs, periodic) compiled so far."""
        return set(self._shapes)

    def _padded_shape(self, n: int, p: int, q: Optional[int], periodic: bool) -> tuple:
        """Smallest compiled shape that fits (and is at most 2× the need), else a new bucket."""
        fits = [
            s for s in self._shapes
            if s[3] == periodic and s[0] >= n and s[1] >= p and (q is None) == (s[2] is None)
            and (q is None or s[2] >= q) and s[0] <= 2 * round_up(n, self.atom_bucket)
            and s[1] <= 2 * round_up(p, self.edge_bucket)
        ]
        if fits:
            return min(fits, key=lambda s: (s[0], s[1], s[2] or 0))
        shape = (round_up(n, self.atom_bucket), round_up(p, self.edge_bucket),
                 None if q is None else round_up(q, self.edge_bucket), periodic)
        logger.debug("compiling PhysNetCalculator for padded shape %s", shape)
        self._shapes.add(shape)
        return shape

    def _neighbor_list(self, nl, positions, cell, pbc):
        i, j, shifts = nl.compute(points=positions, box=neighbor_box(cell, pbc), periodic=pbc.tolist(),
                                  quantities="ijS")
        return i.astype(np.int32), j.astype(np.int32), shifts.astype(np.float64) @ cell

    def build_batch(self, atoms) -> tuple[Batch, int, np.ndarray]:
        """Padded :class:`Batch` for ``atoms``, its number of real atoms, and each atom's displacement d_i (n, 3) Å.

        Before the cast to the compute dtype, an isolated system is moved to its centroid
        (d_i = c), and each atom of a periodic system into its cell by a lattice vector
        (d_i = t_i, :func:`~physnetjax.neighbors.periodic.lattice_translations`), a slab or
        wire then as a whole to the centroid c' of the moved atoms (d_i = t_i + c', which
        centres its open directions): energy, forces and stress do not change, but float32
        coordinates 1000 Å from the origin would lose ~1e-3 eV/Å to rounding. The dipole
        about the origin is the model's dipole plus Σ_i q_i d_i.
        """
        total_charge = atoms_total_charge(atoms, self.total_charge)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        z, given = validate_structure(atoms.numbers, atoms.positions, self.model.supported_max_atomic_number,
                                      total_charge=total_charge, cell=cell, pbc=pbc, search_contacts=False)
        r = given.astype(np.float64)
        periodic = bool(pbc.any())
        if periodic:
            displacement = lattice_translations(r, cell, pbc)
            if not pbc.all():
                displacement = displacement + (r - displacement).mean(axis=0)
        else:
            displacement = np.broadcast_to(r.mean(axis=0), r.shape)
        r = r - displacement
        dst, src, shifts = self._neighbor_list(self._neighbors, r, cell, pbc)
        distances = np.linalg.norm(r[src] - r[dst] + shifts, axis=1)
        # the close contacts from the model's neighbor list when it reaches them, as validate_structure finds them
        contacts = list_contacts(dst, src, shifts, distances) if self.model.cutoff >= MIN_DISTANCE_WARNING else None
        composition, geometry = z.tobytes(), (given, cell if periodic else None, pbc)
        if check_distances(*geometry, atomic_numbers=z, contacts=contacts, warn=False) \
                and composition not in self._crowded:
            self._crowded.add(composition)
            check_distances(*geometry, atomic_numbers=z, contacts=contacts,
                            note=f"structure {self._structures + 1} this PhysNetCalculator evaluated; later "
                                 f"structures of {formula(z)} with close atoms are not reported again")
        if (seen := (composition, total_charge)) not in self._seen_inputs:  # formula() costs 0.1 ms a call
            self._seen_inputs.add(seen)
            if (key := (formula(z), total_charge)) not in self._judged_inputs:
                self._judged_inputs.add(key)
                self.training_record.check_structure(self.model, z, total_charge)
        self._structures += 1
        if periodic:
            periodic_pair_cutoff(self.model)
        n = z.shape[0]
        if self.training_record.distances is not None and composition not in self._left_domain:
            self._check_distances(z, r, cell, pbc, (dst, src, shifts, distances))
        pair_lists = None
        if self._pairs is not None:
            pair_lists = self._neighbor_list(self._pairs, r, cell, pbc)
        elif self.pair_cutoff is None:
            pdst, psrc = molecule_pairs(r, None)
            pair_lists = (pdst, psrc, None)

        q = None if pair_lists is None else pair_lists[0].shape[0]
        n_pad, p_pad, q_pad, _ = self._padded_shape(n, dst.shape[0], q, periodic)
        if not periodic:
            shifts = None
            if pair_lists is not None:
                pair_lists = pair_lists[:2] + (None,)
        t_pad = None
        if self.three_body_cutoff is not None:
            t_dst, t_src, t_shifts = pair_lists if pair_lists is not None else (dst, src, shifts)
            vectors = r[t_src] - r[t_dst] + (0.0 if t_shifts is None else t_shifts)
            t_pad = triplet_slots(count_triplets(t_dst, np.ones(len(t_dst), bool), vectors, self.three_body_cutoff),
                                  self.edge_bucket)
        cells = [cell] if stress_problem(cell, pbc) is None else None
        batch = assemble_batch(
            [z], [r], (dst, src, shifts), pair_lists, [total_charge], cells,
            num_atoms=n_pad, num_edges=p_pad, num_pairs=q_pad, num_molecules=1,
            three_body_cutoff=self.three_body_cutoff, num_triplets=t_pad, dtype=self.dtype,
        )
        return batch, n, displacement

    def _check_distances(self, z, r, cell, pbc, neighbors) -> None:
        """Warn when the structure leaves the training data's distances, once per composition (class docstring),
        judged on its ``neighbors`` (dst, src, shifts, distances: the full list of the model cutoff) unless the
        record reaches farther."""
        domain = self.training_record.distances
        if domain.cutoff > self.model.cutoff:
            _, text = domain.excursion(z, r, cell, pbc)
        else:
            dst, src, shifts, distances = neighbors
            if domain.holds_neighbors(z, dst, src, distances):
                return
            once = unique_pairs(dst, src, shifts)
            _, text = domain.pair_excursion(z, dst[once], src[once], distances[once])
        if text is not None:
            self._left_domain.add(z.tobytes())
            where = f"PhysNetCalculator, structure {self._structures} it evaluated"
            warn_caller(f"{outside_message(text, where)}; later structures of {formula(z)} outside them are not "
                        "reported again", TrainingDistancesWarning)

    def check_state(self, atoms, tol: float = 1e-15) -> list:
        """ASE's changes since the last call, plus ``"charge"`` when ``atoms.info["charge"]`` changed.

        ASE compares positions, numbers, cell, PBC and initial charges/magmoms but not
        ``info``, so a new total charge on the same geometry would return the cached results.
        """
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and not _same_value(self.atoms.info.get("charge"), atoms.info.get("charge")):
            changes = [*changes, "charge"]
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Evaluate the model on ``atoms`` and fill ``self.results`` (see module docstring)."""
        super().calculate(atoms, properties, system_changes)
        check_dtype(self.dtype)  # float64 needs x64 still on: switched off since, JAX computed in float32
        if {"stress", "stress_std"} & set(properties):
            problem = stress_problem(self.atoms.cell.array, self.atoms.pbc)
            if problem is not None:
                raise PropertyNotImplementedError(problem)
        batch, n, displacement = self.build_batch(self.atoms)
        per_atom = bool({"energies", "energies_std"} & set(properties))
        out = apply_fitting(self._network, self.params, batch, energies=per_atom)
        wanted = {"energy": out["energy"], "forces": out["forces"], "dispersion": out["dispersion"]}
        if per_atom:
            wanted["energies"] = out["energies"]
        if self.model.charges:
            wanted.update(charges=out["charges"], dipoles=out["dipoles"])
        if "stress" in out:
            wanted["stress"] = out["stress"]
        if self.ensemble:
            wanted.update({key: out[key] for key in ("energy_std", "energies_std", "forces_std", "charges_std",
                                                     "dipoles_std", "stress_std") if key in out})
        host = jax.device_get(wanted)
        require_finite(host, n)
        energy = float(host["energy"][0]) + element_energy_sum(self._element_energies, self.atoms.numbers)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(host["forces"][:n], dtype=np.float64),
            "dispersion_energy": float(host["dispersion"][0]),
        }
        if per_atom:
            self.results["energies"] = atom_energies(host, self._element_energies, self.atoms.numbers)
        if self.model.charges:
            self.results["charges"] = np.asarray(host["charges"][:n], dtype=np.float64)
            self.results["dipole"] = (np.asarray(host["dipoles"][0], dtype=np.float64)
                                      + self.results["charges"] @ displacement)
        if "stress" in host:
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.asarray(host["stress"][0], np.float64))
        if self.ensemble:
            self.results.update({key: value if isinstance(value, float) else np.asarray(value, np.float64)
                                 for key, value in spread_of(host, n).items() if value is not None})


def list_contacts(dst, src, shifts, distances) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The close contacts of a full neighbor list of cutoff ≥ :data:`~physnetjax.validation.MIN_DISTANCE_WARNING`,
    as :func:`~physnetjax.validation.close_contacts` finds them: pairs (i, j, d) with i ≤ j closer than that, each
    pair, and each pair of an atom with its own periodic image, once (:func:`unique_pairs`), sorted by d (ties by i,
    then j).

    Args:
      dst, src: (P,) atom indices. shifts: (P, 3) Å image shifts. distances: (P,) Å.
    """
    close = np.flatnonzero(distances < MIN_DISTANCE_WARNING)
    close = close[unique_pairs(dst[close], src[close], shifts[close])]
    i, j, d = np.minimum(dst, src)[close].astype(np.int64), np.maximum(dst, src)[close].astype(np.int64), \
        distances[close]
    order = np.lexsort((j, i, d))
    return i[order], j[order], d[order]


def stress_problem(cell, pbc) -> Optional[str]:
    """Why a structure of this ``cell`` and ``pbc`` has no stress (None: it has one).

    A stress needs a periodic direction and a volume V ≠ 0 spanned by the three cell vectors (ASE's EMT asks the
    same); vectors along open directions only enter V.
    """
    pbc = np.asarray(pbc, bool)
    if not pbc.any():
        return "stress needs a cell periodic along at least one direction (an isolated molecule has none)"
    if abs(np.linalg.det(np.asarray(cell, np.float64))) == 0.0:
        open_axes = ", ".join("xyz"[k] for k in range(3) if not pbc[k])
        return (f"stress needs a cell volume V (σ = (1/V) ∂E/∂ε), but the three cell vectors span none: give the "
                f"open direction(s) {open_axes} a vector across the vacuum, e.g. atoms.center(vacuum=10.0, axis=2)")
    return None


def _same_value(a, b) -> bool:
    """Whether two ``info["charge"]`` entries are equal, whatever they are (numbers, arrays of any shape, None)."""
    return np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
