"""Physical constants and unit conversions used anywhere in physnetjax.

Internal units are Å (length), eV (energy), e (charge), e·Å (dipole), amu (mass),
fs (time) and K (temperature). Every constant that converts between units lives
here and nowhere else; ``tests/test_units.py`` re-derives each one from the
CODATA 2018 defining/measured values below.

Derived constants:

* ``COULOMB_CONSTANT`` k_e = e² / (4π ε_0) in eV·Å·e⁻², PhysNet's value
  14.399645351950548 (CODATA 2014 e, pre-2019 SI ε_0).
* ``BAR`` = 1 bar in eV/Å³ (pressures and stresses are eV/Å³ inside).
* ``AMU_A2_PER_FS2_IN_EV`` = 1 amu·Å²/fs² in eV (103.6427...). With Å, eV, amu,
  fs: acceleration a = F / m / AMU_A2_PER_FS2_IN_EV [Å/fs²] and kinetic energy
  K = ½ m v² · AMU_A2_PER_FS2_IN_EV [eV].
* ``SQRT_EV_PER_A2_AMU_IN_CM1`` (521.47...): an eigenvalue λ of the mass-weighted
  Hessian in eV/(Å²·amu) is a vibration of wavenumber ν̃ = SQRT_EV_PER_A2_AMU_IN_CM1 · √λ
  in cm⁻¹ (ω = √λ, ν̃ = ω / (2π c)).
* ``CM1_IN_EV`` = h c · 1 cm⁻¹ in eV (1.2398...e-4), so a zero-point energy is
  ½ Σ_k ν̃_k · CM1_IN_EV.
* ``E2_PER_AMU_IN_KM_PER_MOL`` (974.88...): the double-harmonic IR intensity
  A_k = N_A / (12 ε_0 c²) · |∂μ/∂Q_k|² (SI, m/mol) for |∂μ/∂Q_k| = 1 e/√amu, i.e. a
  dipole derivative in e·Å per mass-weighted normal coordinate Å·√amu, in km/mol.
"""

from __future__ import annotations

import math

# CODATA 2018 (SI, exact where the SI defines them).
ELEMENTARY_CHARGE_C = 1.602176634e-19
AVOGADRO_PER_MOL = 6.02214076e23
BOLTZMANN_J_PER_K = 1.380649e-23
SPEED_OF_LIGHT_M_PER_S = 299792458.0
VACUUM_PERMITTIVITY_F_PER_M = 8.8541878128e-12
ATOMIC_MASS_UNIT_KG = 1.66053906660e-27
BOHR_RADIUS_M = 5.29177210903e-11
HARTREE_J = 4.3597447222071e-18
PLANCK_J_S = 6.62607015e-34

# Length.
BOHR = BOHR_RADIUS_M * 1e10
"""Bohr radius in Å (0.529177210903)."""
ANGSTROM_PER_BOHR = BOHR

# Energy.
HARTREE = HARTREE_J / ELEMENTARY_CHARGE_C
"""Hartree in eV (27.211386245988)."""
KCAL_PER_MOL = 4184.0 / AVOGADRO_PER_MOL / ELEMENTARY_CHARGE_C
"""1 kcal/mol in eV (0.0433641...)."""
KJ_PER_MOL = 1000.0 / AVOGADRO_PER_MOL / ELEMENTARY_CHARGE_C
"""1 kJ/mol in eV."""
BOLTZMANN = BOLTZMANN_J_PER_K / ELEMENTARY_CHARGE_C
"""Boltzmann constant k_B in eV/K."""

# Electrostatics.
COULOMB_CONSTANT = 1.6021766208e-19 * SPEED_OF_LIGHT_M_PER_S**2 * 1e-7 / 1e-10
"""k_e = e/(4π ε_0) in eV·Å·e⁻², PhysNet's value 14.399645351950548: the pre-2019 SI
(μ_0 = 4π·10⁻⁷ exactly, so 1/(4π ε_0) = c²·10⁻⁷) with the CODATA 2014 elementary charge
1.6021766208e-19 C. It differs from the CODATA 2018 value by 9e-9 relative, far below
model error, and is kept so that PhysNet models and data stay comparable."""
DEBYE = 1e-21 / SPEED_OF_LIGHT_M_PER_S / (ELEMENTARY_CHARGE_C * 1e-10)
"""1 Debye in e·Å (0.2081943...)."""

# Dynamics (Å, eV, amu, fs).
AMU_A2_PER_FS2_IN_EV = ATOMIC_MASS_UNIT_KG * 1e-20 / 1e-30 / ELEMENTARY_CHARGE_C
"""1 amu·Å²/fs² expressed in eV (103.6427...)."""

ASE_TIME_UNIT_FS = AMU_A2_PER_FS2_IN_EV**0.5
"""ASE's time unit Å·√(amu/eV) expressed in fs (≈ 10.18): ASE momenta are amu·Å per
this unit, so p_ASE = p[amu·Å/fs] · ASE_TIME_UNIT_FS."""

# Pressure.
BAR = 1e5 * 1e-30 / ELEMENTARY_CHARGE_C
"""1 bar = 10⁵ Pa expressed in eV/Å³ (6.2415...e-7); 1 GPa = 10⁴ bar."""

GPA = 1e4 * BAR
"""1 GPa = 10⁹ Pa expressed in eV/Å³ (6.2415...e-3)."""

# Vibrational spectroscopy (Å, eV, amu, e).
SQRT_EV_PER_A2_AMU_IN_CM1 = (
    (ELEMENTARY_CHARGE_C / 1e-20 / ATOMIC_MASS_UNIT_KG) ** 0.5 / (2.0 * math.pi * SPEED_OF_LIGHT_M_PER_S) / 100.0
)
"""Wavenumber in cm⁻¹ of the angular frequency 1 √(eV/(Å²·amu)) (521.47...)."""

CM1_IN_EV = PLANCK_J_S * SPEED_OF_LIGHT_M_PER_S * 100.0 / ELEMENTARY_CHARGE_C
"""Photon energy h c ν̃ of 1 cm⁻¹ in eV (1.2398...e-4)."""

E2_PER_AMU_IN_KM_PER_MOL = (
    AVOGADRO_PER_MOL / (12.0 * VACUUM_PERMITTIVITY_F_PER_M * SPEED_OF_LIGHT_M_PER_S**2)
    * ELEMENTARY_CHARGE_C**2 / ATOMIC_MASS_UNIT_KG / 1000.0
)
"""IR intensity in km/mol of a mode with |∂μ/∂Q| = 1 e/√amu (974.88...): A = N_A/(12 ε_0 c²)|∂μ/∂Q|²,
the Gaussian-units form N_A π/(3 c²)|∂μ/∂Q|² written in SI. 1 (D/Å)²/amu is 42.256 km/mol."""

ENERGY_UNITS = {
    "eV": 1.0,
    "kcal/mol": KCAL_PER_MOL,
    "kJ/mol": KJ_PER_MOL,
    "hartree": HARTREE,
    "Ha": HARTREE,
    "Eh": HARTREE,
    "meV": 1e-3,
}
"""Multiply an energy in the named unit by this factor to get eV."""

LENGTH_UNITS = {"Å": 1.0, "A": 1.0, "Angstrom": 1.0, "Ang": 1.0, "bohr": BOHR, "Bohr": BOHR, "nm": 10.0}
"""Multiply a length in the named unit by this factor to get Å."""

DIPOLE_UNITS = {"e·Å": 1.0, "eA": 1.0, "e*A": 1.0, "Debye": DEBYE, "debye": DEBYE, "D": DEBYE, "e·bohr": BOHR,
                "e*bohr": BOHR, "au": BOHR}
"""Multiply a dipole in the named unit by this factor to get e·Å."""

# Each table lists the internal unit first, then the others commonest first, each unit's name as messages write it
# before its other spellings: physnetjax.data.sanity names unit slips of data labels from them, in this order.


def distinct_units(table: dict[str, float]) -> dict[str, float]:
    """One entry per unit of a unit table (:data:`ENERGY_UNITS`, :data:`LENGTH_UNITS`, :data:`DIPOLE_UNITS`):
    its first spelling → its factor to the internal unit (eV, Å, e·Å), in table order, the internal unit first.

    Spellings with equal factors are one unit (``"hartree"`` and ``"Ha"``).
    """
    first = {}
    for name, factor in table.items():
        first.setdefault(factor, name)
    return {name: factor for factor, name in first.items()}


def unit_factor(table: dict[str, float], unit: str, quantity: str) -> float:
    """The factor of ``unit`` in a unit table (:data:`ENERGY_UNITS`, :data:`LENGTH_UNITS`, :data:`DIPOLE_UNITS`).

    A spelling of the table matches in any case ("ev", "HARTREE", "angstrom", "DEBYE"), except where case carries
    meaning: one-letter spellings ("A", "D") and a leading capital M, a prefix "mega" ("MeV" is not meV). Raises
    ValueError naming ``quantity`` and the known spellings for anything else.
    """
    if unit in table:
        return table[unit]
    folded = {name.casefold(): name for name in table if len(name) > 1}
    if isinstance(unit, str) and unit.casefold() in folded and not unit.startswith("M"):
        return table[folded[unit.casefold()]]
    raise ValueError(f"unknown {quantity} unit {unit!r}; known units: {sorted(table)} (in any letter case, except "
                     "'A', 'D' and 'meV')")


def energy_factor(unit: str) -> float:
    """Factor converting energies in ``unit`` to eV (:func:`unit_factor`); raises ValueError for unknown units."""
    return unit_factor(ENERGY_UNITS, unit, "energy")


def force_factor(energy_unit: str, length_unit: str = "A") -> float:
    """Factor converting forces in ``energy_unit``/``length_unit`` to eV/Å."""
    return energy_factor(energy_unit) / unit_factor(LENGTH_UNITS, length_unit, "length")


def dipole_factor(unit: str) -> float:
    """Factor converting dipoles in ``unit`` to e·Å (:func:`unit_factor`); raises ValueError for unknown units."""
    return unit_factor(DIPOLE_UNITS, unit, "dipole")


# --- Vibrational spectra from MD (physnetjax.spectra.autocorrelation / md_spectrum) ---------------

SPEED_OF_LIGHT_CM_PER_FS = SPEED_OF_LIGHT_M_PER_S * 1e2 * 1e-15
"""c in cm/fs (2.99792458e-5): a frequency f in fs⁻¹ is the wavenumber f / c in cm⁻¹, and a
correlation window of T fs resolves Δν̃ = 1 / (c T) cm⁻¹."""
