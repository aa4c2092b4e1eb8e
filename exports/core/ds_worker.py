"""A Dawid-Skene worker in an interpreter of its own: `python -m exports.core.ds_worker`.

exports.services.ds_fit starts it with `subprocess` (a plain child process, which a Celery
prefork child — a daemonic process — may start, where `multiprocessing` refuses) and sends
it one job per line on stdin: `<in.npz> <out.npz>`. Each job is fitted in order
(`aggregation.fit_coded_top` on the file's `tasks`, `workers`, `labels`, `n_iter`, `tol`),
its `best` and `top` arrays written to the out file, and one line answered on stdout: `ok`,
or `error <message>`. Anything else a library prints goes to stderr, so the answers stay
one per job. The worker ends when stdin closes.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

import numpy as np

from exports.core.aggregation import fit_coded_top


def fit_file(in_path: str, out_path: str) -> None:
    with np.load(in_path) as job:
        best, top = fit_coded_top(
            job["tasks"], job["workers"], job["labels"], int(job["n_iter"]), float(job["tol"])
        )
    np.savez(out_path, best=best, top=top)


def serve(jobs: TextIO, answers: TextIO) -> None:
    for line in jobs:
        if not line.strip():
            continue
        try:
            in_path, out_path = line.split()
            fit_file(in_path, out_path)
        except Exception as exc:
            answers.write(f"error {type(exc).__name__}: {exc}".replace("\n", " ") + "\n")
        else:
            answers.write("ok\n")
        answers.flush()


def main() -> None:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # what crowd-kit or numpy might print never mixes with answers
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
