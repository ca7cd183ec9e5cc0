"""Fixtures for the S3 gateway suite: clients for the keys the Rust harness configured.

The harness (tests/s3.rs) starts a devnet and `blackbox gateway`, then runs pytest with
BB_S3_ENDPOINT and the keys in the environment."""
import os
import uuid

import boto3
import pytest
from botocore.config import Config


def client(key, secret):
    return boto3.client(
        "s3",
        endpoint_url=os.environ["BB_S3_ENDPOINT"],
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="session")
def s3():
    return client(os.environ["BB_S3_KEY"], os.environ["BB_S3_SECRET"])


@pytest.fixture(scope="session")
def reader():
    """A key that may only read the bucket named in BB_S3_READ_BUCKET."""
    return client(os.environ["BB_S3_READER_KEY"], os.environ["BB_S3_READER_SECRET"])


@pytest.fixture
def bucket(s3):
    name = "t-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    return name


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]
