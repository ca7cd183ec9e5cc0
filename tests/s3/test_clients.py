"""Stock S3 command-line clients against the gateway: awscli, rclone and s3cmd, unmodified."""
import os
import subprocess
import sys
import uuid

import pytest

BIN = os.path.dirname(sys.executable)
MIB = 1 << 20


def env():
    e = dict(os.environ)
    e.update({
        "AWS_ACCESS_KEY_ID": os.environ["BB_S3_KEY"], "AWS_SECRET_ACCESS_KEY": os.environ["BB_S3_SECRET"],
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
        "RCLONE_CONFIG_BB_TYPE": "s3", "RCLONE_CONFIG_BB_PROVIDER": "Other",
        "RCLONE_CONFIG_BB_ACCESS_KEY_ID": os.environ["BB_S3_KEY"],
        "RCLONE_CONFIG_BB_SECRET_ACCESS_KEY": os.environ["BB_S3_SECRET"],
        "RCLONE_CONFIG_BB_ENDPOINT": os.environ["BB_S3_ENDPOINT"], "RCLONE_CONFIG_BB_REGION": "us-east-1",
        "RCLONE_CONFIG": "/dev/null",
    })
    return e


def run(*args, **kw):
    out = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
    return out.stdout


def aws(*args):
    return run(os.path.join(BIN, "aws"), "--endpoint-url", os.environ["BB_S3_ENDPOINT"], *args)


def tree(root, files):
    for rel, size in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(os.urandom(size))


def same_tree(a, b):
    def listing(root):
        out = {}
        for d, _, names in os.walk(root):
            for n in names:
                p = os.path.join(d, n)
                out[os.path.relpath(p, root)] = open(p, "rb").read()
        return out
    return listing(a) == listing(b)


def test_awscli(tmp_path):
    bucket = "aws-" + uuid.uuid4().hex[:8]
    aws("s3", "mb", f"s3://{bucket}")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(100 * MIB))
    aws("s3", "cp", str(big), f"s3://{bucket}/dir/big.bin")  # multipart (8 MiB parts) by default
    aws("s3", "cp", f"s3://{bucket}/dir/big.bin", str(tmp_path / "big.back"))
    assert (tmp_path / "big.back").read_bytes() == big.read_bytes()
    src = tmp_path / "src"
    tree(src, {"a.txt": 10, "sub/b.bin": 3 * MIB, "sub/deeper/c": 0, "with space.txt": 5})
    aws("s3", "sync", str(src), f"s3://{bucket}/synced")
    listing = aws("s3", "ls", "--recursive", f"s3://{bucket}/")
    for key in ("dir/big.bin", "synced/a.txt", "synced/sub/b.bin", "synced/sub/deeper/c", "synced/with space.txt"):
        assert key in listing, listing
    back = tmp_path / "back"
    aws("s3", "sync", f"s3://{bucket}/synced", str(back))
    assert same_tree(src, back)
    assert "upload:" not in aws("s3", "sync", str(src), f"s3://{bucket}/synced"), "second sync re-uploaded"
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "synced/a.txt")
    assert '"ContentLength": 10' in head
    aws("s3api", "copy-object", "--bucket", bucket, "--key", "copy.txt", "--copy-source", f"{bucket}/synced/a.txt")
    aws("s3", "rm", "--recursive", f"s3://{bucket}/")
    assert aws("s3", "ls", "--recursive", f"s3://{bucket}/").strip() == ""
    aws("s3", "rb", f"s3://{bucket}")


def test_rclone(tmp_path):
    bucket = "rclone-" + uuid.uuid4().hex[:8]
    rclone = os.path.join(BIN, "rclone")
    src = tmp_path / "src"
    tree(src, {"one": 1000, "two/three": 2 * MIB, "two/four": 70 * 1024})
    run(rclone, "mkdir", f"bb:{bucket}")
    run(rclone, "copy", str(src), f"bb:{bucket}/data")
    run(rclone, "check", str(src), f"bb:{bucket}/data")
    (src / "five").write_bytes(b"five")
    os.remove(src / "one")
    run(rclone, "sync", str(src), f"bb:{bucket}/data")
    run(rclone, "check", str(src), f"bb:{bucket}/data")
    back = tmp_path / "back"
    run(rclone, "copy", f"bb:{bucket}/data", str(back))
    assert same_tree(src, back)


def test_s3cmd(tmp_path):
    bucket = "s3cmd-" + uuid.uuid4().hex[:8]
    host = os.environ["BB_S3_ENDPOINT"].removeprefix("http://")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        f"[default]\naccess_key = {os.environ['BB_S3_KEY']}\nsecret_key = {os.environ['BB_S3_SECRET']}\n"
        f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\nsignature_v2 = False\n"
        "bucket_location = us-east-1\n")
    s3cmd = [os.path.join(BIN, "s3cmd"), "-c", str(cfg)]
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(20 * MIB))  # s3cmd uploads in 15 MiB parts
    run(*s3cmd, "mb", f"s3://{bucket}")
    run(*s3cmd, "put", str(f), f"s3://{bucket}/f.bin")
    assert "f.bin" in run(*s3cmd, "ls", f"s3://{bucket}/")
    run(*s3cmd, "get", f"s3://{bucket}/f.bin", str(tmp_path / "f.back"))
    assert (tmp_path / "f.back").read_bytes() == f.read_bytes()
    run(*s3cmd, "del", f"s3://{bucket}/f.bin")
    assert "f.bin" not in run(*s3cmd, "ls", f"s3://{bucket}/")
