"""One-shot bucket set-up for docker-compose.yml: create each bucket named on the command line.

Runs in the MLflow image (it has boto3) against the S3 server of the stack (SeaweedFS), so the stack
needs no MinIO client. Idempotent: a bucket that exists already is left alone. Credentials and the
endpoint come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``S3_ENDPOINT_URL``), which compose fills from ``.env``.

    python s3_init.py mlflow documents ragtrail-work
"""

from __future__ import annotations

import os
import sys
import time


def main(buckets: list[str], attempts: int = 30) -> int:
    import boto3
    from botocore.exceptions import ClientError, EndpointConnectionError

    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"],
                      region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    for bucket in buckets:
        for attempt in range(attempts):
            try:
                s3.create_bucket(Bucket=bucket)
                print(f"s3-init: created bucket {bucket}")
                break
            except ClientError as err:
                if err.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    print(f"s3-init: bucket {bucket} exists")
                    break
                raise
            except EndpointConnectionError:
                if attempt == attempts - 1:
                    raise
                time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
