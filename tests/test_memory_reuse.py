"""The push's malloc tuning: applied once where the C library is glibc, harmless elsewhere."""

from __future__ import annotations

import platform

import pytest

from currents_relay import memory_reuse


def test_glibc_keeps_freed_memory_once(monkeypatch):
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc: nothing to tune")
    monkeypatch.setattr(memory_reuse, "_done", False)
    assert memory_reuse.keep_freed_memory() is True
    monkeypatch.setattr(memory_reuse.ctypes, "CDLL", None)  # a second call does nothing
    assert memory_reuse.keep_freed_memory() is True


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(memory_reuse, "_done", False)
    monkeypatch.setattr(memory_reuse.sys, "platform", "darwin")
    assert memory_reuse.keep_freed_memory() is False
