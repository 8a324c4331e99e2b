"""Braze's Custom HTTP event shape, written for a whole chunk at once (fast path).

`normalize.to_http` builds one dict per row, leaving nulls out, and a JSON encoder writes it.
Here the same shape is a `json_template`: `{"event_type", "id", "time", "user": {...},
"properties": {...}}` with exactly the keys `to_http` writes, the stored JSON of custom or
purchase properties spliced in as it is. Fields the catalogue does not know (`extra`) go
where `to_http` puts them: rows that share a set of them are written from a template that
has them as members (a new Braze field keeps a whole event type on the fast path); rare
sets are added to their events one by one. Tests prove both give the same events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import polars as pl

from currents_relay.catalogue import USER_FIELDS, lookup
from currents_relay.delivery import json_template as jt
from currents_relay.delivery.batching import Encoded
from currents_relay.normalize import RESERVED, add_fields

# A set of unknown fields held by at least this many rows of a chunk is written from the
# template, with those fields as members; rarer ones are added to their events one by one.
GROUP_ROWS = 32
ADDED = "__extra_{}"  # the column of an unknown field's JSON text, for its template leaf


def http_json(frame: pl.DataFrame) -> Encoded | None:
    """Each row of one event type's chunk as its Custom HTTP event (JSON bytes), in order, or
    None (the row path)."""
    if frame.height == 0:
        return Encoded.of([])
    if "extra" in frame.columns and frame["extra"].null_count() < frame.height:
        return _with_extra(frame)
    if not _writable(frame):
        return None
    return jt.render(frame, _event(frame))


def _writable(frame: pl.DataFrame) -> bool:
    """Whether a chunk (without `extra`) can be written from the template."""
    if not jt.wire_chunk_ok(frame):
        return False
    spliced = lookup(frame["event_type"][0]).http_properties_key and "properties" in frame.columns
    return not spliced or jt.standard_json(frame["properties"])


def _event(frame: pl.DataFrame, added: Mapping[str, list[tuple[str, str]]] | None = None) -> jt.Obj:
    """The template of a chunk's events; `added`: per section ("" for the top level, "user",
    "properties"), (key, column of JSON text) members written after the section's own."""
    added = added or {}
    json_key = lookup(frame["event_type"][0]).http_properties_key
    head = ["event_type"] + [c for c in ("id", "time") if c in frame.columns]
    user = [c for c in frame.columns if c in USER_FIELDS and c not in RESERVED]
    raw = "properties" if json_key and "properties" in frame.columns else None
    properties: list[jt.Member | jt.Constant] = [
        jt.column(frame, c)
        for c in frame.columns
        if c not in RESERVED and c not in USER_FIELDS and c != raw
    ]
    if raw:  # stored JSON, spliced in as it is
        properties.append(jt.Member(json_key, jt.text(pl.col(raw))))

    def more(section: str) -> list[jt.Member]:
        return [jt.Member(key, jt.text(pl.col(name))) for key, name in added.get(section, ())]

    return jt.Obj(
        [
            *(jt.column(frame, c) for c in head),
            jt.Member("user", jt.Obj([*(jt.column(frame, c) for c in user), *more("user")])),
            jt.Member("properties", jt.Obj([*properties, *more("properties")])),
            *more(""),
        ]
    )


def _with_extra(frame: pl.DataFrame) -> Encoded | None:
    """`http_json` of a chunk with `extra`: its unknown fields put where `add_fields` puts
    them. The chunk is written from one template that has as members the fields of every
    set held by `GROUP_ROWS` rows or more (usually all rows: once Braze adds a field, each
    event of the type has it), each row writing those it has; rows with rarer sets are
    written without them, read back, given them and written again by orjson. None (the row
    path, which stays the definition) where orjson cannot write an event as `to_http` and
    orjson do (integers beyond 64 bits, lone surrogates)."""
    base = frame.drop("extra")
    if not _writable(base):
        return None
    fields = _unknown_fields(frame["extra"])
    if fields is None:
        return None
    event = _event(base)
    sections = {"": event} | {m.key: m.value for m in event.members if isinstance(m.value, jt.Obj)}
    taken = {section: {member.key for member in obj.members} for section, obj in sections.items()}
    groups: dict[tuple[str, ...], list[int]] = {}
    for row, values in enumerate(fields):
        groups.setdefault(tuple(values), []).append(row)
    paths: list[str] = []  # the template's unknown fields, in an order every set keeps
    by_template = np.zeros(frame.height, dtype=bool)
    for held, rows in groups.items():
        if held and len(rows) < GROUP_ROWS:
            continue
        wider = paths + [path for path in held if path not in paths]
        order = [wider.index(path) for path in held]
        if order != sorted(order) or _placed(wider, taken) is None:
            continue  # it would reorder the template's fields or replace a member
        paths = wider
        by_template[rows] = True
    placed = _placed(paths, taken) or {}
    try:  # every row's values (the rows added one by one are left out of this render)
        texts = [
            pl.Series(
                ADDED.format(i),
                [orjson.dumps(f[path]).decode() if path in f else None for f in fields],
                pl.String,
            )
            for i, path in enumerate(paths)
        ]
    except orjson.JSONEncodeError:
        return None
    whole = bool(by_template.all())
    chunk = base.with_columns(texts)
    written = jt.render(chunk if whole else chunk.filter(by_template), _event(base, placed))
    if whole:
        return written
    by_row = np.flatnonzero(~by_template)
    events = []
    try:
        for text, row in zip(jt.render(base[by_row], event), by_row, strict=True):
            one = orjson.loads(text)
            add_fields(one, fields[row])
            events.append(orjson.dumps(one))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    return Encoded.merge([written, Encoded.of(events)], ~by_template)


def _placed(
    paths: list[str], taken: Mapping[str, set[str]]
) -> dict[str, list[tuple[str, str]]] | None:
    """Where `add_fields` puts each unknown field: {section: [(key, column)]}; None where one
    would replace a member the template already writes (its place would then differ)."""
    placed: dict[str, list[tuple[str, str]]] = {}
    for i, path in enumerate(paths):
        section, _, name = path.partition(".")
        if section not in ("user", "properties") or not name:
            section, name = "", path
        if name in taken[section]:
            return None
        placed.setdefault(section, []).append((name, ADDED.format(i)))
    return placed


def _unknown_fields(extra: pl.Series) -> list[dict[str, Any]] | None:
    """Each row's unknown fields as `json.loads` reads them ({} for none), or None if one is
    not a JSON object. orjson reads most (~5x faster); not a number of 19 digits or more,
    which it would read as a float beyond 64 bits, nor what it refuses (NaN, lone surrogates)."""
    texts = extra.to_list()
    careful = extra.str.contains(r"\d{19}").fill_null(False)
    fields: list[Any] | None = None
    if extra.null_count() == 0 and not careful.any():  # the usual chunk: one call a row
        try:
            fields = list(map(orjson.loads, texts))
        except orjson.JSONDecodeError:
            fields = None
    if fields is None:
        fields = []
        for text, slow in zip(texts, careful.to_list(), strict=True):
            try:
                fields.append({} if text is None else _loads(text, slow))
            except ValueError:
                return None
    return fields if all(type(value) is dict for value in fields) else None


def _loads(text: str, careful: bool) -> Any:
    if not careful:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
