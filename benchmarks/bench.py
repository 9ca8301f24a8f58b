"""``flare bench``: every backend x precision x variant x batch of one model, side by side.

For each target (:mod:`flare.benchmarks.targets`) that runs here: predictions on the
evaluation images (top-1 agreement with the fp32 reference, accuracy where labels are
known), then for each batch a warm-up and timed calls (:mod:`flare.benchmarks.stats`),
the peak memory of that row, and the FLOPs of the bundle's graph against a GEMM peak of the
same library (:mod:`flare.benchmarks.flops`, :mod:`flare.benchmarks.peak`). Then triage end
to end (:mod:`flare.benchmarks.endtoend`) and the headline ratios. Targets run one after the
other in this process, so they never compete for the cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flare.benchmarks import endtoend
from flare.benchmarks.flops import count_flops
from flare.benchmarks.memory import gpu_memory_mib, peak_rss_mib, reset_peak_rss
from flare.benchmarks.source import BenchSource
from flare.benchmarks.stats import summarize, time_calls
from flare.benchmarks.targets import LIBRARY, Session, Skip, Target, open_session
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.preprocess import normalize
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.progress import log

#: GEMM sizes for the peak: large enough to reach a library's best rate (2048 stayed below
#: what ONNX Runtime's convolutions reach on a 2-core EPYC), small enough to take about a
#: second on a CPU and milliseconds on a GPU.
GEMM_N = {"cpu": 4096, "cuda": 8192}


@dataclass(frozen=True)
class Settings:
    """What the user asked for; recorded in bench.json."""

    backends: list[str]
    precisions: list[str]
    variants: list[str]
    batches: list[int]
    iterations: int
    warmup: int
    max_seconds: float
    triage_backend: str
    triage_batch: int = 32
    explicit_backends: bool = False


def plan(source: BenchSource, settings: Settings) -> list[Target]:
    """The targets in report order: torch first (the baseline), then the runtime's backends."""
    targets = []
    for backend in settings.backends:
        for precision in settings.precisions:
            for variant in settings.variants:
                if backend.startswith("torch") and variant == "fused" and "plain" in settings.variants:
                    continue  # torch runs the source model; one row per precision
                targets.append(Target(backend, precision, variant))
    return targets


def run(source: BenchSource, settings: Settings, survey_csv: Path) -> dict[str, Any]:
    """Measure every target and the end-to-end triage; returns everything bench.json holds."""
    targets = plan(source, settings)
    flops = {key: count_flops(bundle / "model.onnx") for key, bundle in source.bundles.items()}
    reference_flops = next(iter(flops.values()))
    peaks: dict[str, float | None] = {}
    results, predictions = [], {}
    for i, target in enumerate(targets, 1):
        log(f"[{i}/{len(targets)}] {target.label}")
        result, predicted = _measure_target(target, source, settings, flops, peaks)
        results.append(result)
        if predicted is not None:
            predictions[target] = predicted
    _agreement(results, predictions, source)
    e2e = []
    for (precision, variant), bundle in source.bundles.items():
        log(f"end to end: triage of {source.survey} with the {precision} {variant} bundle")
        figures = endtoend.measure(bundle, source.survey, settings.triage_backend, settings.triage_batch, survey_csv)
        e2e.append({"precision": precision, "variant": variant, **figures})
        log(f"  decode {figures['decode_images_per_second']:.1f}/s, model {figures['model_images_per_second']:.1f}/s, "
            f"triage {figures['triage_images_per_second']:.1f}/s = {figures['share_of_bound']:.0%} of the bound")
    return {"model": {"what": source.what, "architecture": source.architecture, "input_size": source.spec.size,
                      "classes": len(source.classes), "notes": source.notes,
                      "flops_per_image": reference_flops.to_dict(),
                      "bundles": {f"{p} {v}": {"path": str(b), "parity": _parity(b)}
                                  for (p, v), b in source.bundles.items()}},
            "evaluation": {"images": len(source.eval.images), "where": source.eval.where,
                           "labelled": source.eval.labels is not None},
            "peaks_gflop_per_s": peaks, "targets": results, "end_to_end": e2e}


def _parity(bundle: Path) -> str:
    """The export's parity verdict, as its manifest records it."""
    parity = Manifest.load(bundle, verify=False).parity
    top1 = parity.get("top1_agreement")
    return (f"{'PASS' if parity.get('passed') else 'FAIL'}: max rel {parity.get('max_rel_diff', float('nan')):.1e}"
            + (f", top-1 agreement {top1:.3f}" if top1 is not None else "") + f" on {parity.get('samples')} images")


def _measure_target(target: Target, source: BenchSource, settings: Settings, flops: dict,
                    peaks: dict[str, float | None]) -> tuple[dict[str, Any], np.ndarray | None]:
    result: dict[str, Any] = {"label": target.label, "backend": target.backend, "precision": target.precision,
                              "variant": target.variant, "library": LIBRARY[target.backend], "rows": []}
    try:
        session, open_s = open_session(target, source.bundles.get((target.precision, target.variant)),
                                       source.torch_model, source.torch_note)
    except Skip as exc:
        log(f"  skipped: {exc}")
        return {**result, "status": "skipped", "reason": str(exc)}, None
    try:
        result.update(status="ok", runs_on=session.name, device=session.device, open_s=open_s, notes=session.notes)
        too_big = [b for b in settings.batches if session.max_batch is not None and b > session.max_batch]
        if too_big and settings.explicit_backends:
            raise UsageError(f"{target.label} takes batches up to {session.max_batch}, not {too_big[0]}: "
                             f"lower --batch or rebuild the engine with a larger batch")
        predicted = _predict(session, source)
        key = f"{LIBRARY[target.backend]} {session.device} {target.precision}"
        if key not in peaks:
            peaks[key] = _peak(session, target)
        graph = flops.get((target.precision, target.variant)) or flops.get((target.precision, "plain")) \
            or next(iter(flops.values()))
        result["gflops_per_image"] = graph.flops / 1e9
        for batch in settings.batches:
            if batch in too_big:
                result["rows"].append({"batch": batch, "status": "skipped",
                                       "reason": f"over this engine's batch limit of {session.max_batch}"})
                continue
            row = _time_batch(session, source, settings, batch)
            row["gflop_per_s"] = row["images_per_second"] * graph.flops / 1e9
            peak = peaks[key]
            row["share_of_peak"] = row["gflop_per_s"] / peak if peak else None
            result["rows"].append(row)
            log(f"  batch {batch}: p50 {row['p50_ms']:.2f} ms, {row['images_per_second']:.1f} images/s, "
                f"{row['gflop_per_s']:.1f} GFLOP/s" + (f" ({row['share_of_peak']:.0%} of peak)" if peak else ""))
        return result, predicted
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. torch.compile failing to compile: a skip with its reason
        reason = f"failed while running: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        log(f"  skipped: {reason}")
        return {**result, "status": "skipped", "reason": reason, "rows": []}, None
    finally:
        session.close()


def _inputs(session: Session, images: np.ndarray, source: BenchSource) -> np.ndarray:
    """The batch as this session takes it: uint8 NHWC (fused) or normalised float NCHW."""
    if session.uint8:
        return images
    return np.stack([normalize(image, source.spec) for image in images])


def _predict(session: Session, source: BenchSource) -> np.ndarray:
    return session.predict(_inputs(session, source.eval.images, source)).argmax(axis=1)


def _peak(session: Session, target: Target) -> float | None:
    log(f"  measuring the {LIBRARY[target.backend]} {target.precision} GEMM peak on {session.device}")
    try:
        return session.gemm_peak(GEMM_N.get(session.device, 2048))
    except Exception as exc:  # noqa: BLE001 - a library without a GEMM kernel at this precision: no peak
        log(f"  no GEMM peak: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        return None


def _time_batch(session: Session, source: BenchSource, settings: Settings, batch: int) -> dict[str, Any]:
    images = source.eval.images[np.arange(batch) % len(source.eval.images)]
    call = session.bind(_inputs(session, images, source))
    exact = reset_peak_rss()
    started = time.perf_counter()
    latencies, first = time_calls(call, settings.warmup, settings.iterations, sync=session.sync,
                                  budget_s=settings.max_seconds)
    row: dict[str, Any] = {"batch": batch, "status": "ok", **summarize(latencies, batch).to_dict(),
                           "first_call_s": first, "wall_s": time.perf_counter() - started,
                           "peak_rss_mib": peak_rss_mib(),
                           "peak_rss_scope": "this row" if exact else "process since start"}
    if session.device == "cuda":
        row["gpu_memory_mib"] = gpu_memory_mib()
    return row


def _agreement(results: list[dict[str, Any]], predictions: dict[Target, np.ndarray], source: BenchSource) -> None:
    """Top-1 agreement of every target with the fp32 reference, and accuracy where labelled.

    The reference is torch fp32 (the source model itself) when it ran, else the fp32 bundle
    on ONNX Runtime's CPU provider, else any fp32 target.
    """
    order = [Target("torch", "fp32"), Target("cpu", "fp32"), Target("cpu", "fp32", "fused")]
    fp32 = [t for t in predictions if t.precision == "fp32"]
    reference = next((t for t in order if t in predictions), fp32[0] if fp32 else None)
    labels = source.eval.labels
    reference_accuracy = float((predictions[reference] == labels).mean()) \
        if reference is not None and labels is not None else None
    for result in results:
        target = Target(result["backend"], result["precision"], result["variant"])
        if target not in predictions:
            continue
        predicted = predictions[target]
        result["agreement_with"] = reference.label if reference is not None else None
        result["top1_agreement"] = float((predicted == predictions[reference]).mean()) if reference else None
        if labels is not None:
            result["accuracy"] = float((predicted == labels).mean())
            if reference_accuracy is not None:
                result["accuracy_change"] = result["accuracy"] - reference_accuracy

