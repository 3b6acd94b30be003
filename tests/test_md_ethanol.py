"""NVE with the shipped ethanol model: energy conservation in float32 and float64.

Velocity Verlet is symplectic: with a smooth potential the energy error stays
bounded (an O(h²) oscillation, measured as the fluctuation σ about a linear fit) and
there is no systematic drift; what drifts is round-off. So over a run of length
t_run the fitted trend must change the energy by less than that bounded
oscillation: |drift|·t_run < σ. Halving h must divide σ by 4 (second order).
"""

import ase.io
import jax
import pytest

from physnetjax.checkpoint import load_checkpoint
from physnetjax.md.driver import simulate
from physnetjax.pretrained import example_geometry_path, example_model_path


@pytest.fixture(scope="module")
def ethanol():
    jax.config.update("jax_enable_x64", True)
    model, params, _ = load_checkpoint(example_model_path())
    return model, params, ase.io.read(example_geometry_path())


def nve_report(ethanol, dtype, dt=0.5, picoseconds=2.0):
    model, params, atoms = ethanol
    steps = int(round(picoseconds * 1000 / dt))
    return simulate(model, params, atoms, steps=steps, timestep_fs=dt, save_every=10, chunk_frames=400,
                    dtype=dtype, temperature_K=300.0, seed=0)


@pytest.fixture(scope="module")
def reports(ethanol):
    return {dtype: nve_report(ethanol, dtype) for dtype in ("float32", "float64")}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nve_energy_is_conserved(reports, dtype):
    report = reports[dtype]
    assert report.time_ps >= 2.0
    assert abs(report.drift_meV_per_atom_per_ps) * report.time_ps < report.fluctuation_meV_per_atom
    assert report.fluctuation_meV_per_atom < 1.0
    assert 150.0 < report.mean_temperature_K < 600.0


def test_float64_drifts_no_more_than_float32(reports):
    """Round-off is the only source of drift, so float64 must not drift more (within the fit's noise,
    bounded by σ/t_run as above)."""
    d32, d64 = reports["float32"], reports["float64"]
    noise = d64.fluctuation_meV_per_atom / d64.time_ps
    assert abs(d64.drift_meV_per_atom_per_ps) <= abs(d32.drift_meV_per_atom_per_ps) + noise


def test_energy_error_is_second_order(ethanol, reports):
    """σ(h = 0.25 fs) ≈ σ(0.5 fs)/4; ±25% for the sampling noise of a 2 ps σ estimate."""
    fine = nve_report(ethanol, "float64", dt=0.25)
    ratio = reports["float64"].fluctuation_meV_per_atom / fine.fluctuation_meV_per_atom
    assert 3.0 < ratio < 5.0


@pytest.mark.slow
def test_nve_long_float32(ethanol):
    report = nve_report(ethanol, "float32", picoseconds=20.0)
    assert abs(report.drift_meV_per_atom_per_ps) * report.time_ps < report.fluctuation_meV_per_atom
