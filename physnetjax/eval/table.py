"""The evaluation report as text: rich tables on a terminal, a plain aligned layout elsewhere.

Tables: metrics (quantity, unit, MAE, RMSE, compared entries), force errors per element, errors per
``config_type`` (when the frames hold more than one kind, as MACE reports them: energy per atom, forces, and the
force RMSE in % of the RMS reference force), the worst frames and an ensemble's spread. When stdout is not a
terminal (CI logs, ``| tee``, files) every table is printed as plain columns padded to their widest cell, so no
column is ever cut.
"""

from __future__ import annotations

import math
import sys

from physnetjax.eval.evaluate import QUANTITIES, EvalResult
from physnetjax.text_table import print_table


def _number(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def tables(result: EvalResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, cells as strings."""
    metric_rows = [[QUANTITIES[q][0], QUANTITIES[q][1], _number(result.metrics[f"{q}_mae"]),
                    _number(result.metrics[f"{q}_rmse"]), str(result.counts[q])]
                   for q in QUANTITIES if f"{q}_mae" in result.metrics]
    element_rows = [[symbol, str(e["atoms"]), _number(e["mae"]), _number(e["rmse"])]
                    for symbol, e in result.element_forces.items()]
    kinds = result.config_types if len(result.config_types) > 1 else {}  # one kind: the errors table says it all
    kind_rows = [[kind, str(e["frames"]), _number(e.get("energy_per_atom_mae")), _number(e.get("energy_per_atom_rmse")),
                  _number(e.get("forces_mae")), _number(e.get("forces_rmse")), _number(e.get("forces_relative_rmse"))]
                 for kind, e in kinds.items()]
    frames = result.frames
    worst_rows = []
    for criterion, indices in (("forces", result.worst_forces), ("energy", result.worst_energy)):
        for rank, k in enumerate(indices, 1):
            worst_rows.append([f"{criterion} #{rank}", str(frames["source"][k]), str(frames["num_atoms"][k]),
                               _number(frames["energy_error"][k]), _number(frames["forces_mae"][k]),
                               _number(frames["forces_max_atom_error"][k])])
    uncertainty = result.uncertainty or {}
    uncertainty_rows = [[what, _number(uncertainty.get(key))] for what, key in UNCERTAINTY_ROWS if uncertainty]
    return [
        ("errors (prediction − reference)", ["quantity", "unit", "MAE", "RMSE", "count"], metric_rows),
        ("force errors per element (eV/Å)", ["element", "atoms", "MAE", "RMSE"], element_rows),
        ("errors per config_type", ["config_type", "frames", "E MAE / eV/atom", "E RMSE / eV/atom", "F MAE / eV/Å",
                                    "F RMSE / eV/Å", "F RMSE / %"], kind_rows),
        ("worst frames", ["by", "frame", "atoms", "ΔE / eV", "F MAE / eV/Å", "max |ΔF_i| / eV/Å"], worst_rows),
        ("ensemble spread against error", ["measure", "value"], uncertainty_rows),
    ]


UNCERTAINTY_ROWS = (
    ("force error / calibrated spread (1: calibration holds)", "force_error_over_spread"),
    ("force NLL per atom", "force_nll_per_atom"),
    ("Spearman ρ: max forces_std vs force RMSE per frame", "spearman_max_forces_std_vs_force_rmse"),
    ("Spearman ρ: energy_std vs |ΔE|", "spearman_energy_std_vs_abs_energy_error"),
)
"""Rows of the ensemble table (:attr:`~physnetjax.eval.evaluate.EvalResult.uncertainty`; one model: no table)."""


def render(result: EvalResult, stream=None) -> None:
    """Print the tables to ``stream`` (default stdout), a blank line between them
    (:func:`physnetjax.text_table.print_table`: rich on a terminal, plain columns otherwise).

    On a narrow terminal only the frame names wrap; numbers keep their full width.
    """
    from rich.console import Console

    console = Console(file=sys.stdout if stream is None else stream)
    for k, (title, header, rows) in enumerate(t for t in tables(result) if t[2]):
        if k:
            console.out("")
        print_table(console, title, header, rows, wrap=header.index("frame") if "frame" in header else None)
