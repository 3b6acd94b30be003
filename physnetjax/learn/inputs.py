"""Checks of a new run's starting frames before any training: every frame labelled, and labelled as the loop labels.

The loop appends its own labels (the labeller's: eV, eV/Å, F = −dE/dR) to the starting
frames, so the starting labels must be that labeller's too. Units, a force sign or another
method cannot be told from the file alone, but the labeller is at hand: it labels
:data:`CHECK_FRAMES` starting frames (the first one, and the next of the same composition,
so that an energy offset can be told from a scale) once, when the run starts (a resumed run
is not checked again), and the file's labels are compared with those:

* forces: they agree when RMS(F_file − F_label) ≤ :data:`FORCE_TOLERANCE` · RMS(F_label) +
  :data:`FORCE_FLOOR` (eV/Å; the floor for frames at a minimum). Otherwise the least-squares
  factor s = Σ F_file·F_label / Σ F_label² is reported: when it explains the file's forces
  (the same test after scaling by s), s within :data:`FACTOR_TOLERANCE` of −1 is the
  opposite sign (gradients +dE/dR stored as F) and |s| near a unit ratio a unit slip
  (:data:`physnetjax.data.sanity.QUANTITY_SLIPS`: 23.06 kcal/mol/Å, 96.49 kJ/mol/Å, 1/51.42
  hartree/bohr, ...); otherwise the labels are another method's or other settings';
* energies: they agree when |E_file − E_label| / N ≤ :data:`ENERGY_TOLERANCE` eV/atom on
  every frame compared; otherwise the least-squares ratio is named when it is a unit
  ratio, and a difference that is the same on both frames (of one composition) is named as
  a constant offset (e.g. atomization energies, or another reference energy).

Tolerances: xTB is deterministic, the same geometry gives the same energy to ~1e-6 eV and
the same forces to ~1e-6 eV/Å (the bundled GFN2-xTB set, relabelled by the tblite installed:
1e-8 eV/atom and a 3e-5 relative force RMS difference, its forces stored as float32). Another
method differs by far more (GFN1-xTB against GFN2-xTB on the bundled ethanol frames: 2.3
eV/atom and a 9.5 % relative force RMS difference). The tolerances, 1e-3 eV/atom and 1 %,
sit between the two, well below a trained model's own errors. A constant energy offset is
refused however small the force difference: the loop's new frames carry the labeller's
absolute energies, and frames of one composition with two energy references cannot be fitted.
"""

from __future__ import annotations

import math
from typing import Callable

import ase
import numpy as np

from physnetjax.data import Dataset
from physnetjax.data.sanity import QUANTITY_SLIPS
from physnetjax.errors import PhysNetInputError

CHECK_FRAMES = 2
"""Starting frames labelled by the labeller to compare with the file's labels (once per run)."""
ENERGY_TOLERANCE = 1e-3
"""eV/atom: the largest |E_file − E_label| / N accepted."""
FORCE_TOLERANCE = 0.01
"""The largest RMS(F_file − F_label) / RMS(F_label) accepted (plus :data:`FORCE_FLOOR`)."""
FORCE_FLOOR = 1e-3
"""eV/Å added to the force tolerance, for frames whose forces nearly vanish."""
FACTOR_TOLERANCE = 0.01
"""A measured factor names a unit ratio (or −1, a sign) when within this relative distance of it."""
LABELS_NEEDED = (("E", "energies"), ("F", "forces"))

GENERATE_HINT = ("python -m physnetjax.data.generate --molecule STRUCTURE --method {method} --out start.npz, "
                 "then --data start.npz")


def check_labelled(data: Dataset, where: str, what: str = "starting frames") -> None:
    """Refuse ``data`` (read from ``where``) unless every frame has an energy and forces.

    Raises:
      PhysNetInputError: naming ``where``, the missing key (E or F) and the first frames without it.
    """
    for key, name in LABELS_NEEDED:
        has = data.has_E if key == "E" else data.has_F
        missing = np.nonzero(~np.asarray(has, bool))[0]
        if not len(missing):
            continue
        if len(missing) == len(data):
            amount = f"has no {name} (key '{key}')"
        else:
            amount = (f"has {len(missing)} of its {len(data)} {what} without {name} (key '{key}'): "
                      + ", ".join(str(s) for s in data.sources[missing][:3]) + (", ..." if len(missing) > 3 else ""))
        raise PhysNetInputError(f"{where} {amount}: the learning loop trains on energies and forces and labels its "
                                "new frames with both; give frames with both labels (E in eV, F = −dE/dR in eV/Å)")


def check_frames(data: Dataset) -> list[int]:
    """The frames :func:`check_labels_against` labels: the first, and the next frame of its composition (else the
    next frame), at most :data:`CHECK_FRAMES`."""
    def composition(k):
        return tuple(sorted(data.Z[k, : int(data.N[k])].tolist()))

    chosen = [0]
    same = [k for k in range(1, len(data)) if composition(k) == composition(0)]
    others = [k for k in range(1, len(data)) if k not in same]
    return (chosen + same + others)[:CHECK_FRAMES]


def _slip(factor: float, slips) -> str | None:
    """The slip of ``slips`` ((name, c): labels read 1/c times their right values) whose 1/c is within
    :data:`FACTOR_TOLERANCE` of ``factor`` (> 0), or None."""
    for name, c in slips:
        if abs(math.log(factor * c)) < FACTOR_TOLERANCE:
            return name
    return None


def _times(factor: float) -> str:
    """``23.06`` or ``1/51.42`` (a factor below 1 as its reciprocal), with its sign."""
    size = abs(factor)
    return ("−" if factor < 0 else "") + (f"{size:.4g}" if size >= 1 or size == 0 else f"1/{1 / size:.4g}")


def _forces_agree(file_forces: np.ndarray, label_forces: np.ndarray) -> bool:
    rms = float(np.sqrt(np.mean(label_forces**2)))
    return float(np.sqrt(np.mean((file_forces - label_forces) ** 2))) <= FORCE_TOLERANCE * rms + FORCE_FLOOR


def label_findings(file_E: np.ndarray, file_F: list, label_E: np.ndarray, label_F: list,
                   atoms: np.ndarray, labeller: str) -> list[str]:
    """How the file's labels ((k,) E, k (n_j, 3) F) differ from the labeller's on the same frames (of ``atoms``
    (k,) atoms each), as phrases; empty when they agree within the tolerances of the module docstring."""
    findings = []
    F_file, F_label = np.concatenate(file_F), np.concatenate(label_F)
    same_method = True  # the forces agree, or differ by a unit factor or the sign only
    if not _forces_agree(F_file, F_label):
        norm = float(np.sum(F_label**2))
        factor = float(np.sum(F_file * F_label) / norm) if norm > 0 else 0.0
        relative = float(np.sqrt(np.mean((F_file - F_label) ** 2) / max(np.mean(F_label**2), 1e-30)))
        explained = factor != 0 and _forces_agree(F_file, factor * F_label)
        slip = _slip(abs(factor), QUANTITY_SLIPS["forces"]) if explained else None
        if explained and abs(factor + 1) < FACTOR_TOLERANCE:
            findings.append(f"the forces are −1 × {labeller}'s: the opposite sign (+dE/dR, gradients, stored as F)")
        elif explained and slip:
            sign = " and of the opposite sign (+dE/dR, gradients)" if factor < 0 else ""
            findings.append(f"the forces are {_times(factor)} × {labeller}'s, as for {slip}{sign}")
        else:
            same_method = False
            findings.append(f"the forces differ from {labeller}'s by {100 * relative:.3g} % RMS (least-squares "
                            f"factor {factor:.4g}; tolerance {100 * FORCE_TOLERANCE:g} %)")
    per_atom = (file_E - label_E) / atoms
    if np.max(np.abs(per_atom)) > ENERGY_TOLERANCE:
        norm = float(np.sum(label_E**2))
        ratio = float(np.sum(file_E * label_E) / norm) if norm > 0 else 0.0
        slip = _slip(ratio, QUANTITY_SLIPS["energies"]) if ratio > 0 else None
        offsets = file_E - label_E
        constant = same_method and len(offsets) > 1 and len(set(atoms.tolist())) == 1 and \
            float(np.ptp(offsets)) / atoms[0] <= ENERGY_TOLERANCE
        if slip:
            findings.append(f"the energies are {_times(ratio)} × {labeller}'s, as for {slip}")
        elif constant:
            findings.append(f"the energies are offset by a constant {float(np.mean(offsets)):+.6g} eV from "
                            f"{labeller}'s (another reference energy, e.g. atomization energies: subtract it from "
                            "the file's E)")
        else:
            findings.append(f"the energies differ from {labeller}'s by up to {float(np.max(np.abs(per_atom))):.3g} "
                            f"eV/atom (tolerance {ENERGY_TOLERANCE:g} eV/atom)")
    return findings


MIXED_IN_TRAINING = "The loop would mix the two in one training set"
"""What labels other than the labeller's would do in the starting frames (the message of :func:`check_labels_against`)."""
COMPARED_IN_TESTS = ("The per-round test errors would compare the models, trained on the labeller's labels, with "
                     "other labels")
"""What they would do in the test frames (``--test``)."""


def check_labels_against(data: Dataset, label: Callable, where: str, labeller: str,
                         method: str | None = None, consequence: str = MIXED_IN_TRAINING) -> None:
    """Label :func:`check_frames` of ``data`` (read from ``where``) with ``label`` and refuse ``data`` when its labels
    are not the labeller's (tolerances in the module docstring). ``labeller`` names the labeller in the message,
    ``method`` is the tblite method of an xTB labeller with the options of the state it labels at (``GFN2-xTB --uhf
    2``), whose ``data.generate`` command the message names (None: another labeller);
    ``consequence`` says what the file's labels would do in the loop (:data:`MIXED_IN_TRAINING`,
    :data:`COMPARED_IN_TESTS`).

    Raises:
      PhysNetInputError: naming ``where``, the frames compared, each difference found (factor, sign, offset) and
        what to do; also when the labeller fails on a frame compared.
    """
    from physnetjax.learn.labellers import checked_labels

    frames = check_frames(data)
    file_E, file_F, label_E, label_F, atoms = [], [], [], [], []
    for k in frames:
        n = int(data.N[k])
        geometry = ase.Atoms(numbers=data.Z[k, :n], positions=data.R[k, :n])
        try:
            labels = checked_labels(label(geometry), n, f"labeller on {data.sources[k]}")
        except ValueError as error:
            raise PhysNetInputError(f"{data.sources[k]}: the starting frame could not be labelled to compare its "
                                    f"labels with {labeller}'s: {error}") from error
        file_E.append(float(data.E[k]))
        file_F.append(np.asarray(data.F[k, :n], np.float64))
        label_E.append(float(labels["E"]))
        label_F.append(labels["F"])
        atoms.append(n)
    findings = label_findings(np.array(file_E), file_F, np.array(label_E), label_F, np.array(atoms, float),
                              labeller)
    if findings:
        raise PhysNetInputError(
            f"{where}: its labels are not those of {labeller}, which labels the loop's new frames (compared on "
            f"{', '.join(str(s) for s in data.sources[frames])}): {'; '.join(findings)}. {consequence}: read the file "
            "in its units and force sign (--energy-unit, --force-unit, --force-sign -1), or start from frames "
            "labelled "
            + (f"with {labeller} ({GENERATE_HINT.format(method=method)})" if method else f"with {labeller}"))

