"""How much the server takes: per-key requests and tokens per minute, and server-wide bounds.

- :class:`RateWindow` — one key's last minute of requests and tokens. A request reserves its
  ``max_tokens`` when admitted; when it is answered, the reservation becomes the tokens actually used
  (prompt plus completion). Over a limit: HTTP 429 with ``Retry-After`` (seconds until the window has room).
- :class:`Admission` — at most ``max_concurrent`` requests are worked on, ``max_queue`` more wait;
  beyond that HTTP 503 at once, so a burst never builds an unbounded backlog.
- :class:`ServerLimits` — body size, prompt length, prompts per request, the ``max_tokens`` cap and the
  request timeout.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rail.errors import ConfigError
from rail.server.auth import KeyLimits
from rail.server.protocol import ApiError

__all__ = ["Admission", "RateWindow", "Reservation", "ServerLimits"]

_WINDOW_S = 60.0


@dataclass(frozen=True)
class ServerLimits:
    """Bounds for every caller. ``max_tokens`` caps a request's ``max_tokens`` (and the model's context)."""

    max_body_bytes: int = 1024 * 1024
    max_prompt_chars: int = 32_000
    max_prompts: int = 16
    max_tokens: int = 512
    default_max_tokens: int = 16
    max_concurrent: int = 32
    max_queue: int = 64
    request_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_prompt_chars",
            "max_prompts",
            "max_tokens",
            "default_max_tokens",
            "max_concurrent",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1", path=f"--{name.replace('_', '-')}")
        if self.max_queue < 0:
            raise ConfigError("max_queue must be 0 or more", path="--max-queue")
        if not self.request_timeout_s > 0:
            raise ConfigError("the request timeout must be above 0 seconds", path="--request-timeout")


class Reservation:
    """One admitted request's entry in a key's window; :meth:`RateWindow.settle` replaces its tokens."""

    __slots__ = ("at", "tokens")

    def __init__(self, at: float, tokens: int) -> None:
        self.at = at
        self.tokens = tokens


class RateWindow:
    """A key's requests and tokens over the last minute (sliding window)."""

    def __init__(self, limits: KeyLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._events: deque[Reservation] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._events and now - self._events[0].at >= _WINDOW_S:
            self._events.popleft()

    def admit(self, tokens: int) -> Reservation:
        """Reserve one request of up to ``tokens`` tokens, or raise ApiError 429 (400 if it can never fit)."""
        rpm, tpm = self.limits.requests_per_minute, self.limits.tokens_per_minute
        if tpm is not None and tokens > tpm:
            raise ApiError(
                400,
                f"this request may use up to {tokens:,} tokens, more than this key's limit of "
                f"{tpm:,} tokens per minute; lower max_tokens",
                param="max_tokens",
                code="tokens_per_minute_exceeded",
            )
        with self._lock:
            now = self._clock()
            self._expire(now)
            wait = 0.0
            if rpm is not None and len(self._events) >= rpm:
                wait = self._events[len(self._events) - rpm].at + _WINDOW_S - now
                what = f"{rpm} requests per minute"
            elif tpm is not None and sum(e.tokens for e in self._events) + tokens > tpm:
                # Wait until enough of the oldest entries leave the window.
                used = sum(e.tokens for e in self._events)
                for event in self._events:
                    used -= event.tokens
                    if used + tokens <= tpm:
                        wait = event.at + _WINDOW_S - now
                        break
                what = f"{tpm:,} tokens per minute"
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                raise ApiError(
                    429,
                    f"rate limit reached for this API key ({what}); retry in {seconds} s",
                    type="requests",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(seconds)},
                )
            reservation = Reservation(now, tokens)
            self._events.append(reservation)
            return reservation

    def settle(self, reservation: Reservation, tokens: int) -> None:
        """Replace a reservation's tokens with the tokens the request actually used."""
        with self._lock:
            reservation.tokens = tokens


class Admission:
    """At most ``concurrent`` requests at work and ``queue`` waiting; more are refused with 503."""

    def __init__(self, concurrent: int, queue: int) -> None:
        self.concurrent = concurrent
        self.queue = queue
        self._slots = asyncio.Semaphore(concurrent)
        self.active = 0
        self.waiting = 0

    async def acquire(self) -> None:
        """Wait for a working slot; raise ApiError 503 at once when every slot and queue place is taken."""
        if self.active + self.waiting >= self.concurrent + self.queue:
            raise ApiError(
                503,
                f"the server is at capacity ({self.active} requests at work, {self.waiting} "
                "waiting); retry shortly",
                type="server_error",
                code="server_busy",
                headers={"Retry-After": "1"},
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        """Give back a slot taken with :meth:`acquire`."""
        self.active -= 1
        self._slots.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a working slot for the body of the ``async with``."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()
