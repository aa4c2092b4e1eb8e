"""Reading one large S3 object for a backup: `ops.services.backup.open_stream` (the response
body, block by block) against django-storages' file object (`default_storage.open`, which
downloads the whole object into its spool first).

    python -m bench.backup_s3_read stream|open [--mb 300]   (a module: bench/queue.py would
    shadow the standard library's queue for a script run from bench/)

Starts its own moto S3 server (tests/s3server.py) with one bucket; prints
``mode=… bytes=… rss_growth_mb=… s=… cpu_s=… load=…`` (peak resident memory growth while
reading, wall and CPU seconds).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")

import django  # noqa: E402 - after the path

django.setup()

from django.core.files.storage import default_storage  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from ops.services.backup import open_stream, sha256_of  # noqa: E402
from tests.s3server import s3_storages, start_s3_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["stream", "open"])
    parser.add_argument("--mb", type=int, default=300)
    args = parser.parse_args()
    server = start_s3_server()
    try:
        bucket = server.create_bucket()
        with tempfile.NamedTemporaryFile() as tmp:  # uploaded from disk: no peak before
            for _ in range(args.mb):
                tmp.write(os.urandom(1 << 20))
            tmp.flush()
            server.client().upload_file(tmp.name, bucket, "big.bin")
        with override_settings(STORAGES=s3_storages(server, bucket)):
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started, cpu = time.monotonic(), time.process_time()
            if args.mode == "stream":
                with open_stream(default_storage, "big.bin") as fh:
                    _, size = sha256_of(fh)
            else:
                with default_storage.open("big.bin", "rb") as fh:
                    _, size = sha256_of(fh)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            load = Path("/proc/loadavg").read_text().split()[0]
            print(
                f"mode={args.mode} bytes={size} rss_growth_mb={(peak - base) / 1024:.0f} "
                f"s={time.monotonic() - started:.1f} cpu_s={time.process_time() - cpu:.1f} "
                f"load={load}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
