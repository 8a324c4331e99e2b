"""Leases in the lake: one `process` of an hour at a time, one push of an (hour, destination).

A lease is a small JSON object, `_leases/hour=<h>/<name>.json`, naming its holder and when it
expires. It is taken with a conditional create; an expired one is taken over with a
conditional replace of the version that was read (S3 `If-Match` on its ETag), so two runs
that both find it expired cannot both take it. The holder renews it on a thread of its own
every third of its time to live (a push sleeping through a long `Retry-After` keeps it) and
calls `check()` before each step that must not happen twice: a ledger append, a request, a
commit. `check()` raises `LeaseLost` once the holder cannot be sure it still holds the lease
(a renewal was refused, or none succeeded before the lease's own expiry).

Wall clocks of the machines that share a lake are compared: keep them in sync (NTP), and the
time to live well above their skew.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from currents_relay.environment import env_number
from currents_relay.lake.storage import Lake, json_bytes

log = logging.getLogger(__name__)


class LeaseHeld(Exception):
    """Another run holds the lease (after waiting as long as allowed)."""


class LeaseLost(Exception):
    """This run no longer holds its lease: it must stop before writing anything else."""


@dataclass(frozen=True)
class LeaseSettings:
    """How long a lease lives without renewal, and how long a run waits for one."""

    ttl: float = 120.0
    wait: float = 600.0

    @classmethod
    def from_env(cls) -> LeaseSettings:
        """`CURRENTS_RELAY_LEASE_SECONDS` (time to live), `CURRENTS_RELAY_LEASE_WAIT_SECONDS`."""
        return cls(
            ttl=env_number("CURRENTS_RELAY_LEASE_SECONDS", cls.ttl, minimum=1.0),
            wait=env_number("CURRENTS_RELAY_LEASE_WAIT_SECONDS", cls.wait),
        )


def lease_path(hour: str, name: str) -> str:
    return f"_leases/hour={hour}/{name}.json"


def holder_name(purpose: str) -> str:
    """Who takes a lease: what for, the Airflow run where there is one, host and process."""
    run = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    where = f"{socket.gethostname()} pid {os.getpid()}"
    return f"{purpose} ({run}) on {where}" if run else f"{purpose} on {where}"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def read_lease(lake: Lake, hour: str, name: str) -> dict[str, Any] | None:
    """The lease's current content, expired or not (None: nobody took it)."""
    stored = lake.objects.get(lake.path(lease_path(hour, name)))
    return json.loads(stored.data) if stored else None


def held_by(hour: str, name: str, held: dict[str, Any], waited: float) -> LeaseHeld:
    """The error for a lease another run still held after waiting `waited` seconds."""
    return LeaseHeld(
        f"hour {hour}: {name} is held by {held.get('holder')} since {held.get('acquired_at')} "
        f"(lease renewed {held.get('renewed_at')}, expires "
        f"{_iso(float(held.get('expires_at', 0)))}); waited {waited:g} s "
        "(CURRENTS_RELAY_LEASE_WAIT_SECONDS)"
    )


def is_live(lease: dict[str, Any] | None, now: float | None = None) -> bool:
    return lease is not None and float(lease["expires_at"]) > (now or time.time())


class Lease:
    """One run's hold on `_leases/hour=<hour>/<name>.json`; use it as a context manager."""

    POLL = 1.0  # seconds between attempts while another run holds it

    def __init__(
        self,
        lake: Lake,
        hour: str,
        name: str,
        purpose: str,
        settings: LeaseSettings | None = None,
    ) -> None:
        self.lake = lake
        self.hour = hour
        self.name = name
        self.path = lake.path(lease_path(hour, name))
        self.settings = settings or LeaseSettings.from_env()
        self.holder = holder_name(purpose)
        self.token = uuid.uuid4().hex
        self._tag: str | None = None
        self.took_over = False  # from a holder that never released it (killed, or frozen)
        self._acquired_at = 0.0
        self._expires_at = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self, now: float) -> bytes:
        return json_bytes(
            {
                "holder": self.holder,
                "token": self.token,
                "acquired_at": _iso(self._acquired_at or now),
                "renewed_at": _iso(now),
                "expires_at": now + self.settings.ttl,
            }
        )

    def _try(self) -> dict[str, Any] | None:
        """Take the lease if it is free or expired; else the live lease that holds it."""
        objects, now = self.lake.objects, time.time()
        current = objects.get(self.path)
        if current is None:
            tag = objects.create(self.path, self._body(now))
        else:
            held = json.loads(current.data)
            if is_live(held, now):
                return held
            log.warning(
                "taking over the expired lease %s of %s (expired %s)",
                self.name,
                held.get("holder"),
                _iso(float(held["expires_at"])),
            )
            tag = objects.replace(self.path, self._body(now), current.tag)
            self.took_over = tag is not None
        if tag is None:  # another run was quicker: look again
            return read_lease(self.lake, self.hour, self.name) or {"holder": "?"}
        self._tag, self._acquired_at, self._expires_at = tag, now, now + self.settings.ttl
        return None

    def acquire(self) -> Lease:
        deadline = time.monotonic() + self.settings.wait
        waited = False
        while (held := self._try()) is not None:
            if time.monotonic() >= deadline:
                raise held_by(self.hour, self.name, held, self.settings.wait)
            if not waited:
                log.info(
                    "hour %s: waiting for %s, held by %s since %s",
                    self.hour,
                    self.name,
                    held.get("holder"),
                    held.get("acquired_at"),
                )
                waited = True
            time.sleep(min(self.POLL, max(deadline - time.monotonic(), 0.01)))
        self._renewer = threading.Thread(
            target=self._renew_loop, name=f"lease-{self.name}", daemon=True
        )
        self._renewer.start()
        return self

    def _renew_loop(self) -> None:
        interval = self.settings.ttl / 3
        while not self._stop.wait(interval):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Extend the lease; False (and `check()` raises from then on) where it was lost."""
        if self._lost or self._tag is None:
            return False
        now = time.time()
        try:
            tag = self.lake.objects.replace(self.path, self._body(now), self._tag)
        except OSError as error:  # the store unreachable for now: try again next time
            log.warning("lease %s: renewal failed (%s); retrying", self.name, error)
            return True
        if tag is None:
            self._lost = "another run took it over"
            log.error("hour %s: lost the lease %s: %s", self.hour, self.name, self._lost)
            return False
        self._tag, self._expires_at = tag, now + self.settings.ttl
        return True

    def check(self) -> None:
        """Raise `LeaseLost` unless this run surely still holds the lease."""
        if self._lost is None and time.time() >= self._expires_at:
            self._lost = f"not renewed before it expired at {_iso(self._expires_at)}"
        if self._lost is not None:
            raise LeaseLost(f"hour {self.hour}: lease {self.name} lost: {self._lost}")

    def holds(self) -> bool:
        """Whether `check()` would pass."""
        try:
            self.check()
        except LeaseLost:
            return False
        return True

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self._tag is not None and not self._lost:
            try:
                self.lake.objects.delete(self.path, self._tag)
            except OSError as error:  # it expires on its own
                log.warning("lease %s: release failed (%s); it expires", self.name, error)
        self._tag = None

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def wait_until_free(lake: Lake, hour: str, name: str, settings: LeaseSettings) -> None:
    """Wait (bounded by `settings.wait`) until nobody holds `name` for `hour`."""
    deadline = time.monotonic() + settings.wait
    while is_live(held := read_lease(lake, hour, name)):
        assert held is not None
        if time.monotonic() >= deadline:
            raise held_by(hour, name, held, settings.wait)
        time.sleep(Lease.POLL)
