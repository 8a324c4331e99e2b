"""A real S3 API on 127.0.0.1 for the object-store tests: moto's server, in a process of its
own, started and stopped by process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import boto3
import botocore.exceptions

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "currents-relay-test",
    "AWS_SECRET_ACCESS_KEY": "currents-relay-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return CREDENTIALS | {"AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> S3Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def bucket(self) -> str:
        name = f"lake-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def refuses_failed_conditions(self) -> bool:
        """Whether the server really refuses a conditional write that should fail: a second
        create of one key, and a replace over a tag that is not the object's."""
        s3, bucket = self.client(), self.bucket()
        s3.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
        for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"not-the-etag"'}):
            try:
                s3.put_object(Bucket=bucket, Key="k", Body=b"2", **condition)
            except botocore.exceptions.ClientError as refused:
                if refused.response["ResponseMetadata"]["HTTPStatusCode"] != 412:
                    return False
            else:
                return False
        return s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"
