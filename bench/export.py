"""Dataset version at scale: build a 100,000-clip, 300,000-annotation project's version.

The bench creates its own PostgreSQL database (default `emoloop_bench_export` on the server
of DATABASE_URL, else 127.0.0.1:5432 as user postgres), migrates it, fills it with COPY
(bench/export_data.py: speakers, ~50 annotators of varying skill, labels at every ring of the
Willcox wheel, skips, gold clips) and drops it at the end; nothing else is touched. Audio:
when the build supports `options["audio"] = "reference"` the version names each clip's
canonical file instead of copying it; until then every clip points at one 10 ms WAV under a
temporary MEDIA_ROOT, so the copies cost file creation, not bytes.

The build runs in a child process (`--child`), which reports its wall time around
`exports.services.build.build` (population and Django start-up excluded), its peak resident
set size (ru_maxrss, the whole process: Django and every import included), that of the
build's Dawid-Skene worker process (exports/services/ds_fit.py: pandas and crowd-kit live
there), the CPU seconds of both, and the time and memory at each stage of the build's progress
callback. The headline's peak_rss_mb counts both processes: they run side by side, so it is
the largest sum of their resident memory at one moment, sampled every 10 ms from /proc (and
never less than either process's own ru_maxrss); the two ru_maxrss added, an upper bound,
are in the JSON as sum_of_peaks_rss_mb (peak_rss_rule says this in the JSON too). A
second child writes the version again into a local folder; `identical_rebuild` compares the
two SHA256SUMS (the first read back from storage, where the build saved the version).

    make bench-export       # or: python bench/export.py [--clips N] [--annotations N] [--profile]

Appends its run to bench/results/export.json (the last five with the same settings). The last
line printed is

    export_s=... peak_rss_mb=... clips=100000 annotations=300000 identical_rebuild=true
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Run as a script, Python puts bench/ first on the import path, where a bench module named
# like a standard one (queue.py) would shadow it: the repository root replaces it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

from bench.scratch_db import scratch_database  # noqa: E402

RESULTS = REPO / "bench" / "results"
SLUG = "bench-export"
KEEP_RUNS = 5
TARGETS = {"export_s": 60, "peak_rss_mb": 500}
PEAK_RULE = (
    "sum, concurrent: the build process and its Dawid-Skene worker run at the same time, so "
    "peak_rss_mb is the largest sum of both processes' resident memory at one moment "
    "(VmRSS of the build and of its children, sampled every 10 ms), and never less than "
    "either process's own ru_maxrss; sum_of_peaks_rss_mb adds the two ru_maxrss (an upper "
    "bound, as if both peaked at the same moment)"
)


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MB: of this process, or (RUSAGE_CHILDREN) of the largest of
    its ended children (the build's Dawid-Skene worker)."""
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def rss_mb(pid: int | str = "self") -> float:
    """The current resident set size (VmRSS) of a process; 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # ended meanwhile
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ResidentSampler:
    """Samples, every `every_s`, the resident memory of this process plus that of all its
    child processes (the Dawid-Skene worker) at that moment: the peak of what the build
    holds at once, counted across processes. A background thread reading /proc."""

    def __init__(self, every_s: float = 0.01) -> None:
        import threading

        self.every_s, self.peak_mb, self.samples = every_s, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self) -> list[str]:
        found: list[str] = []
        for task in Path("/proc/self/task").iterdir():
            try:
                found += (task / "children").read_text().split()
            except OSError:
                continue
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            total = rss_mb() + sum(rss_mb(child) for child in self._children())
            self.peak_mb = max(self.peak_mb, total)
            self.samples += 1

    def __enter__(self) -> ResidentSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def setup_django() -> None:
    # Run as a script, Python puts bench/ first on the import path: the repository's
    # packages come from its root.
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
    os.environ.setdefault("EMOLOOP_DEV", "true")
    import django

    django.setup()


def audio_by_reference(choice: str) -> bool:
    """Whether to build with audio by reference: `--audio reference`, or `auto` when the
    build supports it (DatasetVersion.options, exports.models.AUDIO_MODES)."""
    from exports import models

    supported = "reference" in getattr(models, "AUDIO_MODES", ())
    if choice == "reference" and not supported:
        raise SystemExit("this build has no audio-by-reference option; use --audio copy")
    return choice == "reference" or (choice == "auto" and supported)


# --- The child: one build ------------------------------------------------------------------


class StageClock:
    """The build's progress callback: a tqdm bar, and time and RSS when each stage starts."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="clip", file=sys.stderr)
        self.started = time.perf_counter()
        self.marks: list[tuple[str, float, float, float, float]] = []

    def mark(self, stage: str) -> None:
        self.marks.append(
            (stage, time.perf_counter(), rss_mb(), peak_rss_mb(), time.process_time())
        )

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in {mark[0] for mark in self.marks}:
            self.mark(stage)
        self.bar.set_description(stage)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def stages(self, finished: float) -> list[dict[str, Any]]:
        """Per stage: wall seconds, this process's CPU seconds (the worker's are not in
        them), and its RSS and peak RSS when the stage started."""
        ends = [(m[1], m[4]) for m in self.marks[1:]] + [(finished, time.process_time())]
        return [
            {"stage": stage, "s": round(end - start, 2), "cpu_s": round(cpu_end - cpu, 2),
             "rss_mb_at_start": round(rss, 1), "peak_rss_mb_at_start": round(peak, 1)}
            for (stage, start, rss, peak, cpu), (end, cpu_end) in zip(
                self.marks, ends, strict=True)
        ]  # fmt: skip


def child(args: argparse.Namespace) -> None:
    setup_django()
    from exports.core.archive import sha256_file
    from exports.models import DatasetVersion
    from exports.services import build, versions

    version = DatasetVersion.objects.select_related(
        "project", "taxonomy_version__taxonomy", "created_by"
    ).get(pk=args.version_id)
    clock = StageClock()
    profiler = cProfile.Profile() if args.profile else None
    cpu_before = cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN)
    sampler = ResidentSampler()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    with sampler:
        if args.child == "build":
            build.build(version, clock)
        else:
            build.write_version(version, args.folder, clock)
    finished = time.perf_counter()
    cpu_self = cpu_s(resource.RUSAGE_SELF) - cpu_before[0]
    cpu_children = cpu_s(resource.RUSAGE_CHILDREN) - cpu_before[1]
    if profiler is not None:
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    clock.bar.close()
    if args.child == "build":  # in storage (exports.services.versions), like a download
        version.refresh_from_db()
        with versions.open_file(version, "datasheet.json") as file:
            sheet = json.loads(file.read())
        with versions.open_file(version, "SHA256SUMS") as file:
            sums = hashlib.sha256(file.read()).hexdigest()
        where = version.folder
    else:
        sheet = json.loads((args.folder / "datasheet.json").read_text())
        sums, where = sha256_file(args.folder / "SHA256SUMS"), str(args.folder)
    print(json.dumps({
        "folder": where, "export_s": round(finished - started, 2),
        "cpu_s": round(cpu_self, 1), "worker_cpu_s": round(cpu_children, 1),
        "build_peak_rss_mb": round(peak_rss_mb(), 1),
        "worker_peak_rss_mb": round(peak_rss_mb(resource.RUSAGE_CHILDREN), 1),
        # The worker runs beside the build: what both hold at once, sampled, and never less
        # than either process's own peak (ru_maxrss, which no sampling can miss).
        "peak_rss_mb": round(max(sampler.peak_mb, peak_rss_mb(),
                                 peak_rss_mb(resource.RUSAGE_CHILDREN)), 1),
        "concurrent_peak_rss_mb": round(sampler.peak_mb, 1),
        "rss_samples": sampler.samples,
        # An upper bound: as if both peaked at the same moment.
        "sum_of_peaks_rss_mb": round(peak_rss_mb() + peak_rss_mb(resource.RUSAGE_CHILDREN), 1),
        "stages": clock.stages(finished),
        "clips": sheet["composition"]["clips"],
        "annotations": sheet["collection"]["annotations"],
        "sums_sha256": sums,
    }))  # fmt: skip


def run_child(kind: str, version_id: int, folder: Path | None, profile: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--version-id", str(version_id)]
    if folder is not None:
        command += ["--folder", str(folder)]
    if profile:
        command.append("--profile")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- The parent: database, population, two builds ------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--annotations", type=int, default=300_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--speakers", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database", default="emoloop_bench_export",
                        help="Created and dropped by the bench (its own; never an existing one "
                        "unless --reuse-db).")  # fmt: skip
    parser.add_argument("--reuse-db", action="store_true",
                        help="Keep the database afterwards and reuse a populated one.")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="Profile the first build (cProfile); stats on stderr.")  # fmt: skip
    parser.add_argument("--audio", choices=["auto", "copy", "reference"], default="auto",
                        help="Audio by reference when the build supports it (auto).")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "export.json")
    parser.add_argument("--child", choices=["build", "rebuild"], help=argparse.SUPPRESS)
    parser.add_argument("--version-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    prefix = "emoloop-bench-export-"
    with scratch_database(args.database, reuse_db=args.reuse_db, prefix=prefix) as (scratch, new):
        run = measure(args, scratch, fresh=new)
    report(args, run)


def measure(args: argparse.Namespace, scratch: Path, fresh: bool) -> dict[str, Any]:
    setup_django()
    from django.core.management import call_command

    from bench import export_data
    from exports.models import DatasetVersion
    from exports.services import versions
    from labelling.models import Project

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    export_data.write_audio(scratch / "media")
    project = Project.objects.filter(slug=SLUG).first()
    if project is None or fresh:
        project = export_data.populate(
            SLUG, args.clips, args.annotations, args.annotators, args.speakers, args.seed
        )
    populate_s = time.perf_counter() - started
    version = versions.create_version(project, user=None, seed=args.seed)
    by_reference = audio_by_reference(args.audio)
    if by_reference:
        version.options = {**version.options, "audio": "reference"}
        version.save(update_fields=["options"])
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    first = run_child("build", version.pk, None, args.profile)
    second = run_child("rebuild", version.pk, scratch / "rebuild", False)
    # The two SHA256SUMS compared by their SHA-256 (the first is read from storage).
    identical = first["sums_sha256"] == second["sums_sha256"]
    version.refresh_from_db()
    assert version.status == DatasetVersion.Status.READY
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "audio": "reference" if by_reference else "copy (one 10 ms WAV per clip)",
        "populate_s": round(populate_s, 1),
        "export_s": first["export_s"],
        "rebuild_s": second["export_s"],
        "peak_rss_mb": first["peak_rss_mb"],
        "peak_rss_rule": PEAK_RULE,
        "concurrent_peak_rss_mb": first["concurrent_peak_rss_mb"],
        "sum_of_peaks_rss_mb": first["sum_of_peaks_rss_mb"],
        "build_peak_rss_mb": first["build_peak_rss_mb"],
        "worker_peak_rss_mb": first["worker_peak_rss_mb"],
        "cpu_s": first["cpu_s"],
        "worker_cpu_s": first["worker_cpu_s"],
        "rebuild_peak_rss_mb": second["peak_rss_mb"],
        "stages": first["stages"],
        "profiled": args.profile,
        "clips": first["clips"],
        "annotations": first["annotations"],
        "identical_rebuild": identical,
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def report(args: argparse.Namespace, run: dict[str, Any]) -> None:
    settings = {
        "benchmark": "export",
        "clips": args.clips,
        "annotations": args.annotations,
        "annotators": args.annotators,
        "speakers": args.speakers,
        "seed": args.seed,
        "database": "postgresql",
        "cpu_count": os.cpu_count(),
    }
    previous = []
    if args.out.exists():
        old = json.loads(args.out.read_text())
        if all(old.get(k) == v for k, v in settings.items()):
            previous = old.get("runs", [])
    results = {
        **settings,
        "python": platform.python_version(),
        "targets": TARGETS,
        "note": (
            "export_s: wall time of exports.services.build.build in a child process (Django "
            "start-up and population excluded). peak_rss_mb: see peak_rss_rule; "
            "build_peak_rss_mb is the build process's ru_maxrss (imports included), "
            "worker_peak_rss_mb that of its Dawid-Skene worker process "
            "(exports/services/ds_fit.py). cpu_s / worker_cpu_s: CPU seconds (user + "
            "system) of the build process and of the worker. stages: from the build's "
            "progress callback; "
            "'aggregation' covers majority votes, gold.csv, agreement.json and weak labels; "
            "'datasheet' writes version.json, datasheet.json and datasheet.md; 'labels' "
            "waits for the worker's Dawid-Skene (the outer ring is fitted first) and writes "
            "labels_<ring>, then stops the worker; 'plots' draws the datasheet's plots and "
            "writes SHA256SUMS. The worker runs from the end of 'annotations' to the end of "
            "'labels': the sampled peak is what both held at one moment of that overlap. "
            "Shared machine (2 cores): see the load averages and CPU seconds, and compare "
            "runs."
        ),
        "runs": [*previous, run][-KEEP_RUNS:],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for stage in run["stages"]:
        print(json.dumps(stage))
    print(f"populate_s={run['populate_s']} rebuild_s={run['rebuild_s']} audio={run['audio']}")
    print(
        f"concurrent_peak_rss_mb={run['concurrent_peak_rss_mb']:.0f} "
        f"sum_of_peaks_rss_mb={run['sum_of_peaks_rss_mb']:.0f} "
        f"build_peak_rss_mb={run['build_peak_rss_mb']:.0f} "
        f"worker_peak_rss_mb={run['worker_peak_rss_mb']:.0f} cpu_s={run['cpu_s']} "
        f"worker_cpu_s={run['worker_cpu_s']} load_average_at_start={run['load_average_at_start']}"
    )
    print(
        f"export_s={run['export_s']:.1f} peak_rss_mb={run['peak_rss_mb']:.0f} "
        f"clips={run['clips']} annotations={run['annotations']} "
        f"identical_rebuild={str(run['identical_rebuild']).lower()}"
    )


if __name__ == "__main__":
    main()
