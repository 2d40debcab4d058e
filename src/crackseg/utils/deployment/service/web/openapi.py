"""``/api/v1/openapi.json``, generated when the app is built: request bodies from the models.

Why generated at serve time rather than a generated file checked in: the pydantic models
(:class:`~...monitoring.spec.DeploymentSpec` and the API's other request bodies) are the one
source of the limits, so the description cannot lag behind them, and there is no file to
forget to regenerate. What the models do not describe (paths, parameters and the response
shapes, which are plain dicts) stays hand-written in ``openapi_base.json`` beside this module;
``tests/test_openapi.py`` holds both halves to the models and to the app's routes.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from crackseg.utils.deployment.monitoring.spec import DeploymentSpec
from crackseg.utils.deployment.service.web.api import NewSilence
from crackseg.utils.deployment.service.web.notifications import RetryRequest

__all__ = ["BASE_PATH", "REQUEST_MODELS", "openapi_bytes", "openapi_document", "request_schemas"]

BASE_PATH = Path(__file__).with_name("openapi_base.json")
#: The request bodies the API validates, each described under its class name.
REQUEST_MODELS: tuple[type[BaseModel], ...] = (DeploymentSpec, NewSilence, RetryRequest)
_REF = "#/components/schemas/{model}"


def request_schemas() -> dict[str, Any]:
    """JSON Schema of every request model (and the models they use), by component name."""
    _, top = models_json_schema([(m, "validation") for m in REQUEST_MODELS], ref_template=_REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(BASE_PATH.read_text(encoding="utf-8"))
    schemas = doc["components"]["schemas"]
    for name, schema in request_schemas().items():
        if name in schemas:
            raise RuntimeError(f"openapi_base.json describes {name} by hand; the model does")
        schemas[name] = schema
    return doc


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 description (a copy: callers may change it)."""
    return copy.deepcopy(_document())


@functools.lru_cache(maxsize=1)
def openapi_bytes() -> bytes:
    """The description as served."""
    return orjson.dumps(_document(), option=orjson.OPT_INDENT_2)
