"""The hour writer's background thread writes every table in order and never hides an error."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from currents_relay.lake import Lake
from currents_relay.lake.versions import HourWriter, live_files

HOUR = "2026-11-01T10"
OPEN = "users.messages.email.Open"


def test_tables_land_in_the_order_written_and_are_counted(tmp_path):
    writer = HourWriter(Lake(str(tmp_path)), HOUR)
    for start in range(0, 50, 5):  # more tables than the queue holds
        writer.write_events(OPEN, pa.table({"id": [str(i) for i in range(start, start + 5)]}))
    outputs = writer.close()
    writer.commit({"outputs": outputs}, None)
    assert writer.rows == {OPEN: 50}
    (path,) = live_files(Lake(str(tmp_path)), HOUR)
    assert pq.read_table(path)["id"].to_pylist() == [str(i) for i in range(50)]


def test_a_failed_write_is_raised_and_the_hour_is_not_committed(tmp_path):
    writer = HourWriter(Lake(str(tmp_path)), HOUR)
    writer.write_events(OPEN, pa.table({"id": ["a"]}))
    writer.write_events(OPEN, pa.table({"id": [1]}))  # not the file's schema: the thread fails
    with pytest.raises(ValueError, match="schema"):
        for _ in range(100):  # raised by a later call, or at the latest by close
            writer.write_events(OPEN, pa.table({"id": ["b"]}))
        writer.close()
    writer.abort()
    assert not list(tmp_path.glob("events/**/*.parquet"))
