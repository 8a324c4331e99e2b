"""The delivery engine: one destination, one hour, exactly-once in effect.

1. Select: the destination's event types; events without an identity field
   (`external_user_id` by default) are skipped as `anonymous`; apply the PII policy.
2. Remove what the ledger says the partner already acknowledged (and, unless replaying, what
   it refused for good), so no retry, re-run, late file or split ever re-sends an
   acknowledged event, whatever the batch boundaries become.
3. Batch in the lake's order (event types, files by name, rows as written: a re-run of the
   hour reproduces it), streamed a row group at a time and encoded a chunk at a time, cut at
   the partner's count and byte limits by `delivery.batching` (no per-event Python); batches
   run across event types, so they are full.
4. Send with Braze's retry contract (`delivery.partner`), `max_in_flight` requests at once
   (`delivery.senders`) under the partner's rate limit (`delivery.pace`): back off with
   jitter on 429/5xx/timeouts/resets, honouring `Retry-After` (a 429 slows every sender),
   for at most `budget_seconds` since a batch's first failure; split on 413; split to single
   events on 400 and dead-letter those still refused; stop on 401/403/404, on a redirect
   (the connection points at the wrong URL), on an untrusted certificate, and on a host
   name that does not resolve for `dns_seconds`.
5. Append every acknowledged batch to the ledger right after its 2xx (in any order: it is a
   set of ids), so a killed push resends at most the batches that were in flight.

The lake is read a few chunks ahead on a thread of its own; steps 1-3 run on the task's
thread; each batch's body, request and ledger records, and steps 4-5, on the sending
threads. Progress is logged every `PROGRESS_SECONDS`, and once at the end.

Counts reconcile: `considered == selected + sum(skipped)` and
`selected == delivered + dead_lettered + pending`.
"""

from __future__ import annotations

import fnmatch
import gzip
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import requests

from currents_relay.catalogue import LINEAGE_FIELDS
from currents_relay.delivery.batching import Batch, Chunk, Limits, batch_id, cut_batches
from currents_relay.delivery.http import (
    HttpSettings,
    failure_kind,
    new_session,
    untrusted_certificate,
)
from currents_relay.delivery.ledger import SENT_AS, Acknowledgement, Ledger
from currents_relay.delivery.pace import Pace
from currents_relay.delivery.partner import Outcome, Partner, Request
from currents_relay.delivery.pii import PiiPolicy
from currents_relay.delivery.wire import written
from currents_relay.lake import Lake
from currents_relay.lake.leases import Lease, LeaseLost
from currents_relay.lake.reports import ACCEPTED_NOTE
from currents_relay.lake.versions import Committed, read_committed, require_committed
from currents_relay.workers import Senders, read_ahead

log = logging.getLogger(__name__)
OFF_THE_WIRE = frozenset(("timestamp", *LINEAGE_FIELDS))
# Rows encoded at a time: each is a dict, then a JSON string, while its chunk is written, so
# the chunk bounds the push's memory (smaller chunks cost more CPU; `benchmarks/README.md`).
ENCODE_CHUNK_ROWS = 10_000
# Encoded bytes waiting for a sender: enough for every sender to find a batch ready while
# the task's thread encodes the next chunk, little enough to keep memory flat.
SEND_AHEAD_BYTES = 32 << 20
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True)
class Selection:
    """Which events a destination takes."""

    include: tuple[str, ...] | None = None  # event type globs; None: the partner's default
    exclude: tuple[str, ...] = ()
    # A row needs one of these fields, else it is skipped as `anonymous` (empty: send all).
    identities: tuple[str, ...] = ("external_user_id",)

    def accepts(self, event_type: str, default: tuple[str, ...] | None) -> bool:
        patterns = self.include if self.include is not None else default
        included = patterns is None or any(fnmatch.fnmatchcase(event_type, p) for p in patterns)
        return included and not any(fnmatch.fnmatchcase(event_type, p) for p in self.exclude)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Selection:
        include = options.get("include")
        identity = options.get("identity", "external_user_id")
        identities = (identity,) if isinstance(identity, str) else tuple(identity or ())
        return cls(
            include=tuple(include) if include is not None else None,
            exclude=tuple(options.get("exclude", ())),
            identities=tuple(i for i in identities if i),
        )


class Skipped(NamedTuple):
    """Rows of a lake file left out, and why (a key of the report's `skipped`)."""

    reason: str
    rows: int


@dataclass(frozen=True)
class RetryPolicy:
    # How long one batch may keep failing (since its first failure) before the push stops
    # with its events pending; the whole task is bounded by Airflow's `execution_timeout`.
    budget_seconds: float = 300.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    dns_seconds: float = 10.0  # a host name that does not resolve for this long: configuration


class DeliveryError(RuntimeError):
    """A push that could not finish; undelivered events stay pending for a re-run or replay."""


class DeliveryStopped(DeliveryError):
    """The partner refused our credentials or endpoint (401/403/404)."""


class DeliveryIncomplete(DeliveryError):
    """A batch's retry budget ran out with events still pending."""


class DeliveryInterrupted(DeliveryError):
    """The push lost its lease (another run of the hour and destination took over)."""


# Failures on the way after which a request may still have reached the partner: the batch's
# next attempt may deliver it twice (each such event is counted as `maybe_sent_twice`).
AMBIGUOUS_FAILURES = frozenset(("ReadTimeout", "ConnectionError"))


@dataclass
class DeliveryStats:
    requests: int = 0
    retries: int = 0
    splits: int = 0
    bytes_sent: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


class RedactSecrets(logging.Filter):
    """Rewrites log records that contain a secret (the push logs each request's URL at DEBUG)."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


# The loggers that may print a request's URL (requests and urllib3 log it at DEBUG).
REDACTED_LOGGERS = (
    __name__,
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.util.retry",
    "requests",
)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _routed(chunk: Chunk, routes: list[str]) -> list[Chunk]:
    """A chunk's events, one chunk per route (requests never mix routes: mParticle's feeds)."""
    if routes.count(chunk.route) == len(routes):
        return [chunk]
    indices: dict[str, list[int]] = {}
    for index, where in enumerate(routes):
        indices.setdefault(where, []).append(index)
    return [chunk.take(rows, where) for where, rows in indices.items()]


@dataclass(frozen=True)
class Outgoing:
    """A batch's id, its request (body: `size` bytes before any gzip) and what the ledger
    records once the partner acknowledges it."""

    id: str
    size: int
    request: Request
    acknowledgement: Acknowledgement


class _Retry(Exception):
    """A failure worth another attempt, after `wait` seconds (None: the backoff's)."""

    def __init__(self, kind: str, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.kind, self.wait = kind, wait


class Delivery:
    """Push one hour of the lake to one partner."""

    def __init__(
        self,
        lake_url: str,
        hour: str,
        partner: Partner,
        selection: Selection = Selection(),
        policy: RetryPolicy = RetryPolicy(),
        *,
        dry_run: bool = False,
        replay: bool = False,
        resend_acknowledged: bool = False,
        committed: Committed | None = None,
        lease: Lease | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.lake = Lake(lake_url)
        self.hour = hour
        # The committed version of the hour this run reads (a push reads one version whole).
        if committed is None and dry_run:  # a dry run of an hour never processed reads nothing
            committed = read_committed(self.lake, hour) or Committed({"outputs": {}}, "")
        self.committed = committed or require_committed(self.lake, hour)
        self.lease = lease
        self.resend_acknowledged = resend_acknowledged
        self.partner = partner
        self.selection = selection
        self.policy = policy
        self.http = HttpSettings.for_endpoint(
            partner.endpoint.url,
            partner.endpoint.extra,
            (policy.connect_timeout, policy.read_timeout),
        )
        self.concurrency = partner.concurrency()
        self.pace = Pace(self.concurrency.requests_per_second, self.concurrency.units_per_second)
        self._sessions = threading.local()  # each sending thread's own
        self._all_sessions: list[requests.Session] = []  # closed when the run ends
        self.dry_run = dry_run
        self.replay = replay
        self.sleep = sleep
        self.gzip = bool(partner.options.get("gzip"))
        self.pii = PiiPolicy.from_options(partner.options)
        self.ledger = Ledger(self.lake, partner.name, hour)
        self.stats = DeliveryStats()
        self.considered = 0
        self.skipped: Counter[str] = Counter()
        self.selected = 0
        self.delivered_before = 0  # acknowledged by earlier runs
        self.dead_before = 0  # refused for good by earlier runs (and not replayed now)
        self.delivered_now = 0
        self.dead_now = 0
        self.resent_now = 0  # acknowledged events sent again on purpose
        self.resent_before = 0  # ... by earlier runs (selected events)
        self.maybe_twice_now = 0  # acknowledged after an attempt that may have arrived
        self.maybe_twice_before = 0
        self.planned_batches = 0
        self._stopped = False
        self._counting = threading.Lock()
        self._recording = threading.Lock()  # dead-letter writes, one at a time
        self._progress_at = 0.0
        self._started = 0.0
        self._probe_taken = False
        self._probed = threading.Event()  # the first batch has been answered
        self.report: dict[str, Any] | None = None  # the counts, once the run has ended

    # -- selection -----------------------------------------------------------------------------
    def _chunks(self) -> Iterator[Chunk]:
        """Every event type's events to send, in the lake's order, counted and encoded a chunk
        at a time (read a few chunks ahead, on a thread of their own). Once delivery has
        stopped (`self._stopped`), chunks are only counted, so every pending event shows."""
        for event_type, read in read_ahead(self._reads(), name="read-lake"):
            if isinstance(read, Skipped):
                self.considered += read.rows
                self.skipped[read.reason] += read.rows
            else:
                self.considered += read.height
                yield from self._select_chunk(event_type, read)

    def _reads(self) -> Iterator[tuple[str, pl.DataFrame | Skipped]]:
        """The hour's lake files, in order: (event_type, a chunk of rows to send) for the types
        the destination takes, and what was left out of them, counted per file: `Skipped`
        (the rows of other types, from the footer: never read; rows without an identity).

        Files are read by polars' streaming engine in chunks (only the columns that can go on
        the wire), rows without an identity filtered out on its threads, so memory stays flat
        in hour size. The order is deterministic (a re-run of an hour writes the same files),
        so the same events form the same batches.
        """
        for event_type, files in self.committed.event_files().items():
            accepted = self.selection.accepts(event_type, self.partner.default_event_types)
            for relative in files:
                with self.lake.fs.open(self.lake.path(relative), "rb") as handle:
                    rows = pq.ParquetFile(handle).metadata.num_rows
                    if not accepted:
                        yield event_type, Skipped("event_type", rows)
                        continue
                    handle.seek(0)
                    lake_file = pl.scan_parquet(handle)
                    names = lake_file.collect_schema().names()
                    wire = lake_file.select([name for name in names if name not in OFF_THE_WIRE])
                    if self.selection.identities:
                        wire = wire.filter(self._has_identity(names))
                    kept = 0
                    for frame in wire.collect_batches(chunk_size=ENCODE_CHUNK_ROWS):
                        kept += frame.height
                        # One Arrow array per column (the streaming filter hands over a
                        # few per column), joined here rather than on the task's thread.
                        yield event_type, frame.rechunk()
                    if kept < rows:
                        yield event_type, Skipped("anonymous", rows - kept)

    def _has_identity(self, names: list[str]) -> pl.Expr:
        """Whether a row holds one of the selection's identity fields (not null, not "")."""
        present = [
            pl.col(name).cast(pl.String).fill_null("") != ""
            for name in self.selection.identities
            if name in names
        ]
        return pl.any_horizontal(present or [pl.lit(False)])

    def _select_chunk(self, event_type: str, frame: pl.DataFrame) -> Iterator[Chunk]:
        self.selected += frame.height
        recorded = self.ledger.recorded(event_type, frame["id"])
        acknowledged = recorded["acknowledged"]
        dead = recorded["dead"] & ~acknowledged
        self.delivered_before += int(acknowledged.sum())
        self.maybe_twice_before += int((recorded["after_timeout"] & acknowledged).sum())
        self.resent_before += int(recorded["resend"].sum())
        todo = ~acknowledged if not self.resend_acknowledged else np.ones(len(frame), bool)
        if not self.replay:
            self.dead_before += int(dead.sum())
            todo &= ~dead
        if self._stopped or not todo.any():
            return
        if not todo.all():
            frame = frame.filter(pl.Series(todo))
        # Columns that are null throughout would only be dropped again by the wire mapping.
        nulls = frame.null_count().row(0)
        frame = frame.select(
            [name for name, count in zip(frame.columns, nulls, strict=True) if count < frame.height]
        )
        events, routes = written(self.partner, frame, self.pii)
        ids = frame["id"].to_arrow().cast(pa.string())
        yield from _routed(Chunk.of(event_type, ids, events, routes[0]), routes)

    def _limits(self) -> Limits:
        partner = self.partner
        return Limits(
            max_events=partner.max_events,
            max_bytes=partner.max_bytes - partner.overhead,
            event_overhead=partner.event_overhead,
            max_event_bytes=partner.max_event_bytes,
        )

    def _batches(self, chunks: Iterable[Chunk]) -> Iterator[Batch]:
        """Requests within the partner's limits; events too large to send are dead-lettered."""
        limits = self._limits()
        too_large: list[Chunk] = []
        for batch in cut_batches(chunks, limits, too_large):
            self._dead_letter_too_large(too_large, limits)
            yield batch
        self._dead_letter_too_large(too_large, limits)

    def _dead_letter_too_large(self, found: list[Chunk], limits: Limits) -> None:
        for one in found:
            size = int(one.sizes()[0])
            self._dead_letter(Batch((one,)), 413, f"too_large: {size} bytes > {limits.event_limit}")
        found.clear()

    # -- sending -------------------------------------------------------------------------------
    def _dead_letter(self, batch: Batch, status: int, reason: str) -> None:
        if self.dry_run:
            return
        payloads = [(t, i, encoded.decode()) for t, i, encoded in batch.events()]
        with self._recording:
            self._guard()
            self.ledger.dead_letter(payloads, batch_id(batch.runs()), status, reason)
        with self._counting:
            self.dead_now += len(payloads)
        log.warning(
            "%s: dead-lettered %d event(s): HTTP %s %s",
            self.partner.name,
            len(payloads),
            status,
            reason[:200],
        )

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.policy.max_delay, self.policy.base_delay * 2**attempt))

    def _outgoing(self, batch: Batch) -> Outgoing:
        """A batch's request, and what the ledger records once it is acknowledged."""
        bid = batch_id(batch.runs())
        body = self.partner.batch_body(batch, bid)
        request = self.partner.request(body, bid, batch.route)
        if self.gzip:  # limits are checked on the uncompressed body, so they hold either way
            request = replace(
                request,
                body=gzip.compress(request.body, compresslevel=1),
                headers=request.headers | {"Content-Encoding": "gzip"},
            )
        return Outgoing(bid, len(body), request, Acknowledgement.of(batch.runs(), bid))

    def _session(self) -> requests.Session:
        """This sending thread's session (one kept connection)."""
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = new_session(self.http)
            with self._counting:
                self._all_sessions.append(session)
        return session

    def _post(self, request: Request) -> requests.Response:
        """One attempt: the answer, or `_Retry` for a failure on the way; a failure that
        configuration must fix raises `DeliveryStopped`."""
        log.debug("%s: POST %s", self.partner.name, request.url)  # redacted (RedactSecrets)
        name = self.partner.name
        with self._counting:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            return self._session().post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self.http.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            kind = failure_kind(error)
            message = self.partner.redact(str(error))
            if untrusted_certificate(error):
                with self._counting:
                    self.stats.statuses[kind] += 1
                raise DeliveryStopped(
                    f"{name}: the server's certificate is not trusted ({message[:300]}): set the "
                    f"connection currents_{name}'s extra `verify` to a CA bundle, or "
                    '`trust_store: "system"`; undelivered events stay pending'
                ) from None
            raise _Retry(kind, message) from None
        finally:
            with self._counting:
                self.stats.in_flight -= 1

    def _send_batch(self, batch: Batch) -> None:
        """`_send` on a sending thread: a stop there stops every sender. The push's first
        batch goes alone: wrong credentials or a wrong URL cost one request, not one per
        sender."""
        with self._counting:
            probe, self._probe_taken = not self._probe_taken, True
        if not probe:
            self._probed.wait()
        try:
            self._send(batch)
        except DeliveryError:
            self._stopped = True
            raise
        finally:
            if probe:
                self._probed.set()

    def _guard(self) -> None:
        """Stop unless this run still holds its lease: called before every request and
        every ledger append."""
        if self.lease is None:
            return
        try:
            self.lease.check()
        except LeaseLost as lost:
            raise DeliveryInterrupted(f"{self.partner.name}: {lost}; stopped sending") from None

    def _sent_as(self, outgoing: Outgoing, ambiguous: bool) -> str | np.ndarray:
        """The ledger's `sent_as` of a batch's records (see `Ledger.record`)."""
        if not self.resend_acknowledged:
            return "after_timeout" if ambiguous else "once"
        before = np.zeros(len(outgoing.acknowledgement.ids), dtype=bool)
        event_types = outgoing.acknowledgement.event_types
        indices = event_types.indices.to_numpy(zero_copy_only=False)
        ids = pl.Series(outgoing.acknowledgement.ids)
        for index, event_type in enumerate(event_types.dictionary.to_pylist()):
            rows = indices == index
            recorded = self.ledger.recorded(event_type, ids.filter(pl.Series(rows)))
            before[rows] = recorded["acknowledged"]
        chosen = np.where(before, SENT_AS.index("resend"), SENT_AS.index("once"))
        if ambiguous:
            chosen = np.where(before, chosen, SENT_AS.index("after_timeout"))
        return chosen

    def _send(self, batch: Batch) -> None:
        if self._stopped:
            return  # another sender stopped the push: this batch stays pending
        outgoing = self._outgoing(batch)
        name = self.partner.name
        bid, request = outgoing.id, outgoing.request
        attempt, first_failure, ambiguous = 0, 0.0, False
        while True:
            self.pace.wait(request.units)
            self._guard()
            try:
                response = self._post(request)
                status = response.status_code
                with self._counting:
                    self.stats.statuses[str(status)] += 1
                outcome = self._outcome(response)
            except _Retry as failure:
                now = time.monotonic()
                first_failure = first_failure or now
                ambiguous = ambiguous or failure.kind in AMBIGUOUS_FAILURES
                with self._counting:
                    if not failure.kind.isdigit():  # a failure on the way (answers: counted)
                        self.stats.statuses[failure.kind] += 1
                    self.stats.retries += 1
                wait = failure.wait if failure.wait is not None else self._backoff(attempt)
                self._check_budget(failure, now - first_failure, wait, bid)
                log.debug("%s: batch %s: %s; retrying in %.1f s", name, bid, failure, wait)
                if failure.kind == "429":
                    self.pace.throttled(wait)  # every sender waits, in `pace.wait`
                else:
                    self.sleep(wait)
                attempt += 1
                continue
            log.debug(
                "%s: batch %s (%d events, %d bytes) -> %s",
                name,
                bid,
                len(batch),
                outgoing.size,
                status,
            )
            if outcome is Outcome.DONE:
                sent_as = self._sent_as(outgoing, ambiguous)
                acknowledgement = "confirmed" if self.partner.confirms else "accepted"
                self._guard()
                self.ledger.record(outgoing.acknowledgement, status, acknowledgement, sent_as)
                resent = (
                    int((sent_as == SENT_AS.index("resend")).sum())
                    if isinstance(sent_as, np.ndarray)
                    else 0
                )
                with self._counting:
                    self.delivered_now += len(batch) - resent
                    self.resent_now += resent
                    if ambiguous:
                        self.maybe_twice_now += len(batch) - resent
                    self.stats.bytes_sent += outgoing.size
                self._progress()
                return
            text = self.partner.redact(response.content[:2000].decode("utf-8", "replace")[:500])
            if len(batch) == 1:
                self._dead_letter(batch, status, text or f"HTTP {status}")
                return
            with self._counting:
                self.stats.splits += 1
            for half in batch.halves():
                self._send(half)
            return

    def _outcome(self, response: requests.Response) -> Outcome:
        """The partner's classification of an answer; raises `_Retry` or `DeliveryStopped`."""
        status, name = response.status_code, self.partner.name
        if 300 <= status < 400:
            where = self.partner.redact(response.headers.get("Location", "(no Location)"))
            raise DeliveryStopped(
                f"{name}: HTTP {status} redirect to {where}: set the connection currents_{name} "
                "to the URL the partner points at (a redirected POST is never followed); "
                "undelivered events stay pending"
            )
        outcome = self.partner.classify(status)
        if outcome is Outcome.RETRY:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            kind = "429" if status == 429 else str(status)
            if status == 429 and wait is None:
                wait = self._backoff(2)
            raise _Retry(kind, f"HTTP {status}", wait)
        if outcome is Outcome.STOP:
            raise DeliveryStopped(
                f"{name}: HTTP {status} from the partner: check the connection currents_{name} "
                "(credentials, URL, source enabled); undelivered events stay pending"
            )
        return outcome

    def _check_budget(self, failure: _Retry, failing_for: float, wait: float, bid: str) -> None:
        """Stop the push where a batch has failed for too long (its events stay pending)."""
        name, budget = self.partner.name, self.policy.budget_seconds
        if failure.kind == "NameResolutionError" and failing_for + wait > self.policy.dns_seconds:
            raise DeliveryStopped(
                f"{name}: the host of currents_{name} does not resolve ({failure}): check the "
                "connection's URL and the worker's DNS; undelivered events stay pending"
            )
        if failure.wait is not None and failure.wait > budget:
            raise DeliveryIncomplete(
                f"{name}: the partner asked to wait {failure.wait:.0f} s (Retry-After), more than "
                f"budget_seconds ({budget:g} s); undelivered events stay pending for the next "
                "run or the replay DAG"
            )
        if failing_for + wait > budget:
            raise DeliveryIncomplete(
                f"{name}: retry budget used up: batch {bid} kept failing ({failure}) for "
                f"budget_seconds ({budget:g} s); undelivered events stay pending for the next run "
                "or the replay DAG"
            )

    def _progress(self, final: bool = False) -> None:
        """Log how far the push is, at most every `PROGRESS_SECONDS` (and once at the end)."""
        now = time.monotonic()
        with self._counting:
            if not final and now - self._progress_at < PROGRESS_SECONDS:
                return
            self._progress_at = now
            seconds = max(now - self._started, 1e-9)
            sent, selected = self.delivered_now, self.selected
            in_flight, retries = self.stats.in_flight, self.stats.retries
        pending = selected - self.delivered_before - self.dead_before - sent - self.dead_now
        log.info(
            "%s: %s %d of %d selected events sent (%.0f events/s), %d in flight, %d retries, "
            "%d pending",
            self.partner.name,
            "done:" if final else "",
            sent,
            selected,
            sent / seconds,
            in_flight,
            retries,
            pending,
        )

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Deliver the hour; returns the destination's counts (raises after recording them)."""
        self._started = self._progress_at = time.monotonic()
        guard = RedactSecrets(self.partner.redact)
        for name in REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(guard)
        try:
            return self._run(self._started)
        finally:
            self.ledger.close()
            for session in self._all_sessions:
                session.close()
            for name in REDACTED_LOGGERS:
                logging.getLogger(name).removeFilter(guard)

    def _run(self, started: float) -> dict[str, Any]:
        error: DeliveryError | None = None
        chunks = self._chunks()
        try:  # batches run across event types, so only the hour's last batch is partly filled
            with Senders(
                self._send_batch,
                self.concurrency.max_in_flight,
                SEND_AHEAD_BYTES,
                Batch.encoded_bytes,
                f"send-{self.partner.name}",
            ) as senders:
                for batch in self._batches(chunks):
                    self.planned_batches += 1
                    if not self.dry_run:
                        senders.put(batch)
        except DeliveryError as stop:
            error, self._stopped = stop, True
        for _ in chunks:
            pass  # after a stop, keep counting, so the report shows every pending event
        self.ledger.close()
        report = self.report = self.counts(time.monotonic() - started, error)
        if not self.dry_run:
            self.ledger.record_run(report)
            self._progress(final=True)
            if not self.partner.confirms and self.delivered_now:
                log.warning(
                    "%s: %d events %s", self.partner.name, self.delivered_now, ACCEPTED_NOTE
                )
        if error:
            raise error
        return report

    def counts(self, seconds: float = 0.0, error: Exception | None = None) -> dict[str, Any]:
        delivered = self.delivered_before + self.delivered_now
        dead = self.dead_before + self.dead_now
        confirms = self.partner.confirms
        return {
            "destination": self.partner.name,
            "hour": self.hour,
            "version": self.committed.version,
            "dry_run": self.dry_run,
            "replay": self.replay,
            "resend_acknowledged": self.resend_acknowledged,
            "considered": self.considered,
            "selected": self.selected,
            "skipped": dict(sorted(self.skipped.items())),
            "delivered": delivered,
            "dead_lettered": dead,
            "pending": self.selected - delivered - dead,
            "confirmed": delivered if confirms else 0,
            "accepted_only": 0 if confirms else delivered,
            "maybe_sent_twice": self.maybe_twice_before + self.maybe_twice_now,
            "resent": {"this_run": self.resent_now, "earlier_runs": self.resent_before},
            "note": None if confirms else ACCEPTED_NOTE,
            "requests": self.stats.requests,
            "retries": self.stats.retries,
            "splits": self.stats.splits,
            "batches": self.planned_batches,
            "max_in_flight": self.stats.max_in_flight,
            "throttled": self.pace.throttles,
            "bytes_sent": self.stats.bytes_sent,
            "statuses": dict(sorted(self.stats.statuses.items())),
            "acknowledgement": self.partner.acknowledgement,
            "adjusted": dict(sorted(self.partner.adjustments.items())),
            "seconds": round(seconds, 3),
            "error": str(error) if error else None,
        }
