"""Fixtures for the data tests: a real S3 API (moto's standalone server on loopback)
and Heddle homes whose blobs live on the local store or on that S3."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

import heddle

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


_moto: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Start moto and export the AWS_* variables before any test runs.

    The process executor's workers fork from a server process that keeps the
    environment it started with, so the variables must be set before the first run.
    """
    try:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
    except Exception as exc:  # moto missing, or no loopback port: S3 tests skip
        _moto["error"] = f"moto's S3 server could not start: {exc}"
        return
    _moto["server"] = server
    _moto["endpoint"] = f"http://{host}:{port}"
    _moto["saved"] = {k: os.environ.get(k) for k in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(S3_ENV)
    os.environ["AWS_ENDPOINT_URL"] = _moto["endpoint"]


def pytest_unconfigure(config: pytest.Config) -> None:
    server = _moto.pop("server", None)
    if server is None:
        return
    server.stop()
    for name, value in _moto.pop("saved").items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """The URL of the moto S3 server for this test session (skips if it did not start)."""
    if "endpoint" not in _moto:
        pytest.skip(_moto.get("error", "moto's S3 server is not running"))
    return str(_moto["endpoint"])


@pytest.fixture
def s3_url(moto_endpoint: str) -> str:
    """``s3://bucket/prefix`` on a fresh bucket, with the AWS_* variables pointing at moto."""
    import boto3

    bucket = "heddle-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/runs"


@pytest.fixture
def s3_home(s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """heddle.init with the store on SQLite and the blobs on moto S3, chosen the way a
    user chooses it: HEDDLE_STORAGE_URL (inline executor)."""
    monkeypatch.setenv("HEDDLE_STORAGE_URL", s3_url)
    heddle.init(tmp_path / "heddle-home", executor="inline")
    return s3_url


@pytest.fixture(params=["local", "s3"])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test with blobs on the local folder and on moto S3 (inline executor,
    for speed; test_data_e2e runs a pipeline across worker processes too)."""
    if request.param == "local":
        heddle.init(tmp_path / "heddle-home", executor="inline")
        return "local"
    return str(request.getfixturevalue("s3_home"))
