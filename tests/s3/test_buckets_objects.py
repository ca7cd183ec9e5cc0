"""Buckets and single-part objects through boto3, with the error codes clients check."""
import datetime
import hashlib
import os

import botocore
import pytest

from conftest import client, code, status


def test_bucket_lifecycle(s3):
    s3.create_bucket(Bucket="life-cycle")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "life-cycle" in names
    s3.head_bucket(Bucket="life-cycle")
    assert s3.get_bucket_location(Bucket="life-cycle").get("LocationConstraint") in (None, "")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket="life-cycle")
    assert code(e) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket="life-cycle", Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_bucket(Bucket="life-cycle")
    assert code(e) == "BucketNotEmpty"
    s3.delete_object(Bucket="life-cycle", Key="k")
    s3.delete_bucket(Bucket="life-cycle")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_bucket(Bucket="life-cycle")
    assert status(e) == 404
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_objects_v2(Bucket="life-cycle")
    assert code(e) == "NoSuchBucket"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket="Bad_Name")
    assert code(e) == "InvalidBucketName"


def test_objects_round_trip_with_headers_and_metadata(s3, bucket):
    for size in (0, 5, 1024, 1025, 3 << 20):
        body = os.urandom(size)
        put = s3.put_object(
            Bucket=bucket, Key=f"obj-{size}", Body=body, ContentType="application/x-blackbox",
            ContentEncoding="identity", CacheControl="max-age=60", Metadata={"Owner": "ann", "n": str(size)},
        )
        assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
        got = s3.get_object(Bucket=bucket, Key=f"obj-{size}")
        assert got["Body"].read() == body
        assert got["ETag"] == put["ETag"]
        assert got["ContentType"] == "application/x-blackbox"
        assert got["ContentEncoding"] == "identity"
        assert got["CacheControl"] == "max-age=60"
        assert got["Metadata"] == {"owner": "ann", "n": str(size)}
        head = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
        assert head["ContentLength"] == size and head["ETag"] == put["ETag"]
    s3.delete_object(Bucket=bucket, Key="obj-5")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="obj-5")
    assert code(e) == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="never-there")  # S3 deletes are idempotent


@pytest.mark.parametrize("key", ["with space", "plus+sign", "ünïcødé/日本", "double//slash", "/leading", "k" * 1024])
def test_awkward_keys(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert key in keys


def test_ranges_and_preconditions(s3, bucket):
    body = os.urandom(100_000)
    etag = s3.put_object(Bucket=bucket, Key="r", Body=body)["ETag"]
    for rng, want in (("bytes=0-9", body[:10]), ("bytes=99990-", body[99990:]), ("bytes=-5", body[-5:]),
                      ("bytes=50000-50000", body[50000:50001]), ("bytes=99999-200000", body[99999:])):
        got = s3.get_object(Bucket=bucket, Key="r", Range=rng)
        assert got["Body"].read() == want, rng
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"].endswith("/100000")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=200000-")
    assert code(e) == "InvalidRange" and status(e) == 416
    assert s3.get_object(Bucket=bucket, Key="r", IfMatch=etag)["Body"].read() == body
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", IfMatch='"0123"')
    assert code(e) == "PreconditionFailed" and status(e) == 412
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", IfNoneMatch=etag)
    assert status(e) == 304
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=future)
    assert status(e) == 304
    assert s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=past)["ContentLength"] == 100_000
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", IfUnmodifiedSince=past)
    assert code(e) == "PreconditionFailed"


def test_listing_v2_v1(s3, bucket):
    keys = sorted(["a/1", "a/2", "a/b/3", "b/4", "c", "d/5", "d/6", "e"])
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert [o["Key"] for o in r["Contents"]] == ["c", "e"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2"] and [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/b/"]
    # Pages of two, with continuation tokens, give every key once and in order.
    seen, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, **kw)
        seen += [o["Key"] for o in r.get("Contents", [])]
        assert r["KeyCount"] <= 2
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen == keys
    # Pages with a delimiter: prefixes are not repeated across pages.
    seen, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, Delimiter="/", **kw)
        seen += [o["Key"] for o in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert sorted(seen) == ["a/", "b/", "c", "d/", "e"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, StartAfter="d/5")["Contents"]] == ["d/6", "e"]
    paginator = s3.get_paginator("list_objects")
    v1 = [o["Key"] for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}) for o in page.get("Contents", [])]
    assert v1 == keys
    s3.put_object(Bucket=bucket, Key="sp ace/ü", Body=b"x")
    r = s3.list_objects_v2(Bucket=bucket, Prefix="sp", EncodingType="url")
    # Asked for explicitly, url encoding reaches the caller as sent.
    assert [o["Key"] for o in r["Contents"]] == ["sp%20ace/%C3%BC"] and r["EncodingType"] == "url"


def test_signatures_and_grants(s3, reader):
    endpoint_key = os.environ["BB_S3_KEY"]
    wrong = client(endpoint_key, "not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        wrong.list_buckets()
    assert code(e) == "SignatureDoesNotMatch"
    unknown = client("AKIDONTKNOWTHISKEY00", "whatever")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unknown.list_buckets()
    assert code(e) == "InvalidAccessKeyId"
    shared = os.environ["BB_S3_READ_BUCKET"]
    s3.create_bucket(Bucket=shared)
    s3.put_object(Bucket=shared, Key="doc", Body=b"shared")
    s3.create_bucket(Bucket="private-to-owner")
    assert reader.get_object(Bucket=shared, Key="doc")["Body"].read() == b"shared"
    assert [b["Name"] for b in reader.list_buckets()["Buckets"]] == [shared]
    for call in (lambda: reader.put_object(Bucket=shared, Key="x", Body=b"x"),
                 lambda: reader.delete_object(Bucket=shared, Key="doc"),
                 lambda: reader.list_objects_v2(Bucket="private-to-owner"),
                 lambda: reader.create_bucket(Bucket="mine-now"),
                 lambda: reader.delete_bucket(Bucket=shared)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert code(e) == "AccessDenied"


def test_presigned_urls_expire(s3, bucket):
    import time
    import urllib.request
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=2)
    assert urllib.request.urlopen(url).read() == b"presigned"
    time.sleep(3)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 403


def test_clock_skew_is_refused(s3, monkeypatch):
    import botocore.auth
    real = botocore.auth.datetime.datetime

    class Skewed(real):
        @classmethod
        def utcnow(cls):
            return real.utcnow() - datetime.timedelta(minutes=20)

        @classmethod
        def now(cls, tz=None):
            return real.now(tz) - datetime.timedelta(minutes=20)

    monkeypatch.setattr(botocore.auth.datetime, "datetime", Skewed)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_buckets()
    assert code(e) == "RequestTimeTooSkewed"


def test_delete_objects_and_copy(s3, bucket):
    for k in ("x1", "x2", "x3"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode(), Metadata={"m": k})
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x1"}, {"Key": "x2"}, {"Key": "gone"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["gone", "x1", "x2"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["x3"]
    other = bucket + "-dst"
    s3.create_bucket(Bucket=other)
    r = s3.copy_object(Bucket=other, Key="copied", CopySource={"Bucket": bucket, "Key": "x3"})
    head = s3.head_object(Bucket=other, Key="copied")
    assert head["Metadata"] == {"m": "x3"} and head["ETag"] == r["CopyObjectResult"]["ETag"]
    s3.copy_object(Bucket=other, Key="copied", CopySource={"Bucket": other, "Key": "copied"},
                   MetadataDirective="REPLACE", Metadata={"new": "1"}, ContentType="text/plain")
    head = s3.head_object(Bucket=other, Key="copied")
    assert head["Metadata"] == {"new": "1"} and head["ContentType"] == "text/plain"
    assert s3.get_object(Bucket=other, Key="copied")["Body"].read() == b"x3"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=other, Key="c2", CopySource={"Bucket": bucket, "Key": "missing"})
    assert code(e) == "NoSuchKey"


def test_limits_and_anonymous_access(s3, bucket):
    import urllib.request
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert code(e) in ("KeyTooLongError", "InvalidArgument", "InvalidRequest")
    # An XML body over the limit (2 MiB) is refused before it is read or authenticated.
    endpoint = os.environ["BB_S3_ENDPOINT"]
    # (Only the headers are sent: the answer comes from them, before any body is read.)
    import http.client
    conn = http.client.HTTPConnection(endpoint.removeprefix("http://"), timeout=30)
    conn.putrequest("POST", f"/{bucket}?delete")
    conn.putheader("Content-Length", str(3 << 20))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 400 and b"MaxMessageLengthExceeded" in resp.read()
    conn.close()
    # Anonymous requests: refused, except reads of a public-read bucket.
    s3.put_object(Bucket=bucket, Key="o", Body=b"private")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{endpoint}/{bucket}/o")
    assert e.value.code == 403
    public = os.environ["BB_S3_PUBLIC_BUCKET"]
    s3.create_bucket(Bucket=public)
    s3.put_object(Bucket=public, Key="page.html", Body=b"<p>hi</p>", ContentType="text/html")
    with urllib.request.urlopen(f"{endpoint}/{public}/page.html") as r:
        assert r.read() == b"<p>hi</p>" and r.headers["Content-Type"] == "text/html"
    req = urllib.request.Request(f"{endpoint}/{public}/new", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 403


def raw_response(method, path, headers):
    """Sends only the request line and headers; returns (status, body) of the answer."""
    import http.client
    endpoint = os.environ["BB_S3_ENDPOINT"].removeprefix("http://")
    conn = http.client.HTTPConnection(endpoint, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    out = (resp.status, resp.read())
    conn.close()
    return out


def test_size_header_and_metadata_limits(s3, bucket):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    # A signed PUT announcing 6 GiB: refused from its headers, before any body byte is read.
    url = f"{os.environ['BB_S3_ENDPOINT']}/{bucket}/huge"
    req = AWSRequest(method="PUT", url=url, headers={
        "Content-Length": str(6 << 30), "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(os.environ["BB_S3_KEY"], os.environ["BB_S3_SECRET"]), "s3", "us-east-1").add_auth(req)
    status_code, body = raw_response("PUT", f"/{bucket}/huge", dict(req.headers))
    assert status_code == 400 and b"EntityTooLarge" in body
    # Headers over 8 KiB, and more than 100 of them: refused, the gateway keeps serving.
    status_code, body = raw_response("GET", f"/{bucket}/x", {"X-Filler": "a" * (9 << 10)})
    assert status_code == 400 and b"RequestHeaderSectionTooLarge" in body
    status_code, _ = raw_response("GET", f"/{bucket}/x", {f"X-H{i}": "1" for i in range(150)})
    assert status_code == 431
    # User metadata over 2 KiB.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata={"big": "v" * 2100})
    assert code(e) == "MetadataTooLarge"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="meta", Metadata={"big": "v" * 2100})
    assert code(e) == "MetadataTooLarge"
    s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata={"ok": "v" * 1000})
    assert s3.head_object(Bucket=bucket, Key="meta")["Metadata"] == {"ok": "v" * 1000}
