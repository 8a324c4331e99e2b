"""Lake fixtures: every test of this folder runs on a local disk and on the local S3 server."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["local", "s3"])
def lake_url(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "lake")
    return request.getfixturevalue("s3_lake")
