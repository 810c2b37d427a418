"""The page's live status: one poller for every open stream (Server-Sent Events), running only while someone
watches, so ten open tabs cost the trader one status request a second, not ten.

Each subscriber holds only the newest snapshot (a slow reader skips states, it never queues them up).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger("polymm.web")

INTERVAL_S = 1.0
MAX_STREAMS = 16
MAX_STREAMS_PER_CLIENT = 4


class TooManyStreams(Exception):
    pass


class Hub:
    def __init__(self, snapshot: Callable[[], Awaitable[list[tuple[str, dict]]]], interval_s: float = INTERVAL_S) -> None:
        """`snapshot()` returns the events to send now: [("status", {...}), ("pnl", {...})]."""
        self.snapshot = snapshot
        self.interval_s = interval_s
        self._subscribers: dict[asyncio.Queue, str] = {}
        self._task: asyncio.Task | None = None
        self._last: dict[str, dict] = {}

    def subscribe(self, client: str) -> asyncio.Queue:
        if len(self._subscribers) >= MAX_STREAMS:
            raise TooManyStreams(f"{MAX_STREAMS} status streams are open already; close a page and retry")
        if sum(1 for c in self._subscribers.values() if c == client) >= MAX_STREAMS_PER_CLIENT:
            raise TooManyStreams(f"{MAX_STREAMS_PER_CLIENT} status streams are open from {client} already")
        queue: asyncio.Queue = asyncio.Queue(maxsize=8)
        for name, data in self._last.items():  # a new page sees the state at once, not after the next change
            queue.put_nowait((name, data))
        self._subscribers[queue] = client
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.pop(queue, None)

    @property
    def streams(self) -> int:
        return len(self._subscribers)

    async def _run(self) -> None:
        while self._subscribers:
            try:
                events = await self.snapshot()
            except Exception:  # noqa: BLE001 - the stream must outlive one bad poll; the log has the traceback
                log.exception("status poll failed")
                events = []
            for name, data in events:
                if self._last.get(name) == data:
                    continue  # unchanged: nothing to send
                self._last[name] = data
                for queue in list(self._subscribers):
                    while queue.full():  # keep the newest: drop the oldest
                        queue.get_nowait()
                    queue.put_nowait((name, data))
            await asyncio.sleep(self.interval_s)
        self._last.clear()

    async def close(self) -> None:
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
