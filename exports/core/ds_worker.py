"""A Dawid-Skene worker in an interpreter of its own: `python -m exports.core.ds_worker`.

exports.services.ds_fit starts it with `subprocess` (a plain child process, which a Celery
prefork child — a daemonic process — may start, where `multiprocessing` refuses) and sends
it one job per line on stdin: `<in.npz> <out.npz>`. Each job is fitted in order
(`aggregation.fit_coded_top` on the file's `tasks`, `workers`, `labels`, `n_iter`, `tol`),
its `best` and `top` arrays written to the out file, and one line answered on stdout: `ok`,
or `error <message>`. Anything else a library prints goes to stderr, so the answers stay
one per job. The worker ends when stdin closes.

Lean imports (`lean_imports`): the worker needs crowd-kit's `DawidSkene` and pandas, nothing
else. `import crowdkit.aggregation` runs that package's `__init__`, which imports every
aggregator and with them scipy, scikit-learn and nltk (about 180 MB resident), and pandas 3
imports pyarrow when it is installed (another 65 MB) although a fit only ever holds int32 and
float64 columns. The worker registers the two parent packages as bare namespaces (their real
search paths, no `__init__` run) so that only `dawid_skene.py` and the three modules it
imports load, and marks pyarrow absent for pandas. Same class, same code, same floats (a
test compares the worker's arrays with an in-process fit); about 75 MB instead of 250 MB.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
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


LEAN_PACKAGES = ("crowdkit.aggregation", "crowdkit.aggregation.classification")


def lean_imports() -> None:
    """Load crowd-kit's DawidSkene without the rest of crowd-kit, and pandas without pyarrow
    (module docstring). Only for this process: it changes what later imports find."""
    sys.modules.setdefault("pyarrow", None)  # type: ignore[arg-type]  # pandas: "not installed"
    for name in LEAN_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            return  # not installed as expected: the fit imports it the ordinary way
        package = types.ModuleType(name)
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules[name] = package


def main() -> None:
    lean_imports()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # what crowd-kit or numpy might print never mixes with answers
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
