"""Model-server presets: a server's readiness protocol, as its documentation spells it out.

A deployment with ``preset:`` gives the server's base URL (``http://host:8080``) and, where
the protocol has one, the ``model``; the preset expands into the URL, method, check type
and conditions below. Conditions the deployment writes itself are added after the
preset's (all must hold).

- ``kserve_v1``: KServe "V1 Inference Protocol", *Model Ready*: ``GET /v1/models/{model}``
  answers ``{"name": "{model}", "ready": $bool}`` (KServe documentation, Model Serving
  Data Plane, V1 protocol). A model is required. Conditions: ``[STATUS] == 200`` and
  ``[BODY].ready == true``: a model still loading answers 200 with ``"ready": false``.
- ``kserve_v2``: the Open Inference Protocol (KServe "V2", the ``inference_rest.md``
  specification), *Server Ready* ``GET /v2/health/ready`` or, with a model, *Model
  Ready* ``GET /v2/models/{model}/ready``: "the HTTP status code indicates a boolean
  result ... 200 indicates true and a 4xx status code indicates false". Condition:
  ``[STATUS] == 200``.
- ``triton``: NVIDIA Triton implements the Open Inference Protocol over HTTP (Triton user
  guide, "HTTP/REST and GRPC Protocol"): the same two endpoints as ``kserve_v2``; with a
  ``grpc://`` (or ``grpcs://``) URL, the gRPC Health Checking Protocol Triton serves
  (``grpc.health.v1.Health/Check``, service ``""``: the server).
- ``torchserve``: TorchServe Inference API, *Health check API* (``docs/inference_api.md``):
  ``GET /ping`` answers ``{"status": "Healthy"}`` while the server is healthy. Conditions:
  ``[STATUS] == 200`` and ``[BODY].status == Healthy`` (TorchServe's capital H). The
  endpoint is server-wide, so a model is refused rather than silently ignored.

>>> expand("kserve_v2", "http://127.0.0.1:8080", "crackseg").url
'http://127.0.0.1:8080/v2/models/crackseg/ready'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["MODEL_PATTERN", "PRESETS", "Expansion", "PresetName", "expand"]

PresetName = Literal["kserve_v1", "kserve_v2", "triton", "torchserve"]
PRESETS: tuple[PresetName, ...] = ("kserve_v1", "kserve_v2", "triton", "torchserve")
#: A model name as the servers accept it in a URL path segment.
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_MODEL = re.compile(MODEL_PATTERN)


@dataclass(frozen=True, slots=True)
class Expansion:
    """What a preset becomes: the check's type, URL, method, conditions and gRPC service."""

    type: Literal["http", "grpc"]
    url: str
    method: str
    conditions: tuple[str, ...]
    service: str = ""


def expand(preset: str, url: str, model: str | None) -> Expansion:
    """Expand ``preset`` over the server's base ``url``; ValueError names what is wrong."""
    if preset not in PRESETS:
        raise ValueError(
            f"preset: unknown preset {preset!r}; expected one of: {', '.join(PRESETS)}"
        )
    if model is not None and not _MODEL.match(model):
        raise ValueError(f"model: must be 1-128 letters, digits or . _ - , got {model!r}")
    scheme = urlsplit(url).scheme
    if preset == "triton" and scheme in ("grpc", "grpcs"):
        if model is not None:
            raise ValueError(
                'model: triton over gRPC checks the server (grpc.health.v1, service ""); '
                "leave model out, or use an http:// URL for the model's readiness"
            )
        return Expansion("grpc", url, "GET", (), "")
    if scheme not in ("http", "https"):
        raise ValueError(f"preset: {preset} needs an http:// or https:// base URL, got {scheme!r}")
    if preset == "kserve_v1":
        if model is None:
            raise ValueError("model: preset kserve_v1 needs a model (GET /v1/models/{model})")
        return Expansion(
            "http",
            _join(url, f"/v1/models/{quote(model)}"),
            "GET",
            ("[STATUS] == 200", "[BODY].ready == true"),
        )
    if preset in ("kserve_v2", "triton"):
        path = f"/v2/models/{quote(model)}/ready" if model is not None else "/v2/health/ready"
        return Expansion("http", _join(url, path), "GET", ("[STATUS] == 200",))
    if model is not None:
        raise ValueError("model: preset torchserve checks the server (GET /ping); leave model out")
    return Expansion(
        "http", _join(url, "/ping"), "GET", ("[STATUS] == 200", "[BODY].status == Healthy")
    )


def _join(base: str, path: str) -> str:
    """``base`` (its path a prefix, such as a proxy's ``/serving``) followed by ``path``."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, ""))
