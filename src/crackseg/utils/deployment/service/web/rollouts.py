"""``/api/v1/rollouts``: rollouts run by the service, and their progress as server-sent events.

- ``POST /api/v1/rollouts`` ``{"version", "strategy"?, "options"?}`` starts one in the
  background: 202 with its id and ``Location``; 409 naming the rollout in progress when one
  runs (one per environment at a time); 400 naming every field at fault, a bad version,
  strategy or option, in one answer (``errors``: see :mod:`.problems`; ``options`` are
  ``deploy.rollout`` keys, e.g. ``bake_seconds``, checked as the file's are).
- ``GET /api/v1/rollouts`` lists the records, newest first (``limit``, ``artifact_id``);
  ``GET /api/v1/rollouts/{id}`` tells one: ``{"id", "run", "record", "steps", "weights",
  "looks"}`` (:mod:`.rollout_story`; ``run`` is null unless this process ran it).
- ``POST /api/v1/rollouts/{id}/abort``: 202 when it was running (it rolls back), 409 when
  it has ended.
- ``POST /api/v1/environments/{env}/rollback``: undo what ``env`` serves now; 202 with the
  rollback's id (its events stream like a rollout's).
- ``GET /api/v1/rollouts/{id}/events``: ``text/event-stream``; each event has an ``id``
  (resume with ``Last-Event-ID``, from a bounded buffer), an ``event`` (``started``,
  ``state``, ``step``, ``progress``, ``done``) and JSON ``data``; ``done`` is the last one.
  A comment every :data:`HEARTBEAT_S` keeps proxies from closing an idle stream; a client
  that does not keep up (its bounded queue fills, or one write takes longer than
  :data:`WRITE_TIMEOUT_S`) is dropped and may reconnect.
- ``GET /api/v1/deploys`` and ``/api/v1/deploys/{id}`` (the old name) answer 308 to
  ``/api/v1/rollouts`` and ``/api/v1/rollouts/{id}``: kept for one version, then removed.

Writes need the server's bearer token like every write. Without a ``deploy`` section the
rollout routes answer 404 but the list and one rollout's story, read from the stored records.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.service.rollout_events import Event
from crackseg.utils.deployment.service.supervisor import RolloutBusy, RolloutManager, Run
from crackseg.utils.deployment.service.web.api import (
    BODY_ERRORS,
    CTX,
    ApiError,
    json_body,
    json_response,
    location,
    validation_error,
)
from crackseg.utils.deployment.service.web.operations import Op, mount
from crackseg.utils.deployment.service.web.page_models import RolloutStory
from crackseg.utils.deployment.service.web.problems import problem_response
from crackseg.utils.deployment.service.web.rollout_story import public_step, rollout_view

__all__ = [
    "HEARTBEAT_S",
    "MAX_STREAM_S",
    "ROLLOUTS",
    "ROLLOUT_OPS",
    "WRITE_TIMEOUT_S",
    "NewRollout",
    "RolloutRun",
    "RolloutView",
    "add_rollout_routes",
]

#: Seconds between two heartbeat comments on an idle event stream.
HEARTBEAT_S = 15.0
#: Longest one write to an event-stream client may take before it is dropped.
WRITE_TIMEOUT_S = 10.0
#: Longest an event stream stays open (a client follows again with ``Last-Event-ID``).
MAX_STREAM_S = 3600.0

ROLLOUTS = web.AppKey("crackseg_rollouts", RolloutManager)


class NewRollout(BaseModel):
    """Body of ``POST /api/v1/rollouts``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    version: str | None = Field(None, min_length=1, max_length=128)
    strategy: str | None = Field(None, min_length=1, max_length=32)
    options: dict[str, Any] = Field(default_factory=dict, max_length=64)


class RolloutRun(BaseModel):
    """A rollout or rollback the service runs (or ran): what was asked and how it ended."""

    model_config = ConfigDict(extra="forbid")
    id: str
    kind: str = Field(description="deploy or rollback")
    deployment_id: str
    environment: str
    version: str | None
    strategy: str | None
    started: float
    running: bool
    outcome: dict[str, Any] | None = Field(description="success, rolled_back, error... once ended")
    last_event_id: int
    location: str | None = None
    events: str | None = Field(None, description="its event stream (text/event-stream)")
    aborting: bool | None = None


class RolloutView(RolloutStory):
    """One rollout's story, with its id and (when this process ran it) its run."""

    id: str
    run: RolloutRun | None


def _manager(request: web.Request) -> RolloutManager:
    manager = request.app.get(ROLLOUTS)
    if manager is None:
        raise ApiError(404, "rollouts are not enabled: the configuration has no deploy section")
    return manager


def _stored(ctx: Any, manager: RolloutManager | None) -> list[Any]:
    """Every rollout record: the manager's, else the orchestrator's, else the store's."""
    if manager is not None:
        return manager.records()
    if ctx.orchestrator is not None:
        return list(ctx.orchestrator.get_deployment_history())
    return list(ctx.monitor.store.deployment_records())


def _busy(exc: RolloutBusy) -> web.Response:
    # The running one is named in the detail and by Location.
    return problem_response(409, str(exc), headers={"Location": location("rollouts", exc.run.id)})


def _accepted(run: Run) -> web.Response:
    where = location("rollouts", run.id)
    body = {**run.to_dict(), "location": where, "events": f"{where}/events"}
    return json_response(body, 202, {"Location": where})


async def _start(request: web.Request) -> web.Response:
    manager = _manager(request)
    try:
        spec = NewRollout.model_validate(await json_body(request))
    except ValidationError as exc:
        raise validation_error(exc, NewRollout) from None
    version = spec.version or manager.deploy.version
    if version is None:
        raise ApiError(400, "give the version to deploy (deploy.version is not set)", "version")
    try:
        run = await asyncio.to_thread(manager.start, version, spec.strategy, spec.options)
    except RolloutBusy as exc:
        return _busy(exc)
    except ConfigError as exc:
        raise ApiError.listing(400, exc.problems) from None
    return _accepted(run)


async def _get(request: web.Request) -> web.Response:
    ctx, manager = request.app[CTX], request.app.get(ROLLOUTS)
    rid = request.match_info["id"]

    def read() -> dict[str, Any] | None:
        run = manager.get(rid) if manager is not None else None
        wanted = run.deployment_id if run is not None else rid
        if manager is not None:
            meta = manager.record(wanted)
        else:
            meta = next((m for m in _stored(ctx, None) if m.deployment_id == wanted), None)
        if meta is None:  # a run's record is saved as it starts: none means unknown
            return None
        return {"id": run.id if run is not None else rid,
                "run": run.to_dict() if run is not None else None, **rollout_view(meta)}  # fmt: skip

    view = await asyncio.to_thread(read)
    if view is None:
        raise ApiError(404, f"no rollout {rid!r}", "id")
    return json_response(view)


async def _abort(request: web.Request) -> web.Response:
    manager = _manager(request)
    rid = request.match_info["id"]
    run = manager.get(rid)
    if run is None:
        known = await asyncio.to_thread(manager.record, rid)
        if known is None:
            raise ApiError(404, f"no rollout {rid!r}", "id")
        raise ApiError(409, f"rollout {rid!r} is not running (state {known.state})", "id")
    if not await asyncio.to_thread(manager.abort, rid):
        raise ApiError(409, f"{run.describe()} is not running", "id")
    return json_response({**run.to_dict(), "aborting": True}, 202)


async def _rollback(request: web.Request) -> web.Response:
    manager = _manager(request)
    env = request.match_info["env"]
    try:
        run = await asyncio.to_thread(manager.rollback, env)
    except LookupError as exc:
        raise ApiError(404, str(exc), "env") from None
    except RolloutBusy as exc:
        return _busy(exc)
    except ConfigError as exc:
        raise ApiError(409, f"nothing to roll back: {exc.problem}", "env") from None
    return _accepted(run)


def _frame(event: Event) -> bytes:
    # A step note may carry anything: only the allow-listed keys leave, as on the page.
    shown = public_step(event.data) if event.kind == "step" else event.data
    data = orjson.dumps({**shown, "at": event.data.get("at", event.at)}, default=str)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.kind.encode(), data)


async def _events(request: web.Request) -> web.StreamResponse:
    manager = _manager(request)
    rid = request.match_info["id"]
    run = manager.get(rid)
    if run is None:
        raise ApiError(
            404,
            f"no rollout {rid!r} run by this process (see GET {location('rollouts', rid)})",
            "id",
        )
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "0"
    try:
        after = max(0, int(raw))
    except ValueError:
        raise ApiError(400, "must be the integer id of an event", "Last-Event-ID") from None
    loop = asyncio.get_running_loop()
    follower, backlog = run.events.follow(loop, after)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                 "X-Accel-Buffering": "no"},
    )  # fmt: skip
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await resp.prepare(request)
            # Ask EventSource clients to wait a second before reconnecting.
            await resp.write(b"retry: 1000\n\n")
            if backlog and backlog[0].seq > after + 1:
                await resp.write(b": some events were dropped from the buffer\n\n")
        for event in backlog:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await resp.write(_frame(event))
        if follower is None:
            return resp
        async with asyncio.timeout(MAX_STREAM_S):
            while not follower.dropped:
                try:
                    event = await asyncio.wait_for(follower.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    async with asyncio.timeout(WRITE_TIMEOUT_S):
                        await resp.write(b": heartbeat\n\n")
                    continue
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await resp.write(_frame(event))
                if event.kind == "done":
                    break
    except (TimeoutError, ConnectionError):
        pass  # a slow or gone client: it may reconnect with Last-Event-ID
    finally:
        if follower is not None:
            run.events.unfollow(follower)
    with contextlib.suppress(Exception):
        await resp.write_eof()
    return resp


async def _old_deploys(request: web.Request) -> web.Response:
    query = f"?{request.query_string}" if request.query_string else ""
    where = ("rollouts", request.match_info["id"]) if "id" in request.match_info else ("rollouts",)
    raise web.HTTPPermanentRedirect(location(*where) + query)


_ROLLOUT_ID = (("id", "the rollout's id, percent-encoded"),)

#: The rollout routes (paths below ``/api/v1``); the list is in :mod:`.api`.
ROLLOUT_OPS: tuple[Op, ...] = (
    Op("POST", "/rollouts", _start, "Start a rollout of the deploy section in the background",
       "rollouts", {202: RolloutRun}, body=NewRollout, errors=(*BODY_ERRORS, 409), write=True),
    Op("GET", "/rollouts/{id}", _get, "One rollout's story: its record, its steps "
       "(allow-listed, redacted), the new version's traffic share over time, the judge's "
       "evidence per look, and its run", "rollouts", {200: RolloutView}, path_params=_ROLLOUT_ID),
    Op("POST", "/rollouts/{id}/abort", _abort, "Abort a running rollout (it rolls back)",
       "rollouts", {202: RolloutRun}, errors=(409,), write=True, path_params=_ROLLOUT_ID),
    Op("GET", "/rollouts/{id}/events", _events, "A rollout's progress as server-sent events "
       "(started, state, step, progress, done); resume with Last-Event-ID", "rollouts",
       {200: None}, errors=(400,), media_type="text/event-stream", path_params=_ROLLOUT_ID),
    Op("POST", "/environments/{env}/rollback", _rollback, "Undo what the environment serves "
       "now (in the background)", "rollouts", {202: RolloutRun}, errors=(409,), write=True,
       path_params=(("env", "the environment"),)),
    Op("GET", "/deploys", _old_deploys, "Old name of GET /api/v1/rollouts: answers 308 there "
       "(kept for one version)", "rollouts", {308: None}),
    Op("GET", "/deploys/{id}", _old_deploys, "Old name of GET /api/v1/rollouts/{id}: answers "
       "308 there (kept for one version)", "rollouts", {308: None}, path_params=_ROLLOUT_ID),
)  # fmt: skip


def add_rollout_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount :data:`ROLLOUT_OPS` under ``api`` (the manager, if any, is ``app[ROLLOUTS]``)."""
    mount(router, api, ROLLOUT_OPS)
