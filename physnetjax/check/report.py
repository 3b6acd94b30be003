"""The check report: one row per check, its JSON form (schema version 1) and its rich table.

JSON schema, version 1 (``SCHEMA_VERSION``); keys are never removed or renamed
within a version, new optional keys may be added::

    {
      "schema": "physnetjax.check",          # constant
      "schema_version": 1,
      "physnetjax_version": str,
      "status": "pass" | "warn" | "fail",     # worst status over all checks
      "counts": {"pass": int, "warn": int, "fail": int},
      "checkpoint": str | null,
      "model": {...},                         # PhysNet.config()
      "settings": {...},                      # CheckSettings fields
      "structures": [{"index": int, "name": str, "formula": str,
                      "num_atoms": int, "total_charge": float,
                      # a crystal (cell periodic along x, y and z) also has:
                      "cell": [[float] * 3] * 3,        # Å, cell vectors as rows
                      "volume_A3": float,
                      "not_checked": {str: str}}],       # row or group → why it does not apply to a cell
      "checks": [{
          "id": str,           # e.g. "forces.fd.total", "invariance.rotation", "smoothness.C-H"
          "group": "forces" | "invariance" | "smoothness" | "stability" | "references" | "precision" | "inputs",
          "structure": int,    # index into "structures"
          "status": "pass" | "warn" | "fail",
          "value": float | null,   # the measured number; null if not finite (then "fail")
          "unit": str,
          "warn_above": float | null,  # value > warn_above → warn (null: never)
          "fail_above": float | null,  # value > fail_above → fail (null: only for a reason below)
          "message": str,          # one-line human summary
          "details": {...}         # check-specific numbers (see each check's docstring)
      }]
    }

Group ``inputs`` holds what the checkpoint records of its training, present where it
records it (it is not one of ``GROUPS``: ``--only`` does not select it):

* per structure, ``inputs.trained_elements`` (atoms of elements absent from the training
  data), ``inputs.trained_charges`` (e from the nearest trained total charge) and
  ``inputs.trained_distances`` (the largest relative excursion beyond the training data's
  interatomic distances, warn above :data:`~physnetjax.distance_domain.DOMAIN_MARGIN`);
* for a model with charges, ``inputs.dipole_surface``: 1 − R² of the dipole in the
  molecular frame the trainer recorded (warn above 1 − 0.8: IR intensities unreliable).
  It belongs to the model, not to a structure, so it is reported once, first, under
  structure 0 (``structure`` stays an index; ``counts`` count it once, whatever the
  number of structures).

A crystal gets the rows of a molecule (its forces, invariances, stability, element energies and precision) with
its images, and in addition ``forces.fd.stress`` (GPa, :mod:`~physnetjax.check.stress`),
``invariance.wrapping`` and ``invariance.supercell`` (:mod:`~physnetjax.check.cell_invariance`); it gets no
``invariance.torque`` and no ``smoothness`` rows, which its structure's ``not_checked`` names with the reason.

A check may also fail for a reason other than its value (e.g. a flipped force sign,
a detected discontinuity), or warn for one (e.g. forces that are zero everywhere: an
untrained or broken model); ``message`` then says why.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from physnetjax.jsonlines import replace_text
from physnetjax.text_table import print_line, print_table

SCHEMA = "physnetjax.check"
SCHEMA_VERSION = 1
STATUSES = ("pass", "warn", "fail")
GROUPS = ("forces", "invariance", "smoothness", "stability", "references", "precision")
CHECK_KEYS = ("id", "group", "structure", "status", "value", "unit", "warn_above", "fail_above", "message", "details")
REPORT_KEYS = ("schema", "schema_version", "physnetjax_version", "status", "counts", "checkpoint", "model",
               "settings", "structures", "checks")


def status_of(value: float, warn_above: float, fail_above: float) -> str:
    """``"fail"`` if value > fail_above or not finite, ``"warn"`` if value > warn_above, else ``"pass"``."""
    if not math.isfinite(value) or value > fail_above:
        return "fail"
    return "warn" if value > warn_above else "pass"


def worst(statuses) -> str:
    """The worst of some statuses (``"pass"`` for none)."""
    return max(statuses, key=STATUSES.index, default="pass")


def _json_number(value):
    return float(value) if value is not None and math.isfinite(value) else None


def _jsonable(value):
    """Nested dicts/lists of plain Python numbers and strings; non-finite floats → None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    return _json_number(float(value))


@dataclasses.dataclass
class CheckResult:
    """One row of the report (fields as in the JSON schema of the module docstring)."""

    id: str
    group: str
    structure: int
    status: str
    value: float
    unit: str
    warn_above: float
    fail_above: float
    message: str
    details: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def measured(cls, id: str, group: str, structure: int, value: float, unit: str, limits: tuple[float, float],
                 message: str, details: dict | None = None, failure: str | None = None,
                 warning: str | None = None) -> CheckResult:
        """A result whose status follows from ``value`` and ``limits`` = (warn_above, fail_above).

        ``failure``: a reason to fail whatever the value (appended to the message).
        ``warning``: a reason to warn at least whatever the value (appended to the message).
        """
        warn_above, fail_above = limits
        status = status_of(float(value), warn_above, fail_above)
        if warning:
            status, message = worst([status, "warn"]), f"{message}; {warning}"
        if failure:
            status, message = "fail", f"{message}; {failure}"
        return cls(id, group, structure, status, float(value), unit, warn_above, fail_above, message, details or {})

    def to_dict(self) -> dict:
        return {key: _jsonable(getattr(self, key)) for key in CHECK_KEYS}


@dataclasses.dataclass
class CheckReport:
    """All results of :func:`physnetjax.check.check_model`.

    Fields: ``checks`` (list of :class:`CheckResult`), ``structures`` (list of dicts),
    ``model`` (config dict), ``settings`` (dict), ``checkpoint`` (path or None).
    """

    checks: list
    structures: list
    model: dict
    settings: dict
    checkpoint: str | None = None

    @property
    def status(self) -> str:
        return worst(c.status for c in self.checks)

    @property
    def passed(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return self.status != "fail"

    def counts(self) -> dict:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    def by_id(self, check_id: str, structure: int = 0) -> CheckResult:
        """The result with this id for this structure (KeyError if absent)."""
        for c in self.checks:
            if c.id == check_id and c.structure == structure:
                return c
        raise KeyError(f"no check {check_id!r} for structure {structure}")

    def to_dict(self) -> dict:
        from physnetjax import __version__

        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "physnetjax_version": __version__,
            "status": self.status,
            "counts": self.counts(),
            "checkpoint": self.checkpoint,
            "model": _jsonable(self.model),
            "settings": _jsonable(self.settings),
            "structures": _jsonable(self.structures),
            "checks": [c.to_dict() for c in self.checks],
        }

    def write_json(self, path) -> None:
        replace_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def render(self, console: Any) -> None:
        """Print the pass/warn/fail table on a ``rich.console.Console`` (plain columns off a terminal)."""
        from rich.text import Text

        colour = {"pass": "green", "warn": "yellow", "fail": "bold red"}
        if self.checkpoint is not None:
            print_line(console, f"checkpoint: {self.checkpoint}")
        for s in self.structures:
            cell = ""
            if "cell" in s:
                lengths = " × ".join(f"{length:.4g}" for length in np.linalg.norm(s["cell"], axis=1))
                cell = f", periodic cell {lengths} Å, V = {s['volume_A3']:.4g} Å³"
            print_line(console, f"structure {s['index']}: {s['name']} ({s['formula']}, {s['num_atoms']} atoms, "
                                f"Q = {s['total_charge']:g} e{cell})")
            for name, reason in s.get("not_checked", {}).items():
                print_line(console, f"  not checked for a periodic cell: {name} ({reason})")
        rows = [[str(c.structure), c.id, Text(c.status.upper(), style=colour[c.status]), _fmt(c.value),
                 _fmt(c.warn_above), _fmt(c.fail_above), c.unit, c.message] for c in self.checks]
        print_table(console, "physnetjax model check (float64)",
                    ["s", "check", "status", "value", "warn >", "fail >", "unit", "summary"], rows,
                    justify=["right", "left", "left", "right", "right", "right", "left", "left"])
        counts = self.counts()
        print_line(console, Text(f"overall: {self.status.upper()}", style=colour[self.status])
                   + f" ({counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail)")


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "—"
    return "nan" if math.isnan(value) else f"{value:.3g}"
