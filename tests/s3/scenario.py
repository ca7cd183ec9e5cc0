"""Steps of the gateway scenarios that tests/s3.rs drives around process kills (not a pytest module).

    scenario.py start-multipart STATE   create an upload and two parts, save its id and ETags
    scenario.py finish-multipart STATE  complete it and check the object's bytes and ETag
    scenario.py put-big                 store a 40 MiB object
    scenario.py slow-get                read it back slowly ("reading" once started), check it
"""
import hashlib
import json
import random
import sys
import time

from conftest import client
import os

MIB = 1 << 20


def s3():
    return client(os.environ["BB_S3_KEY"], os.environ["BB_S3_SECRET"])


def data(seed, n):
    return random.Random(seed).randbytes(n)


PARTS = [data(1, 5 * MIB), data(2, 777)]
BIG = data(3, 40 * MIB)


def main(step, *args):
    c = s3()
    if step == "start-multipart":
        c.create_bucket(Bucket="restart")
        uid = c.create_multipart_upload(Bucket="restart", Key="obj")["UploadId"]
        etags = [c.upload_part(Bucket="restart", Key="obj", UploadId=uid, PartNumber=n + 1, Body=p)["ETag"]
                 for n, p in enumerate(PARTS)]
        json.dump({"upload": uid, "etags": etags}, open(args[0], "w"))
    elif step == "finish-multipart":
        state = json.load(open(args[0]))
        parts = [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(state["etags"])]
        done = c.complete_multipart_upload(Bucket="restart", Key="obj", UploadId=state["upload"],
                                           MultipartUpload={"Parts": parts})
        want = '"%s-2"' % hashlib.md5(b"".join(hashlib.md5(p).digest() for p in PARTS)).hexdigest()
        assert done["ETag"] == want, (done["ETag"], want)
        got = c.get_object(Bucket="restart", Key="obj")
        assert got["Body"].read() == b"".join(PARTS) and got["ETag"] == want
    elif step == "put-big":
        c.create_bucket(Bucket="big")
        c.put_object(Bucket="big", Key="obj", Body=BIG)
    elif step == "slow-get":
        body = c.get_object(Bucket="big", Key="obj")["Body"]
        got = bytearray()
        while True:
            piece = body.read(256 << 10)
            if not piece:
                break
            got += piece
            if len(got) == len(piece):
                print("reading", flush=True)
            time.sleep(0.02)
        assert bytes(got) == BIG, "bytes differ"
    else:
        raise SystemExit("unknown step " + step)
    print("ok", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
