"""Time `manage.py backup` and `restore` on a local media folder of many files plus one large
file, into a fresh database: wall time, CPU seconds and peak memory of each command.

    python -m bench.backup [--files 2000] [--kb 100] [--big-mb 256]

The bench makes its own PostgreSQL databases (bench_backup_source, bench_backup_target, on
the server of DATABASE_URL, default postgres@127.0.0.1) and scratch folder, and drops them
at the end. Each command runs under /usr/bin/time (peak resident memory: the large file must
not show in it, objects are read in 1 MiB blocks). Last line:
``backup_s=… backup_cpu_s=… backup_rss_mb=… restore_s=… restore_cpu_s=… restore_rss_mb=…
objects=… object_mb=… load=…``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scratch_db import admin, database_urls  # noqa: E402 - after the path


def timed(env: dict[str, str], *args: str) -> dict[str, float]:
    """Run manage.py under /usr/bin/time: wall s, CPU s (user + sys), peak RSS MB."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        done = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%e %U %S %M",
             sys.executable, "manage.py", *args],
            cwd=REPO, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        wall, user, system, rss_kb = report.read().split()[-4:]
    return {"s": float(wall), "cpu_s": float(user) + float(system), "rss_mb": int(rss_kb) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--kb", type=int, default=100, help="size of each small file")
    parser.add_argument("--big-mb", type=int, default=256, help="one large file (0: none)")
    args = parser.parse_args()

    source_url, maintenance = database_urls("bench_backup_source")
    target_url, _ = database_urls("bench_backup_target")
    scratch = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    base = {**os.environ, "EMOLOOP_DATA_DIR": str(scratch / "data"), "EMOLOOP_DEV": "true"}
    source = {**base, "DATABASE_URL": source_url, "MEDIA_ROOT": str(scratch / "media")}
    target = {**base, "DATABASE_URL": target_url, "MEDIA_ROOT": str(scratch / "restored")}
    try:
        for name in ("bench_backup_source", "bench_backup_target"):
            admin(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin(maintenance, f'CREATE DATABASE "{name}"')
        timed(source, "migrate", "-v", "0")
        media = scratch / "media"
        for i in range(args.files):
            path = media / "clips" / f"{i % 256:02x}" / f"{i:08d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(args.kb * 1024))
        if args.big_mb:
            big = media / "exports" / "big.zip"
            big.parent.mkdir(parents=True)
            with big.open("wb") as fh:
                for _ in range(args.big_mb):
                    fh.write(os.urandom(1 << 20))
        total_mb = sum(p.stat().st_size for p in media.rglob("*") if p.is_file()) / 2**20
        made = timed(source, "backup", "--out", str(scratch / "backup"), "-v", "0")
        back = timed(target, "restore", str(scratch / "backup"), "-v", "0")
        load = open("/proc/loadavg").read().split()[0]  # noqa: SIM115 - one read
        print(
            f"backup_s={made['s']:.1f} backup_cpu_s={made['cpu_s']:.1f} "
            f"backup_rss_mb={made['rss_mb']:.0f} restore_s={back['s']:.1f} "
            f"restore_cpu_s={back['cpu_s']:.1f} restore_rss_mb={back['rss_mb']:.0f} "
            f"objects={args.files + (1 if args.big_mb else 0)} object_mb={total_mb:.0f} "
            f"load={load}"
        )
    finally:
        for name in ("bench_backup_source", "bench_backup_target"):
            admin(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
