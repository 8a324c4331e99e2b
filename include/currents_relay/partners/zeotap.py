"""Zeotap, through the API URL of its Braze Currents source.

Braze's Custom HTTP contract with `Authorization: Bearer <write key>` (a new key works after
about 30 minutes, so a 401 right after a key change is worth a later re-run, not a panic).
Limits are undocumented: Braze's Custom HTTP rules apply (100 events a request).

Docs: https://docs.zeotap.com/articles/#!integrate-customer/braze-currents
"""

from __future__ import annotations

from typing import ClassVar

from currents_relay.partners.custom_http import CustomHttp


class Zeotap(CustomHttp):
    name: ClassVar[str] = "zeotap"
    bearer_required: ClassVar[bool] = True
