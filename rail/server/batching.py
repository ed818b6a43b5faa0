"""Run gated requests off the event loop; for a local model, batch the ones that arrive together.

:class:`Batcher` collects the non-streamed requests that arrive within ``window_s`` of each other (and
those that queue up while the model is busy) and runs each group with identical gate, generation
parameters and audit tags as one :meth:`~rail.gate.GatedGenerator.generate_batch` call: one forward
pass for many prompts, each still screened, attributed and recorded on its own. :class:`Direct` runs
every request as its own call (remote engines batch on their side).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from rail.gate import GatedGenerator, GateResult

__all__ = ["Batcher", "Direct", "Dispatcher"]


class Dispatcher(Protocol):
    """Runs ``gate.generate_batch(prompts, tags=tags, **params)`` for the server, off the event loop."""

    async def generate(
        self, gate: GatedGenerator, prompts: Sequence[str], params: Mapping[str, Any], tags: Mapping[str, Any]
    ) -> list[GateResult]: ...

    async def close(self) -> None: ...


class Direct:
    """Every request is its own ``generate_batch`` call in ``executor``."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def generate(
        self, gate: GatedGenerator, prompts: Sequence[str], params: Mapping[str, Any], tags: Mapping[str, Any]
    ) -> list[GateResult]:
        call = partial(gate.generate_batch, list(prompts), tags=dict(tags), **dict(params))
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        return None


@dataclass
class _Job:
    gate: GatedGenerator
    prompts: list[str]
    params: dict[str, Any]
    tags: dict[str, Any]
    future: asyncio.Future[list[GateResult]]
    key: tuple[int, str] = field(init=False)

    def __post_init__(self) -> None:
        # Requests share a generate call only with identical gate, parameters and audit tags.
        self.key = (id(self.gate), json.dumps([self.params, self.tags], sort_keys=True, default=list))


class Batcher:
    """Group concurrent requests for one local model into shared ``generate_batch`` calls.

    ``window_s`` is how long the first request of a batch waits for others; ``max_prompts`` bounds a
    batch. Groups run one after another in ``executor`` (one model, one worker thread).
    ``on_batch(prompts)`` is told each call's size.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        window_s: float = 0.01,
        max_prompts: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._executor = executor
        self.window_s = window_s
        self.max_prompts = max_prompts
        self._on_batch = on_batch
        self._jobs: list[_Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def generate(
        self, gate: GatedGenerator, prompts: Sequence[str], params: Mapping[str, Any], tags: Mapping[str, Any]
    ) -> list[GateResult]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rail-batcher")
        future: asyncio.Future[list[GateResult]] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(gate, list(prompts), dict(params), dict(tags), future))
        self._wake.set()
        return await future

    def _take(self) -> list[_Job]:
        taken: list[_Job] = []
        count = 0
        while self._jobs and (not taken or count + len(self._jobs[0].prompts) <= self.max_prompts):
            job = self._jobs.pop(0)
            count += len(job.prompts)
            taken.append(job)
        if not self._jobs:
            self._wake.clear()
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if sum(len(j.prompts) for j in self._jobs) < self.max_prompts and self.window_s > 0:
                await asyncio.sleep(self.window_s)
            groups: dict[tuple[int, str], list[_Job]] = {}
            for job in self._take():
                if not job.future.done():  # a request that timed out while queued is not generated
                    groups.setdefault(job.key, []).append(job)
            for jobs in groups.values():
                first = jobs[0]
                prompts = [p for job in jobs for p in job.prompts]
                if self._on_batch is not None:
                    self._on_batch(len(prompts))
                call = partial(first.gate.generate_batch, prompts, tags=first.tags, **first.params)
                try:
                    results = await loop.run_in_executor(self._executor, call)
                except Exception as exc:
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                start = 0
                for job in jobs:
                    part = results[start : start + len(job.prompts)]
                    start += len(job.prompts)
                    if not job.future.done():
                        job.future.set_result(part)

    async def close(self) -> None:
        """Stop taking work (requests in flight have finished before the server closes)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
