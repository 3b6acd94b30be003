"""Check 5: are the model's element reference energies E0 physically sensible?

E0[Z] (``element_energies``, fitted by the trainer) stand for the energy of an atom
of element Z in the data's method. Nothing here needs the network; the structure
only says which elements to look at. Findings (each one warns, none fails):

* ``counts``: E0[Z] / c_Z is the same for every element of the structure (c_Z its
  count of element Z): the signature of the minimum-norm least-squares split of a
  single composition, which gives hydrogen the largest share in an organic molecule;
* ``hydrogen``: E0[H] is lower than E0 of C, N, O or F present: in every
  electronic-structure method (all-electron or valence-only) a first-row atom
  has the lower energy;
* ``magnitude``: |E0[Z]| exceeds twice the Thomas–Fermi total energy of the atom,
  0.7687 Z^{7/3} Hartree, an upper bound of the size of any atom's energy (valence
  methods are far smaller); e.g. 42 eV for H, 1.4 keV for C;
* ``absent``: an element of the structure has E0 = 0 exactly (it was not in the
  training data, so its energies are unreferenced).

The value is the number of findings (0 → pass, ≥ 1 → warn).
"""

from __future__ import annotations

import numpy as np

from physnetjax.check.evaluate import Evaluator
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds
from physnetjax.units import HARTREE

GROUP = "references"
FIRST_ROW = (6, 7, 8, 9)
"""C, N, O, F: atoms whose energy lies below hydrogen's in every method."""


def thomas_fermi_energy(z) -> np.ndarray:
    """|E_TF(Z)| = 0.7687 Z^{7/3} Hartree in eV, the Thomas–Fermi total energy of a neutral atom."""
    return 0.7687 * np.asarray(z, dtype=np.float64) ** (7.0 / 3.0) * HARTREE


def element_energy_findings(element_energies, atomic_numbers) -> list[str]:
    """The findings of the module docstring for E0 (max_Z + 1,) eV and a structure's Z (n,), as sentences."""
    e0 = np.asarray(element_energies, dtype=np.float64)
    elements, counts = np.unique(np.asarray(atomic_numbers), return_counts=True)
    values = e0[elements]
    findings = []
    absent = elements[values == 0.0]
    if len(absent):
        findings.append(f"absent: E0 = 0 for Z = {absent.tolist()} (not in the training data)")
    per_count = values / counts
    if len(elements) > 1 and not len(absent) and np.ptp(per_count) <= 1e-6 * np.max(np.abs(per_count)):
        findings.append(f"counts: E0[Z] / count is {per_count[0]:.4g} eV for every element, the minimum-norm split "
                        "of a single composition (the data did not determine E0 per element)")
    if 1 in elements:
        lower = [int(z) for z in elements if z in FIRST_ROW and e0[1] < e0[z]]
        if lower:
            findings.append(f"hydrogen: E0[H] = {e0[1]:.4g} eV is below E0 of Z = {lower} "
                            f"({', '.join(f'{e0[z]:.4g}' for z in lower)} eV)")
    too_large = [int(z) for z in elements if abs(e0[z]) > 2.0 * thomas_fermi_energy(z)]
    if too_large:
        findings.append(f"magnitude: |E0| beyond twice the Thomas–Fermi atom energy for Z = {too_large} "
                        f"({', '.join(f'{e0[z]:.4g}' for z in too_large)} eV)")
    return findings


def check_element_energies(evaluator: Evaluator, index: int, settings: CheckSettings,
                           thresholds: Thresholds) -> list:
    """``references.element_energies`` for one structure (module docstring)."""
    model, structure = evaluator.model, evaluator.structure
    if model.element_energies is None:
        return [CheckResult.measured("references.element_energies", GROUP, index, 0.0, "findings", (0.0, np.inf),
                                     "no element energies in the model (energies are relative)")]
    findings = element_energy_findings(model.element_energies, structure.atomic_numbers)
    elements = sorted({int(z) for z in structure.atomic_numbers})
    details = {"element_energies_eV": {str(z): float(model.element_energies[z]) for z in elements},
               "findings": findings}
    message = "; ".join(findings) if findings else "E0 " + ", ".join(
        f"Z={z}: {model.element_energies[z]:.4g} eV" for z in elements) + " look physical"
    return [CheckResult.measured("references.element_energies", GROUP, index, float(len(findings)), "findings",
                                 (0.0, np.inf), message, details)]
