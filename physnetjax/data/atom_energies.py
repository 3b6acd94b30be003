"""Isolated-atom energies of GFN2-xTB, the prior for element reference energies E0.

``GFN2_XTB_ATOM_ENERGIES`` maps Z → energy in eV of the free, neutral atom in its
high-spin ground configuration (unpaired electrons: H 1, C 2, N 3, O 2, F 1, …),
computed once with ``tblite`` 0.8.0 (``Calculator("GFN2-xTB", [Z], [[0, 0, 0]],
uhf=unpaired)``, 1 Hartree = 27.211386245988 eV) for H–Ar, Br and I. They are the
method of the bundled ethanol data; for data of another method they only give the
*shape* of the split of a molecule's energy among its elements (see
:func:`physnetjax.data.reference.fit_reference_energies`).
"""

from __future__ import annotations

GFN2_XTB_ATOM_ENERGIES = {
    1: -10.70721147048695,
    2: -47.43289208475855,
    3: -4.900000215363576,
    4: -15.486162680643933,
    5: -25.917120582831625,
    6: -48.79808021473973,
    7: -70.90808774153616,
    8: -102.52180794955642,
    9: -125.69864396821573,
    10: -161.4237950948581,
    11: -4.54693419984571,
    12: -12.679816557300112,
    13: -24.63524652649099,
    14: -42.71126229085321,
    15: -64.60469620049687,
    16: -85.61945320685352,
    17: -121.97572280477503,
    18: -116.43869911768442,
    35: -110.16092628549409,
    53: -102.84897896412124,
}
"""Z → GFN2-xTB free-atom energy in eV."""
