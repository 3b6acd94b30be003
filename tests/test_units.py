"""Every constant in physnetjax.units re-derived from CODATA 2018 values written here."""

import math

import pytest

from physnetjax import units

# CODATA 2018 values, typed in independently of physnetjax.units.
E = 1.602176634e-19  # C
NA = 6.02214076e23  # 1/mol
KB = 1.380649e-23  # J/K
C = 299792458.0  # m/s
EPS0 = 8.8541878128e-12  # F/m
AMU = 1.66053906660e-27  # kg
A0 = 5.29177210903e-11  # m
EH = 4.3597447222071e-18  # J


def test_length_and_energy():
    assert units.BOHR == pytest.approx(0.529177210903, rel=1e-12)
    assert units.HARTREE == pytest.approx(27.211386245988, rel=1e-12)
    assert units.KCAL_PER_MOL == pytest.approx(4184.0 / NA / E, rel=1e-12)
    assert units.KCAL_PER_MOL == pytest.approx(0.04336410424, rel=1e-10)
    assert units.KJ_PER_MOL == pytest.approx(1000.0 / NA / E, rel=1e-12)
    assert units.BOLTZMANN == pytest.approx(8.617333262e-5, rel=1e-9)


def test_coulomb_constant():
    # PhysNet's k_e: CODATA 2014 e with the pre-2019 SI eps0 = 1/(mu0 c^2), mu0 = 4 pi 1e-7.
    eps0_pre2019 = 1.0 / (4.0 * math.pi * 1e-7 * C**2)
    assert units.COULOMB_CONSTANT == pytest.approx(1.6021766208e-19 / (4.0 * math.pi * eps0_pre2019) / 1e-10, rel=1e-14)
    assert units.COULOMB_CONSTANT == pytest.approx(14.399645351950548, rel=1e-14)
    # It agrees with CODATA 2018 e/(4 pi eps0) and with Hartree*Bohr to within the revision.
    assert units.COULOMB_CONSTANT == pytest.approx(E / (4.0 * math.pi * EPS0) / 1e-10, rel=2e-8)
    assert units.COULOMB_CONSTANT == pytest.approx(EH * A0 / E / 1e-10, rel=2e-8)


def test_debye():
    # 1 D = 1e-21 / c  C*m; in e*Angstrom.
    assert units.DEBYE == pytest.approx(1e-21 / C / (E * 1e-10), rel=1e-12)
    assert units.DEBYE == pytest.approx(0.2081943, rel=1e-6)


def test_md_unit_is_not_the_original_1e4_error():
    # 1 amu * (1 Angstrom / 1 fs)^2 = AMU * 1e-20 m^2 / 1e-30 s^2 in J, then in eV.
    value = AMU * 1e10 / E
    assert units.AMU_A2_PER_FS2_IN_EV == pytest.approx(value, rel=1e-12)
    assert units.AMU_A2_PER_FS2_IN_EV == pytest.approx(103.6427, rel=1e-6)
    # The original MD drivers used 0.01036427 (off by 1e4).
    assert units.AMU_A2_PER_FS2_IN_EV / 0.01036427 == pytest.approx(1e4, rel=1e-5)


def test_unit_factor_lookup():
    assert units.energy_factor("kcal/mol") == units.KCAL_PER_MOL
    assert units.force_factor("hartree", "bohr") == pytest.approx(units.HARTREE / units.BOHR)
    assert units.dipole_factor("Debye") == units.DEBYE
    # the spellings the help texts and the README use (eV/Å, e·Å) and lower-case debye were refused
    assert units.force_factor("kcal/mol", "Å") == units.KCAL_PER_MOL
    assert units.dipole_factor("debye") == units.dipole_factor("D") == units.DEBYE
    assert units.dipole_factor("e·Å") == 1.0
    with pytest.raises(ValueError, match="unknown energy unit 'furlong'"):
        units.energy_factor("furlong")
    with pytest.raises(ValueError, match="unknown dipole unit"):
        units.dipole_factor("x")


@pytest.mark.parametrize("spelling, canonical", [("ev", "eV"), ("EV", "eV"), ("Hartree", "hartree"), ("HARTREE", "hartree"),
                                                 ("ha", "hartree"), ("Eh", "hartree"), ("KCAL/MOL", "kcal/mol"),
                                                 ("kj/mol", "kJ/mol"), ("mev", "meV")])
def test_energy_unit_spellings_match_in_any_case(spelling, canonical):
    assert units.energy_factor(spelling) == units.energy_factor(canonical)


def test_length_and_dipole_unit_spellings_match_in_any_case():
    assert units.force_factor("Hartree", "BOHR") == pytest.approx(units.HARTREE / units.BOHR)
    for spelling in ("angstrom", "ANGSTROM", "Ang", "ang"):
        assert units.force_factor("eV", spelling) == 1.0
    assert units.dipole_factor("DEBYE") == units.DEBYE
    assert units.dipole_factor("E*BOHR") == units.dipole_factor("AU") == units.BOHR
    assert units.dipole_factor("ea") == 1.0


@pytest.mark.parametrize("unit, factor", [("MeV", units.energy_factor), ("MEV", units.energy_factor),
                                          ("a", lambda u: units.force_factor("eV", u)), ("d", units.dipole_factor)])
def test_unit_spellings_whose_case_carries_meaning_are_refused(unit, factor):
    """MeV is mega-eV (10⁹ × meV); one-letter spellings ('a', 'd') are too short to guess."""
    with pytest.raises(ValueError, match=f"unknown (energy|length|dipole) unit '{unit}'"):
        factor(unit)


def test_ase_time_unit():
    # ASE's time unit: 1 Angstrom * sqrt(amu / eV), in fs, from SI.
    seconds = 1e-10 * math.sqrt(AMU / E)
    assert units.ASE_TIME_UNIT_FS == pytest.approx(seconds / 1e-15, rel=1e-12)


def test_bar_in_ev_per_cubic_angstrom():
    # 1 bar = 1e5 Pa = 1e5 J/m^3; one eV/Angstrom^3 = E J / 1e-30 m^3 = 160.2 GPa.
    assert units.BAR == pytest.approx(1e5 / (E / 1e-30), rel=1e-12)
    assert 1e4 * units.BAR == pytest.approx(1.0 / 160.2176634, rel=1e-9)  # 1 GPa
    assert units.GPA == pytest.approx(1e9 / (E / 1e-30), rel=1e-12)  # the plots' and reports' stress unit


H = 6.62607015e-34  # J s


def test_harmonic_wavenumber():
    # omega = sqrt(k / m) for k = 1 eV/A^2 and m = 1 amu, in rad/s; nu~ = omega / (2 pi c), in 1/cm.
    omega = math.sqrt((E / 1e-20) / AMU)
    assert units.SQRT_EV_PER_A2_AMU_IN_CM1 == pytest.approx(omega / (2.0 * math.pi * C * 100.0), rel=1e-12)
    assert units.SQRT_EV_PER_A2_AMU_IN_CM1 == pytest.approx(521.4709, rel=1e-7)


def test_wavenumber_energy():
    # E = h c nu~ for nu~ = 100 1/m; hc = 1.239841984... eV um.
    assert units.CM1_IN_EV == pytest.approx(H * C * 100.0 / E, rel=1e-12)
    assert units.CM1_IN_EV == pytest.approx(1.239841984e-6 / 1e-2, rel=1e-9)


def test_ir_intensity_factor():
    # SI: A = N_A / (12 eps0 c^2) (dmu/dQ)^2 with dmu/dQ = 1 e / sqrt(amu), in km/mol.
    si = NA / (12.0 * EPS0 * C**2) * E**2 / AMU / 1000.0
    assert units.E2_PER_AMU_IN_KM_PER_MOL == pytest.approx(si, rel=1e-12)
    # Gaussian units: A = N_A pi / (3 c^2) (dmu/dQ)^2, e in statC, c in cm/s, amu in g: cm/mol -> km/mol.
    e_statcoulomb = E * C * 10.0
    gaussian = NA * math.pi / (3.0 * (C * 100.0) ** 2) * e_statcoulomb**2 / (AMU * 1000.0) / 1e5
    assert units.E2_PER_AMU_IN_KM_PER_MOL == pytest.approx(gaussian, rel=1e-8)
    # Porezag & Pederson, PRB 54, 7830 (1996): 1 (D/A)^2/amu = 42.255 km/mol (the factor ASE uses).
    assert units.E2_PER_AMU_IN_KM_PER_MOL * units.DEBYE**2 == pytest.approx(42.255, rel=5e-5)


def test_speed_of_light_in_cm_per_fs():
    # c = 299792458 m/s = 2.99792458e10 cm/s = 2.99792458e-5 cm/fs; 1 cm^-1 is a period of 1/(c * 1 cm^-1) = 33356 fs.
    assert units.SPEED_OF_LIGHT_CM_PER_FS == pytest.approx(C * 100.0 * 1e-15, rel=1e-14)
    assert 1.0 / units.SPEED_OF_LIGHT_CM_PER_FS == pytest.approx(33356.40952, rel=1e-9)


def test_distinct_units_name_each_unit_once_by_its_first_spelling_internal_unit_first():
    """The slip tables of physnetjax.data.sanity name units by these names; each is an accepted spelling."""
    assert units.distinct_units(units.ENERGY_UNITS) == {"eV": 1.0, "kcal/mol": units.KCAL_PER_MOL,
                                                        "kJ/mol": units.KJ_PER_MOL, "hartree": units.HARTREE,
                                                        "meV": 1e-3}
    assert units.distinct_units(units.LENGTH_UNITS) == {"Å": 1.0, "bohr": units.BOHR, "nm": 10.0}
    assert units.distinct_units(units.DIPOLE_UNITS) == {"e·Å": 1.0, "Debye": units.DEBYE, "e·bohr": units.BOHR}
    assert units.dipole_factor("e·bohr") == units.dipole_factor("au") == units.BOHR
