"""A rollout's event log: numbered, resumable from a bounded buffer, slow followers dropped."""

from __future__ import annotations

import asyncio
import threading

from crackseg.utils.deployment.service.rollout_events import EventLog


async def test_a_follower_gets_the_backlog_then_live_events_from_other_threads() -> None:
    log = EventLog()
    log.publish("started", {"n": 1})
    log.publish("state", {"n": 2})
    follower, backlog = log.follow(asyncio.get_running_loop(), after=1)
    assert [e.seq for e in backlog] == [2] and follower is not None
    writer = threading.Thread(target=lambda: [log.publish("step", {"n": 3}),
                                              log.publish("done", {"n": 4})])  # fmt: skip
    writer.start()
    got = [await asyncio.wait_for(follower.queue.get(), 5) for _ in range(2)]
    writer.join(5)
    assert [(e.seq, e.kind) for e in got] == [(3, "step"), (4, "done")]
    # Once done, a late follower gets the whole story and nothing to wait on.
    late, story = log.follow(asyncio.get_running_loop(), after=0)
    assert late is None and [e.kind for e in story][-1] == "done" and len(story) == 4


async def test_a_slow_follower_is_dropped_and_the_buffer_is_bounded() -> None:
    log = EventLog(capacity=5)
    follower, _ = log.follow(asyncio.get_running_loop(), maxsize=3)
    assert follower is not None
    for i in range(10):
        log.publish("progress", {"i": i})
    await asyncio.sleep(0)  # the offers are delivered on the loop
    for _ in range(3):
        await asyncio.sleep(0)
    assert follower.dropped and follower.queue.qsize() == 3
    assert [e.seq for e in log.events()] == [6, 7, 8, 9, 10]  # only the last five kept
    assert [e.seq for e in log.events(after=8)] == [9, 10]
