"""`blackbox bench s3` driver: 1,000 objects of 4 KiB with 16 parallel boto3 clients (PUT, GET,
LIST), printed as one JSON line. Endpoint and key come from the environment as for the suite."""
import concurrent.futures
import json
import os
import threading
import time

from conftest import client

N, SIZE, THREADS = int(os.environ.get("BB_BENCH_OBJECTS", "1000")), 4096, 16
local = threading.local()


def s3():
    if not hasattr(local, "c"):
        local.c = client(os.environ["BB_S3_KEY"], os.environ["BB_S3_SECRET"])
    return local.c


def timed(fn, items):
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(fn, items))
    return time.monotonic() - start


def main():
    c = s3()
    c.create_bucket(Bucket="bench-small")
    body = os.urandom(SIZE)
    put = timed(lambda i: s3().put_object(Bucket="bench-small", Key=f"obj-{i:05}", Body=body), range(N))
    get = timed(lambda i: s3().get_object(Bucket="bench-small", Key=f"obj-{i:05}")["Body"].read(), range(N))
    start = time.monotonic()
    listed = sum(len(p.get("Contents", [])) for p in c.get_paginator("list_objects_v2").paginate(Bucket="bench-small"))
    lst = time.monotonic() - start
    assert listed == N, listed
    print(json.dumps({"objects": N, "put_per_s": N / put, "get_per_s": N / get, "list_per_s": N / lst}))


if __name__ == "__main__":
    main()
