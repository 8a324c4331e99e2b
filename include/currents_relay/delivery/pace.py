"""The sending rate of one push: a client-side limit shared by its senders, slowed by 429s.

`Pace` spaces request starts so that neither limit is passed: requests a second, and units
a second where a partner counts something else (mParticle: event batches, one per user).
A 429 pauses every sender of the push (for `Retry-After`, else the backoff the engine
chose) and halves the rate (where no limit was set: the rate reached over the last
`WINDOW` seconds, once it is measurable), at most once per second, so a burst of 429s from
requests already in flight counts once. After `RECOVERY` seconds without a 429 the rate
grows by a tenth again, up to the configured limit: a partner that throttled once is not
held down for the rest of the hour.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

RECOVERY = 10.0  # seconds without a 429 before the rate grows again
WINDOW = 2.0  # seconds of recent request starts that measure the rate reached
MEASURABLE = 8  # request starts in the window before the rate reached means anything


class Pace:
    def __init__(
        self,
        requests_per_second: float | None = None,
        units_per_second: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = requests_per_second
        self.unit_limit = units_per_second
        self.rate = requests_per_second  # requests a second now (None: no limit)
        self.unit_rate = units_per_second
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0  # the earliest start of the next request
        self._next_unit = 0.0
        self._paused_until = 0.0
        self._last_cut = -1e9  # the last halving
        self._last_step = -1e9  # the last halving or growth
        self._starts: deque[float] = deque()
        self.throttles = 0

    def wait(self, units: int = 1) -> None:
        """Block until a request of `units` may start within the limits."""
        with self._lock:
            now = self.clock()
            self._recover(now)
            start = max(now, self._paused_until, self._next, self._next_unit)
            if self.rate:
                self._next = start + 1.0 / self.rate
            if self.unit_rate:
                self._next_unit = start + units / self.unit_rate
            self._starts.append(start)
            while self._starts and self._starts[0] < start - WINDOW:
                self._starts.popleft()
        if start > now:
            self.sleep(start - now)

    def throttled(self, pause: float) -> None:
        """A 429: every sender waits `pause` seconds, and the rate is halved."""
        with self._lock:
            now = self.clock()
            self._paused_until = max(self._paused_until, now + pause)
            if now - self._last_cut < 1.0:
                return
            self._last_cut = self._last_step = now
            self.throttles += 1
            if self.rate is None and len(self._starts) < MEASURABLE:
                return  # too few requests to tell a rate: the pause alone
            self.rate = max(0.5, (self.rate or len(self._starts) / WINDOW) / 2)
            if self.unit_rate:
                self.unit_rate = self.unit_rate / 2

    def _recover(self, now: float) -> None:
        """A tenth more after each `RECOVERY` seconds without a 429, up to the limit."""
        if not self.throttles or now - self._last_step < RECOVERY:
            return
        self._last_step = now
        if self.rate and self.rate != self.limit:
            grown = self.rate * 1.1
            self.rate = min(grown, self.limit) if self.limit else grown
        if self.unit_rate and self.unit_limit and self.unit_rate < self.unit_limit:
            self.unit_rate = min(self.unit_rate * 1.1, self.unit_limit)
