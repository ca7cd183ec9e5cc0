"""Multipart uploads through boto3: the ETag clients verify, the part rules, and listings."""
import hashlib
import os

import boto3.s3.transfer
import botocore
import pytest

from conftest import code

MIB = 1 << 20


def multipart_etag(parts):
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return '"%s-%d"' % (digest, len(parts))


def test_multipart_round_trip(s3, bucket):
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(123)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="big/file", ContentType="video/x-test", Metadata={"a": "b"})
    uid = up["UploadId"]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
    etags = [s3.upload_part(Bucket=bucket, Key="big/file", UploadId=uid, PartNumber=n + 1, Body=p)["ETag"]
             for n, p in enumerate(parts)]
    listed = s3.list_parts(Bucket=bucket, Key="big/file", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed] == [(n + 1, len(p), e) for n, (p, e) in enumerate(zip(parts, etags))]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big/file", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    assert done["ETag"] == multipart_etag(parts)
    got = s3.get_object(Bucket=bucket, Key="big/file")
    body = b"".join(parts)
    assert got["Body"].read() == body
    assert got["ETag"] == multipart_etag(parts) and got["ContentType"] == "video/x-test" and got["Metadata"] == {"a": "b"}
    # Ranges across part boundaries.
    r = s3.get_object(Bucket=bucket, Key="big/file", Range="bytes=%d-%d" % (5 * MIB - 10, 10 * MIB + 5))
    assert r["Body"].read() == body[5 * MIB - 10:10 * MIB + 6]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_part_rules(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"tiny")["ETag"]
    last = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"end")["ETag"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": last}]})
    assert code(e) == "EntityTooSmall"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": last}, {"PartNumber": 1, "ETag": small}]})
    assert code(e) == "InvalidPartOrder"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    assert code(e) == "InvalidPart"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 7, "ETag": small}]})
    assert code(e) == "InvalidPart"
    # One part (the last may be small) is a whole object.
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": small}]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"tiny"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=3, Body=b"late")
    assert code(e) == "NoSuchUpload"
    uid = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=uid)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="gone", UploadId=uid)
    assert code(e) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId="0" * 32)
    assert code(e) == "NoSuchUpload"


def test_upload_part_copy_and_transfer_manager(s3, bucket):
    src = os.urandom(6 * MIB)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    a = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"})["CopyPartResult"]["ETag"]
    b = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                            CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange="bytes=0-99")["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": a}, {"PartNumber": 2, "ETag": b}]})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == src + src[:100]
    # boto3's transfer manager: multipart with its defaults (8 MiB parts, threads) both ways.
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "bb-s3-upload.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(20 * MIB + 7))
    cfg = boto3.s3.transfer.TransferConfig(multipart_threshold=8 * MIB)
    s3.upload_file(path, bucket, "managed", Config=cfg)
    back = path + ".back"
    s3.download_file(bucket, "managed", back, Config=cfg)
    assert open(path, "rb").read() == open(back, "rb").read()
    assert s3.head_object(Bucket=bucket, Key="managed")["ETag"].endswith('-3"')
    os.remove(path)
    os.remove(back)
