"""EmoLoop on a namespace cluster (tests/netns_cluster.py): web and Celery worker hosts that
share only PostgreSQL, Redis and an S3 object store, all reached over the bridge.

- PostgreSQL: this machine's server (127.0.0.1 only) through a socat forwarder on the
  bridge IP; the database is the caller's (the test database, or the bench's scratch one).
- Redis: a private redis-server on the bridge IP (broker, results, cache), so no other
  worker of this machine takes the cluster's tasks.
- S3: a moto server (tests/s3server.py) bound to the bridge IP, one bucket.
- Each host: its own hostname, an empty working directory, an empty EMOLOOP_DATA_DIR and
  MEDIA_ROOT, and the code tree on PYTHONPATH (read-only use: it stands for the image).

Used by tests/test_cluster.py and bench/cluster.py.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.netns_cluster import NetnsCluster, wait_port
from tests.s3server import S3Bucket, S3Server, start_s3_server

REPO = Path(__file__).resolve().parents[1]
WEB_PORT = 8000
TASK_LINE = re.compile(r"Task (?P<name>[\w.]+)\[(?P<id>[0-9a-f-]+)\] (?P<what>received|succeeded)")
RUNTIME = re.compile(r"Task (?P<name>[\w.]+)\[[0-9a-f-]+\] succeeded in (?P<s>[0-9.]+)s")


def all_queues() -> str:
    from django.conf import settings

    return ",".join(settings.EMOLOOP_WORKER_QUEUES)


@dataclass
class Stack:
    """A running cluster: `cluster` (the namespaces), the services' addresses, the logs."""

    cluster: NetnsCluster
    database: dict[str, Any]
    s3: S3Server
    bucket: S3Bucket
    pg_port: int = 0
    redis_port: int = 0
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return f"http://{self.cluster.hosts['web'].ip}:{WEB_PORT}"

    def env(self, role: str, **extra: str) -> dict[str, str]:
        """The environment of a process on host `role`: only the shared services, over the
        bridge, and folders of its own."""
        host = self.cluster.hosts[role]
        bridge = self.cluster.bridge_ip
        db = self.database
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        redis = f"redis://{bridge}:{self.redis_port}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(host.workdir),
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "emoloop.settings",
            "EMOLOOP_DEV": "true",
            "SECRET_KEY": self.secret_key,
            "ALLOWED_HOSTS": host.ip,
            "DATABASE_URL": f"postgres://{db['USER']}{password}@{bridge}:{self.pg_port}/{db['NAME']}",
            "CELERY_BROKER_URL": f"{redis}/0",
            "CELERY_RESULT_BACKEND": f"{redis}/1",
            "CACHE_URL": f"{redis}/2",
            "EMOLOOP_DATA_DIR": str(host.datadir),
            "MEDIA_ROOT": str(host.datadir / "media"),
            **self.bucket.env(),
        }
        env.update(extra)
        return env

    def start_web(self, **extra: str) -> None:
        ip = self.cluster.hosts["web"].ip
        log = self.cluster.base / "web.log"
        self.logs["web"] = log
        argv = [sys.executable, "-m", "gunicorn", "emoloop.wsgi", "--bind", f"{ip}:{WEB_PORT}",
                "--workers", "1", "--threads", "4", "--no-control-socket",
                "--timeout", "120"]  # fmt: skip
        self.cluster.spawn("web", argv, self.env("web", **extra), log)
        wait_port(ip, WEB_PORT, timeout=120, what="(gunicorn on the web host)")

    def start_worker(self, role: str, queues: str | None = None, **extra: str) -> None:
        log = self.cluster.base / f"{role}.log"
        self.logs[role] = log
        argv = [sys.executable, "-m", "celery", "-A", "emoloop", "worker", "-Q",
                queues or all_queues(), "-n", f"{role}@%h", "--concurrency", "1",
                "--without-gossip", "--without-mingle", "-l", "info"]  # fmt: skip
        self.cluster.spawn(role, argv, self.env(role, **extra), log)

    def wait_ready(self, roles: Sequence[str], timeout: float = 120.0) -> None:
        """Poll the workers' logs until each says it is ready."""
        deadline = time.monotonic() + timeout
        for role in roles:
            while " ready." not in self.log(role):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {role} not ready: {self.log(role)[-3000:]}")
                time.sleep(0.2)

    def log(self, role: str) -> str:
        path = self.logs.get(role)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def tasks(self, role: str, name: str, what: str = "succeeded") -> list[str]:
        """Ids of the tasks called `name` (last dotted part) that the host's worker logged
        as `what` (received or succeeded)."""
        return [
            m["id"]
            for m in TASK_LINE.finditer(self.log(role))
            if m["name"].rsplit(".", 1)[-1] == name and m["what"] == what
        ]

    def task_seconds(self, role: str, name: str) -> list[float]:
        """Run times (s) the host's worker logged for the tasks called `name` that succeeded."""
        return [
            float(m["s"])
            for m in RUNTIME.finditer(self.log(role))
            if m["name"].rsplit(".", 1)[-1] == name
        ]


def open_stack(cluster: NetnsCluster, database: dict[str, Any]) -> Stack:
    """Start the shared services for an opened cluster (stopped by cluster.close() or the
    returned stack's s3.stop())."""
    s3 = start_s3_server(host=cluster.bridge_ip)
    try:
        bucket = S3Bucket(s3, s3.create_bucket())
        stack = Stack(cluster=cluster, database=database, s3=s3, bucket=bucket)
        stack.pg_port = cluster.forward(
            database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)
        )
        stack.redis_port = cluster.redis_server()
    except BaseException:
        s3.stop()
        raise
    return stack


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll until `predicate()` is true; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def seed_pool(
    project: Any, base: Any, speakers: Sequence[str], n: int, *, seed: int = 0, batch: int = 5000
) -> list[int]:
    """`n` unlabelled clips with cached features, as if ingested and featurised long ago:
    vector i is base[i % len(base)] plus 5 % Gaussian noise (so the model's scores are
    spread as on real data), speaker speakers[i % len(base)]. Rows only: the audio is never
    read (rescoring uses cached features). Returns the new clips' ids."""
    import numpy as np

    from labelling.models import Clip, ClipSource, QueueEntry
    from learner.models import ClipFeatures
    from learner.services import features as feature_cache
    from learner.services import project_settings

    ex = feature_cache.extractor(project_settings.settings_for(project).feature_set)
    rng = np.random.default_rng(seed)
    base = np.asarray(base, dtype=np.float32)
    scale = 0.05 * (np.abs(base).mean(axis=0) + 1e-3)
    ids: list[int] = []
    tag = rng.integers(1 << 40)
    for start in range(0, n, batch):
        rows = range(start, min(start + batch, n))
        clips = Clip.objects.bulk_create(
            Clip(project=project, original=f"pool/{tag}-{i}.wav", canonical=f"pool/{tag}-{i}.wav",
                 original_name=f"pool-{i}.wav", original_format="WAV",
                 sha256=f"{tag:016x}{i:048x}", duration_s=2.0, sample_rate=16000, channels=1,
                 source=ClipSource.UPLOAD, speaker_id=speakers[i % len(base)])
            for i in rows
        )  # fmt: skip
        picked = base[[i % len(base) for i in rows]]
        vectors = (picked + rng.normal(size=picked.shape).astype(np.float32) * scale).astype("<f4")
        ClipFeatures.objects.bulk_create(
            ClipFeatures(clip=clip, extractor=ex.name, version=feature_cache.version_for(ex, 0),
                         variant=0, dim=ex.dim, vector=vectors[k].tobytes())
            for k, clip in enumerate(clips)
        )  # fmt: skip
        QueueEntry.objects.bulk_create(
            QueueEntry(project=project, clip=clip, priority=1.0, stratum=clip.speaker_id,
                       target=1, open_slots=1)
            for clip in clips
        )  # fmt: skip
        ids += [clip.pk for clip in clips]
    return ids
