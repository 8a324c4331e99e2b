"""Conditional writes: exactly one of competing writers wins, on a local disk and on S3."""

from __future__ import annotations

import threading

import pytest

from currents_relay.lake import Lake


def race(n: int, attempt) -> list:
    """Run `attempt(i)` on n threads released at once; their results."""
    start, results = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        start.wait()
        results[i] = attempt(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_conditions_refuse_what_they_must(lake_url):
    lake = Lake(lake_url)
    objects, path = lake.objects, lake.path("_leases/x.json")
    assert objects.get(path) is None
    first = objects.create(path, b"one")
    assert first and objects.create(path, b"two") is None
    assert objects.get(path).data == b"one"
    assert objects.replace(path, b"two", "not-the-tag") is None
    second = objects.replace(path, b"two", first)
    assert second and second != first and objects.get(path).data == b"two"
    assert objects.replace(path, b"three", first) is None  # the tag of a replaced version
    assert not objects.delete(path, first)
    assert objects.delete(path, second) and objects.get(path) is None
    assert objects.replace(path, b"x", second) is None  # nothing there


def test_one_of_many_creators_and_one_of_many_replacers_wins(lake_url):
    lake = Lake(lake_url)
    objects, path = lake.objects, lake.path("_leases/race.json")
    created = race(8, lambda i: objects.create(path, f"writer {i}".encode()))
    winners = [i for i, tag in enumerate(created) if tag]
    assert len(winners) == 1 and objects.get(path).data == f"writer {winners[0]}".encode()
    tag = objects.get(path).tag
    replaced = race(8, lambda i: objects.replace(path, f"taker {i}".encode(), tag))
    winners = [i for i, tag in enumerate(replaced) if tag]
    assert len(winners) == 1 and objects.get(path).data == f"taker {winners[0]}".encode()


def test_a_missing_bucket_is_an_error_not_a_refused_condition(s3_server):
    lake = Lake("s3://no-such-bucket-here/lake")
    with pytest.raises(OSError):
        lake.objects.create(lake.path("_leases/x.json"), b"one")
