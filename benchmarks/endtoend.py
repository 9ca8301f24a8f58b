"""End to end: triage throughput on a folder against its two parts, and the bound they imply.

Triage decodes on a thread pool while the model runs, so its rate is limited by both:
``decode`` (decode + preprocess alone, on the same pool and files) and ``model`` (inference
alone, on the same decoded batches). On a CPU they share the cores, so at best the work
adds up: 1 / (1/model + 1/decode). On a GPU the two overlap on different hardware and the
slower one sets the pace: min(model, decode). ``share`` is triage's rate over that bound.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from flare.benchmarks.targets import GPU_RUNNERS
from flare.runtime.apps.triage import PREFETCH_BATCHES, Decoder, decode_ahead, default_workers, triage
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.io.images import DEFAULT_MAX_PIXELS, list_images
from flare.runtime.tasks.classify import Classifier



def bound(model_ips: float, decode_ips: float, on_gpu: bool) -> float:
    """The best triage rate the two parts allow (see the module docstring)."""
    return min(model_ips, decode_ips) if on_gpu else 1.0 / (1.0 / model_ips + 1.0 / decode_ips)


def best_rate(items: int, run: Callable[[], object], min_passes: int = 2, min_seconds: float = 1.0) -> float:
    """The best items/s over passes of ``run``: at least ``min_passes``, and until
    ``min_seconds`` were spent, so a fast model's sub-second pass is not one noisy sample."""
    rates, spent = [], 0.0
    while len(rates) < min_passes or spent < min_seconds:
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        rates.append(items / elapsed)
        spent += elapsed
    return max(rates)


def measure(bundle: Path, survey: Path, backend: str, batch: int, csv_path: Path) -> dict[str, object]:
    """Decode-only, model-only and triage images/s of ``bundle`` on the files under ``survey``.

    Each is the best of a few passes over the same files (:func:`best_rate`); the files are
    read once first, so all three read them from the page cache alike.
    """
    rel = list_images(survey)[0]
    jobs = [(survey / r, r) for r in rel]
    for path, _ in jobs:
        path.read_bytes()
    workers = default_workers()
    with Classifier(bundle, RunnerOptions(backend, spin=False)) as clf:  # as 'flare triage' opens it
        decoder = Decoder(clf.spec, DEFAULT_MAX_PIXELS)
        window = max(batch * PREFETCH_BATCHES, workers)
        decoded: list = []

        def decode_all() -> None:
            decoded[:] = decode_ahead(jobs, decoder, workers, window)
        decode_ips = best_rate(len(jobs), decode_all)
        tensors = [d.tensor for d in decoded if d.tensor is not None]
        chunks = [np.stack(tensors[i:i + batch]) for i in range(0, len(tensors), batch)]
        clf.predict(chunks[0])  # warm-up: first-call allocation is not throughput
        model_ips = best_rate(len(tensors), lambda: [clf.predict(chunk) for chunk in chunks])
        summaries = []

        def triage_once() -> None:
            csv_path.unlink(missing_ok=True)
            summaries.append(triage(survey, clf, csv_path, batch_size=batch, workers=workers))
        best_rate(len(jobs), triage_once)
        runs_on = clf.backend
    csv_path.unlink(missing_ok=True)
    # triage's own figure times its decode-and-predict loop, not the listing and CSV opening
    triage_ips = max(s.images_per_second for s in summaries)
    on_gpu = runs_on in GPU_RUNNERS
    limit = bound(model_ips, decode_ips, on_gpu)
    return {"bundle": str(bundle), "runs_on": runs_on, "images": len(jobs), "batch": batch, "workers": workers,
            "passes": len(summaries), "decode_images_per_second": decode_ips, "model_images_per_second": model_ips,
            "triage_images_per_second": triage_ips, "bound_images_per_second": limit,
            "bound_rule": "min(model, decode) (GPU)" if on_gpu else "1/(1/model + 1/decode) (CPU, shared cores)",
            "share_of_bound": triage_ips / limit, "errors": summaries[-1].errors}
