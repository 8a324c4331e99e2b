"""Templates written by the compiled kernel are byte for byte what orjson writes per row."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
import pytest

from currents_relay.delivery import json_kernel as kernel
from currents_relay.delivery import json_template as jt

INT64 = (-(2**63), 2**63 - 1)
STRINGS = ["", "plain", "é ü 漢字 🎉", 'quote " here', "back\\slash", "tab\there", "\x00\x1f\x7f",
           "line\nbreak\r\n", "\u2028\u2029", "\x08\x0c", "a" * 300]  # fmt: skip


def expected_row(
    row: dict[str, Any], template: jt.Obj, sources: dict[int, str]
) -> dict[str, Any] | None:
    """What a dict-per-row encoder builds: missing values left out, empty optional objects too.
    `sources`: id of each member -> the column it writes."""
    out: dict[str, Any] = {}
    for member in template.members:
        if isinstance(member, jt.Constant):
            out[member.key] = member.value
        elif isinstance(member.value, jt.Obj):
            inner = expected_row(row, member.value, sources)
            if inner is not None:
                out[member.key] = inner
        elif row[sources[id(member)]] is not None:
            out[member.key] = row[sources[id(member)]]
    return None if template.optional and not out else out


def random_template(
    rng: random.Random, frame: pl.DataFrame, sources: dict[int, str], depth: int = 0
) -> jt.Obj:
    members: list[jt.Member | jt.Constant] = []
    for _ in range(rng.randint(0, 6)):
        choice = rng.random()
        if choice < 0.6:
            name = rng.choice(frame.columns)
            label = f"{rng.choice(STRINGS[:5])}{name}{len(members)}"  # keys unique in an object
            members.append(jt.Member(label, jt.value(frame[name])))
            sources[id(members[-1])] = name
        elif choice < 0.8 and depth < 3:
            inner = random_template(rng, frame, sources, depth + 1)
            members.append(jt.Member(f"o{len(members)}", inner))
        else:
            members.append(jt.Constant(f"c{len(members)}", rng.choice([None, 1, "x", {"a": [1]}])))
    return jt.Obj(members, optional=depth > 0 and rng.random() < 0.5)


def random_frame(rng: random.Random, rows: int) -> pl.DataFrame:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.3 else value

    columns = {
        "s": [maybe(rng.choice(STRINGS)) for _ in range(rows)],
        "plain": [maybe(f"id-{i}") for i in range(rows)],
        "i": [maybe(rng.choice([0, 1, -1, 42, -987654321, *INT64])) for _ in range(rows)],
        "b": [maybe(rng.random() < 0.5) for _ in range(rows)],
        "nested": [maybe({"k": rng.choice(STRINGS), "n": rng.randint(-5, 5)}) for _ in range(rows)],
        "list": [maybe([rng.randint(0, 9) for _ in range(rng.randint(0, 3))]) for _ in range(rows)],
        "none": [None] * rows,
    }
    frame = pl.DataFrame(columns, schema_overrides={"i": pl.Int64, "none": pl.String})
    return frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int32).alias("i32") - 5)


@pytest.mark.parametrize("seed", range(60))
def test_random_templates_write_what_orjson_writes(seed, monkeypatch):
    rng = random.Random(seed)
    # The rows cut into parts written on threads of their own, then moved together.
    monkeypatch.setattr(jt, "PART_ROWS", rng.choice([1, 5, jt.PART_ROWS]))
    monkeypatch.setattr(jt, "WRITERS", rng.choice([1, 2, 3, 4]))
    # Buffers sized for the strings the sample foresees, or for none: parts going on in more.
    monkeypatch.setattr(jt, "MARGIN", rng.choice([0.0, 0.5, jt.MARGIN]))
    frame = random_frame(rng, rng.choice([1, 2, 17, 300]))
    if rng.random() < 0.3:  # chunks as the engine gets them: slices of what polars read...
        frame = frame.slice(rng.randrange(frame.height), frame.height)
    elif rng.random() < 0.4:  # ...and frames of several Arrow chunks each
        frame = pl.concat([frame, frame.slice(frame.height // 2)], rechunk=False)
    sources: dict[int, str] = {}
    template = random_template(rng, frame, sources)
    encoded = jt.render(frame, template)
    expected = [orjson.dumps(expected_row(row, template, sources)) for row in frame.to_dicts()]
    assert list(encoded) == expected
    assert bytes(encoded.joined()) == b",".join(expected)


def test_every_ascii_byte_and_more_is_escaped_as_orjson_does():
    values = [chr(i) for i in range(128)] + ["\u2028", "é", "🎉", '\x00x\x1fy"z\\']
    frame = pl.DataFrame({"v": values})
    encoded = jt.render(frame, jt.Obj([jt.column(frame, "v")]))
    assert list(encoded) == [orjson.dumps({"v": v}) for v in values]


def test_integers_at_the_edges_of_int64():
    values = [*INT64, 0, -1, 10, -10, 99, -100, 10**18, -(10**18)]
    frame = pl.DataFrame({"n": values}, schema={"n": pl.Int64})
    assert list(jt.render(frame, jt.Obj([jt.column(frame, "n")]))) == [
        orjson.dumps({"n": n}) for n in values
    ]


def test_floats_are_json_that_reads_back_as_the_same_numbers():
    values = [0.0, -1.5, 1e-7, 1e22, 123456.789, None]
    frame = pl.DataFrame({"x": values})
    encoded = jt.render(frame, jt.Obj([jt.column(frame, "x")]))
    assert [json.loads(event) for event in encoded] == [
        {"x": x} if x is not None else {} for x in values
    ]


def test_an_optional_object_with_nothing_present_leaves_out_its_key():
    frame = pl.DataFrame(
        {"a": ["x", None], "b": [None, None]}, schema={"a": pl.String, "b": pl.Int64}
    )
    template = jt.Obj(
        [
            jt.Member("kept", jt.Obj([jt.column(frame, "b")])),
            jt.Member("opt", jt.Obj([jt.column(frame, "a"), jt.column(frame, "b")], optional=True)),
            jt.Constant("z", 1),
        ]
    )
    assert list(jt.render(frame, template)) == [
        b'{"kept":{},"opt":{"a":"x"},"z":1}',
        b'{"kept":{},"z":1}',
    ]


def test_where_leaves_a_value_out_where_the_condition_fails():
    frame = pl.DataFrame({"a": ["x", "", None]})
    template = jt.Obj([jt.Member("a", jt.value(frame["a"]).where(jt.truthy(frame["a"])))])
    assert list(jt.render(frame, template)) == [b'{"a":"x"}', b"{}", b"{}"]


def test_no_rows_no_events():
    frame = pl.DataFrame({"a": []}, schema={"a": pl.String})
    assert len(jt.render(frame, jt.Obj([jt.column(frame, "a")]))) == 0


def test_a_leaf_of_a_layout_the_kernel_does_not_read_is_refused():
    frame = pl.DataFrame({"a": ["x"]})
    binary = jt.Obj([jt.Member("a", jt.Leaf(pl.col("a").cast(pl.Binary), kernel.STRING))])
    with pytest.raises(TypeError, match="the kernel reads string_view"):
        jt.render(frame, binary)


def test_a_template_deeper_than_the_kernel_keeps_is_refused():
    frame = pl.DataFrame({"a": ["x"]})
    template = jt.Obj([jt.column(frame, "a")])
    for _ in range(kernel.MAX_DEPTH - 1):
        template = jt.Obj([jt.Member("in", template)])
    assert jt.render(frame, template)[0].count(b"{") == kernel.MAX_DEPTH
    with pytest.raises(ValueError, match="deeper than"):
        jt.render(frame, jt.Obj([jt.Member("in", template)]))


def test_escapes_are_found_in_every_byte_of_a_word():
    """Strings are checked 8 bytes at a time: a byte to escape at any position of long values
    (and the UTF-8 bytes around it) is still written as orjson writes it."""
    specials = [chr(i) for i in range(32)] + ['"', "\\"]
    values = [
        "é" * 3 + "a" * position + special + "b" * (17 - position)
        for special in specials
        for position in range(9)
    ]
    values += ["ü€𝄞" * 6, "\x7f" * 20, "a" * 23 + "\x1f"]
    frame = pl.DataFrame({"v": values})
    assert list(jt.render(frame, jt.Obj([jt.column(frame, "v")]))) == [
        orjson.dumps({"v": v}) for v in values
    ]


def test_escapes_are_found_at_every_position_of_every_short_length():
    """Under 8 bytes a string is checked as one masked word of its view; longer ones end with
    a word overlapping the one before: a byte to escape is found wherever it sits."""
    values = [
        "a" * position + special + "z" * (length - position - 1)
        for special in ("\x00", "\x1f", '"', "\\", "\n")
        for length in range(1, 25)
        for position in range(length)
    ]
    values += ["x" * length for length in range(25)]
    frame = pl.DataFrame({"v": values})
    assert list(jt.render(frame, jt.Obj([jt.column(frame, "v")]))) == [
        orjson.dumps({"v": v}) for v in values
    ]


def test_a_byte_to_escape_is_found_in_a_column_that_holds_only_it():
    """Leaves whose data buffers hold no byte to escape skip the check of their long strings
    (it is done in bulk): one value to escape in a column of clean ones, wherever it sits
    (in the view of a short string, in a data buffer of a long one), is still escaped."""
    clean = ["a" * length for length in range(30)] * 3
    for special in ("\x00", "\x1f", '"', "\\"):
        for length in range(1, 30):
            for position in (0, length // 2, length - 1):
                value = "b" * position + special + "c" * (length - position - 1)
                values = [*clean[:40], value, *clean[40:]]
                frame = pl.DataFrame({"v": values})
                written = jt.render(frame, jt.Obj([jt.column(frame, "v")]))
                assert written[40] == orjson.dumps({"v": value})
                assert list(written) == [orjson.dumps({"v": v}) for v in values]


def test_only_leaves_whose_long_strings_are_clean_skip_their_check():
    frame = pl.DataFrame({"clean": ["x" * 20, "short"], "quoted": ["x" * 20, 'a "b"' * 5]})
    leaves = [jt.string(pl.col("clean")), jt.string(pl.col("quoted"))]
    table = jt._Leaves(leaves, frame.get_columns()).table
    assert table[:, kernel.KIND].tolist() == [kernel.LONG_PLAIN, kernel.STRING]


@pytest.mark.parametrize("writers", [1, 2])
def test_rows_beyond_a_stretch_go_on_in_buffers_of_their_own(monkeypatch, writers):
    """A stretch is sized from a sample of its rows' strings: where the rest hold more (here
    rows whose every byte is escaped, most as \\u00XX, after 200 plain ones), the kernel
    stops before the row that would not fit and the part goes on in another buffer."""
    calls: list[tuple[int, int]] = []  # (rows asked, rows written)
    real = kernel.write_rows

    def counting(*args):
        written = real(*args)
        calls.append((len(args[-1]) - 1, written))
        return written

    monkeypatch.setattr(kernel, "write_rows", counting)
    monkeypatch.setattr(jt, "WRITERS", writers)
    monkeypatch.setattr(jt, "PART_ROWS", 50)
    values = ["plain"] * 200 + ["\x01\x02" * 40 + '"' * 20, None] * 100
    frame = pl.DataFrame({"v": values, "n": list(range(400))})
    encoded = jt.render(frame, jt.Obj([jt.column(frame, "v"), jt.column(frame, "n")]))
    expected = [orjson.dumps({k: v for k, v in row.items() if v is not None}) for row in
                frame.to_dicts()]  # fmt: skip
    assert list(encoded) == expected and bytes(encoded.joined()) == b",".join(expected)
    assert len(calls) > writers  # a part went on in another buffer...
    assert sum(written for _, written in calls) == len(values)  # ...each row written once


def test_a_part_too_small_for_even_its_first_row_grows_until_it_fits(monkeypatch):
    monkeypatch.setattr(jt, "MARGIN", 0.0)  # stretches for no strings at all
    values = ["\x00" * 5_000, "x" * 20_000, "short"]
    frame = pl.DataFrame({"v": values})
    encoded = jt.render(frame, jt.Obj([jt.column(frame, "v")]))
    assert list(encoded) == [orjson.dumps({"v": v}) for v in values]


def test_iso_seconds_are_written_as_datetime_writes_them():
    """UNIX seconds as `datetime.isoformat` writes them in UTC (with `Z`), across the whole
    range the kernel writes: negative epochs, leap days, centuries, years 1 and 9999."""
    low, high = kernel.ISO_RANGE
    rng = random.Random(7)
    edges = [low, low + 86_399, -1, 0, 1, 951_782_400, 4_107_542_400, -2_203_891_200, high]
    seconds = edges + [rng.randint(low, high) for _ in range(3_000)] + [None]
    frame = pl.DataFrame({"t": seconds}, schema={"t": pl.Int64})
    written = jt.render(frame, jt.Obj([jt.Member("t", jt.iso_seconds(pl.col("t")))]))
    expected = [
        orjson.dumps({"t": datetime.fromtimestamp(s, UTC).isoformat().replace("+00:00", "Z")})
        if s is not None
        else b"{}"
        for s in seconds
    ]
    assert list(written) == expected
    assert jt.in_iso_range(frame["t"]) and not jt.in_iso_range(pl.Series([high + 1]))
