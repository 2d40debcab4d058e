"""The OpenAPI 3.1 description of the web face, generated from the routes' own declarations.

Every path, parameter, request body and answer comes from the :class:`~.operations.Op` of
its route and the pydantic models it names; only what code cannot say (title, description,
security scheme) is in ``openapi_base.json``. ``info.version`` is the package's version.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from crackseg.utils.deployment.service.metrics import package_version
from crackseg.utils.deployment.service.web.operations import Op
from crackseg.utils.deployment.service.web.problems import PROBLEM_CONTENT_TYPE, Problem

__all__ = ["BASE_PATH", "openapi_document", "request_models", "request_schemas"]

BASE_PATH = Path(__file__).with_name("openapi_base.json")
_REF = "#/components/schemas/{model}"
_ERRORS = {
    400: "Bad input: `field` names it",
    401: "Missing or wrong bearer token",
    404: "Not found",
    408: "Body not sent in time",
    409: "Conflict",
    413: "Body too large",
    415: "Not a JSON body",
    500: "Internal error",
    503: "Not ready",
}


def request_models(ops: Iterable[Op]) -> tuple[type[BaseModel], ...]:
    """The request body models of ``ops``, each once."""
    return tuple(dict.fromkeys(op.body for op in ops if op.body is not None))


def _defs(models: list[tuple[type[BaseModel], Any]]) -> dict[str, Any]:
    _, top = models_json_schema(models, ref_template=_REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def request_schemas(ops: Iterable[Op]) -> dict[str, Any]:
    """JSON Schema of every request model of ``ops`` (and the models they use), by name."""
    return _defs([(m, "validation") for m in request_models(ops)])


def _schemas(ops: list[Op]) -> dict[str, Any]:
    answers = {m for op in ops for m in op.answers.values() if m is not None} | {Problem}
    models: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in request_models(ops)]
    models += [(m, "serialization") for m in sorted(answers, key=lambda m: m.__name__)]
    return _defs(models)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _operation(op: Op, open_reads: bool) -> dict[str, Any]:
    o: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId": _op_id(op)}
    path_params = re.findall(r"{(\w+)}", op.path)
    said = dict(op.path_params)
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"},
               "description": said.get(n, "")} for n in path_params]  # fmt: skip
    params += [p.schema() for p in op.params]
    if params:
        o["parameters"] = params
    if op.body is not None:
        content = {"application/json": {"schema": _ref(op.body)}}
        o["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    for status, model in op.answers.items():
        answer: dict[str, Any] = {"description": model.__doc__.split("\n")[0] if model and
                                  model.__doc__ else "No body"}  # fmt: skip
        if model is not None:
            answer["content"] = {op.media_type: {"schema": _ref(model)}}
        elif status != 204:
            kind = "object" if op.media_type == "application/json" else "string"
            answer["content"] = {op.media_type: {"schema": {"type": kind}}}
        responses[str(status)] = answer
    errors = set(op.errors) | ({404} if path_params else set())
    if op.write or not open_reads:
        errors.add(401)
        o["security"] = [{"bearer": []}]
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    o["responses"] = responses
    return o


def _op_id(op: Op) -> str:
    words = re.sub(r"[{}]", "", op.path.strip("/")).replace("/", "_").replace("-", "_")
    return f"{op.method.lower()}_{words or 'index'}"


def openapi_document(ops: Iterable[Op], api: str = "/api/v1") -> dict[str, Any]:
    """The whole OpenAPI 3.1 description of the routes ``ops`` (``api``: where the API is)."""
    ops = list(ops)
    doc: dict[str, Any] = json.loads(BASE_PATH.read_text(encoding="utf-8"))
    doc["info"]["version"] = package_version()
    paths: dict[str, Any] = {}
    for op in ops:
        # API reads may be protected (protect_reads); the root's probes never are.
        open_reads = op.path.startswith("//")
        paths.setdefault(op.url(api), {})[op.method.lower()] = _operation(op, open_reads)
    doc["paths"] = paths
    components = doc.setdefault("components", {})
    components["schemas"] = _schemas(ops)
    problem = {PROBLEM_CONTENT_TYPE: {"schema": _ref(Problem)}}
    components["responses"] = {
        f"E{status}": {"description": text, "content": copy.deepcopy(problem)}
        for status, text in _ERRORS.items()
    }
    return doc
