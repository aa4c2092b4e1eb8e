"""Storage round trips, local folder vs S3 (a moto server on 127.0.0.1), per stored file.

What an import costs in storage calls, per file, for each configuration: stage (save under
staging/), fetch the staged copy to a local temporary file (what a worker does), store the
original and canonical copies (FileWrites.save: one exists check + one save each), delete
the staged object; then the audio view's part: a presigned URL (signing only, no request).
No database: the storage calls alone, through default_storage as the code makes them.

moto is an in-process Python server, far slower than MinIO or AWS per request; the S3
figures are an upper bound of the client-side work plus moto's, not a store's latency.

    .venv/bin/python -m bench.storage [--files 40] [--kib 200]

Last line: `files=… kib=… local_ms_per_file=… s3_ms_per_file=… presign_us=… cpu_s=… load=…`
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
# Run as a script, bench/ comes first on the path, and bench/queue.py would shadow "queue".
sys.path[0] = str(REPO)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
os.environ.setdefault("EMOLOOP_DEV", "true")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _one_import(index: int, payload: bytes) -> None:
    from django.core.files.base import ContentFile

    from labelling.services import storage

    staged = storage.stage_bytes(f"staging/batch-1/u{index:06d}.wav", payload)
    with storage.staged_file(staged) as path:
        data = path.read_bytes()
    writes = storage.FileWrites()
    writes.save(f"clips/original/{index:02x}/{index:064x}.wav", ContentFile(data))
    writes.save(f"clips/canonical/{index:02x}/{index:064x}.wav", ContentFile(data))
    storage.delete_staged(staged)


def _run(files: int, payload: bytes) -> float:
    start = time.perf_counter()
    for index in range(files):
        _one_import(index, payload)
    return (time.perf_counter() - start) * 1000 / files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--kib", type=int, default=200)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import override_settings

    from emoloop import storage as emoloop_storage
    from tests.s3server import s3_storages, start_s3_server

    payload = os.urandom(args.kib * 1024)
    cpu0 = _cpu()
    with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media):
        local_ms = _run(args.files, payload)
    server = start_s3_server()
    try:
        bucket = server.create_bucket()
        with override_settings(STORAGES=s3_storages(server, bucket), EMOLOOP_STORAGE="s3"):
            s3_ms = _run(args.files, payload)
            start = time.perf_counter()
            for index in range(200):
                emoloop_storage.presigned_url(
                    f"clips/canonical/{index % args.files:02x}/{index:064x}.wav",
                    ttl=settings.EMOLOOP_AUDIO_URL_TTL,
                    content_type="audio/wav",
                    filename="clip.wav",
                )
            presign_us = (time.perf_counter() - start) * 1e6 / 200
    finally:
        server.stop()
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"files={args.files} kib={args.kib} local_ms_per_file={local_ms:.1f} "
        f"s3_ms_per_file={s3_ms:.1f} presign_us={presign_us:.0f} "
        f"cpu_s={_cpu() - cpu0:.1f} load={load}"
    )


if __name__ == "__main__":
    main()
