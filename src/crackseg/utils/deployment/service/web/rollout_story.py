"""One rollout's story, as ``GET /api/v1/rollouts/{id}`` tells it (the page draws it).

:func:`rollout_view` answers ``{"record", "steps", "weights", "looks"}``:

- ``record``: the deployment record as ``/api/v1/rollouts`` lists it (URLs and reasons
  redacted, the free-form ``extra`` left out);
- ``steps``: the strategy's notes (``extra["steps"]``), each reduced to an allow-list of keys
  (``step``, ``at``, ``gate``, ``verdict``, ``reason``, ``source``, ``error``, ``backends``,
  ``weight``), texts redacted: a note may carry anything, only these reach the page;
- ``weights``: the share of traffic (percent of the weighted, non-backup backends) the new
  version had after each route change, from the route notes (``label@address=weight``);
- ``looks``: the judge's evidence as it accumulated, from notes that carry an ``evidence``
  (``Evidence.to_dict()``): per look the canary's and the stable's requests and errors, the
  p-value and, when the note has it, ``alpha``. Empty until the strategy records evidence.

The rollout's event stream sends its steps through :func:`public_step` too.
"""

from __future__ import annotations

from typing import Any

from crackseg.utils.deployment.service.web.api import _public_record, scrub_text

__all__ = ["MAX_STEPS", "public_step", "rollout_view", "weights_of"]

#: Notes shown of one rollout (a rolling update of many batches has many; the newest win).
MAX_STEPS = 500
_TEXT_KEYS = ("step", "gate", "verdict", "reason", "source", "error")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def weights_of(steps: list[dict[str, Any]], version: str | None) -> list[dict[str, Any]]:
    """``[{"at", "new_percent"}]`` from route notes: the new version's share of the weight."""
    out: list[dict[str, Any]] = []
    for s in steps:
        if s.get("step") != "route" or not isinstance(s.get("backends"), list):
            continue
        total = new = 0.0
        for b in s["backends"]:
            label, _, rest = str(b).partition("@")
            weight = rest.rpartition("=")[2]
            if not weight.replace(".", "", 1).isdigit():
                continue  # a backup: no share of the weighted traffic
            total += float(weight)
            if version is not None and label == version:
                new += float(weight)
        if total > 0 and _number(s.get("at")) is not None:
            out.append({"at": s["at"], "new_percent": round(100.0 * new / total, 2)})
    return out


def _arm(evidence: dict[str, Any], name: str) -> dict[str, float | None]:
    got = evidence.get(name)
    arm: dict[str, Any] = got if isinstance(got, dict) else {}
    return {"requests": _number(arm.get("requests")), "errors": _number(arm.get("errors"))}


def _look(step: dict[str, Any]) -> dict[str, Any] | None:
    ev = step.get("evidence")
    if not isinstance(ev, dict):
        return None
    return {
        "at": _number(step.get("at")),
        "gate": scrub_text(step.get("gate")) if isinstance(step.get("gate"), str) else None,
        "verdict": step.get("verdict") if isinstance(step.get("verdict"), str) else None,
        "canary": _arm(ev, "canary"),
        "stable": _arm(ev, "stable"),
        "p_value": _number(ev.get("p_value")),
        "alpha": _number(step.get("alpha", ev.get("alpha"))),
    }


def public_step(s: dict[str, Any]) -> dict[str, Any]:
    """One strategy note reduced to the allow-listed keys (see the module docstring)."""
    kept: dict[str, Any] = {"at": _number(s.get("at"))}
    for key in _TEXT_KEYS:
        if isinstance(s.get(key), str):
            kept[key] = scrub_text(s[key])
    if isinstance(s.get("backends"), list):
        kept["backends"] = [scrub_text(str(b)) for b in s["backends"][:64]]
    if _number(s.get("weight")) is not None:
        kept["weight"] = _number(s["weight"])
    return kept


def rollout_view(meta: Any) -> dict[str, Any]:
    """The story of one record (see the module docstring)."""
    extra = getattr(meta, "extra", None) or {}
    notes = extra.get("steps")
    raw: list[Any] = notes if isinstance(notes, list) else []
    steps: list[dict[str, Any]] = []
    for s in raw[-MAX_STEPS:]:
        if isinstance(s, dict):
            steps.append(public_step(s))
    looks = [look for s in raw[-MAX_STEPS:] if isinstance(s, dict) and (look := _look(s))]
    version = getattr(meta, "version", None)
    return {
        "record": _public_record(meta),
        "steps": steps,
        "weights": weights_of(steps, version),
        "looks": looks,
    }
