"""``flare bench`` for super-resolution: megapixels per second of tiled enhancement.

The runtime (:class:`~flare.runtime.tasks.enhance.Enhancer`: numpy tiling and blending around ONNX
Runtime or OpenVINO, ``batch`` tiles per call) and PyTorch (``sr_tiled``: the same tiles,
placed and blended by the same :mod:`flare.runtime.core.tiling`, one per call) enhance the same
synthetic sky image. Figures are input megapixels per second of the whole tiled run, from
the median of the timed runs; the speed-up is against PyTorch fp32 on the same device. The
runtime output's PSNR against PyTorch's shows both computed the same picture.

A SwinIR configuration name (``tiny_x4``, ``realsr_l_x4``, ...) is measured with seeded
random weights (speed does not depend on them), a ``train-sr`` RUN with its weights; both
are exported to fp32 and fp16 bundles under ``OUT/bundles`` (reused on a re-run). An
enhance bundle is measured as it is, PyTorch from its source checkpoint when that is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flare.benchmarks.common import cpu_speedup_headline, markdown_footer
from flare.benchmarks.memory import peak_rss_mib, reset_peak_rss
from flare.benchmarks.stats import summarize, time_calls
from flare.runtime.core.artifact import sha256
from flare.runtime.core.manifest import Manifest
from flare.runtime.foundation.errors import FlareError
from flare.runtime.foundation.progress import log

#: Backends an SR row can run on; others of ``flare bench`` are listed as skipped.
SR_BACKENDS = ("torch", "cpu", "cuda", "tensorrt", "openvino")
#: The paper's figure for tiled enhancement: runtime fp32 over PyTorch fp32 on a CPU.
CPU_TARGET = 1.3


@dataclass
class SRSource:
    what: str
    checkpoint: Path | None
    bundles: dict[str, Path]


def _resolve(bundle_or_name: str, out: Path, precisions: list[str]) -> SRSource:
    path = Path(bundle_or_name)
    if (path / Manifest.FILE).is_file():
        manifest = Manifest.load(path)
        ckpt = manifest.source.get("run") or manifest.source.get("checkpoint")
        return SRSource(f"bundle {path}", Path(ckpt) if ckpt and Path(ckpt).exists() else None,
                        {manifest.precision: path})
    if path.is_dir():
        checkpoint, what = path, f"train-sr run {path}"
    else:
        import torch

        from flare.training.sr.swinir import CONFIGS, SwinIR

        checkpoint = out / "source" / f"swinir_{bundle_or_name}.pth"
        if not checkpoint.is_file():
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.manual_seed(0)
            torch.save({"params_ema": SwinIR.from_config(CONFIGS[bundle_or_name]).state_dict()}, checkpoint)
        what = f"SwinIR {bundle_or_name} (seeded random weights)"
    from flare.export.sr import export_sr

    digest = sha256(checkpoint) if checkpoint.is_file() else None
    bundles = {}
    for precision in precisions:
        target = out / "bundles" / f"sr-{precision}"
        if (target / Manifest.FILE).is_file():
            kept = Manifest.load(target).source.get("sha256")
            if digest is None or kept == digest:
                bundles[precision] = target
                continue
        log(f"exporting {what} at {precision} into {target}")
        bundles[precision] = export_sr(checkpoint, target, precision=precision, allow_parity_failure=True)[0]
    return SRSource(what, checkpoint, bundles)


def _sky(side: int) -> np.ndarray:
    from flare.training.data.synth import render

    return render("galaxy", np.random.default_rng(0), max(side, 64))[:side, :side]


def _row(backend: str, precision: str, batch: int, latencies: list[float], first: float, megapixels: float,
         **extra: Any) -> dict[str, Any]:
    stats = summarize(latencies, 1)  # one call enhances one image, whatever the tiles per call
    return {"backend": backend, "precision": precision, **stats.to_dict(), "batch": batch,
            "megapixels_per_second": megapixels / (stats.p50_ms / 1e3), "first_call_ms": first * 1e3,
            "peak_rss_mib": peak_rss_mib(), **extra}


def run_sr_bench(bundle_or_name: str, out: Path, *, backends: list[str], precisions: list[str],
                 batches: list[int], iterations: int, warmup: int, max_seconds: float,
                 side: int | None, tile: int | None) -> dict[str, Any]:
    """Measure every backend x precision x batch; returns the results written to bench.json.

    ``tile`` defaults to the bundle's recommendation, ``side`` (the test image) to two tiles,
    so that tiling, batching and blending are all part of the figure.
    """
    skipped: list[dict[str, str]] = []
    wanted = [p for p in precisions if p in ("fp32", "fp16")]
    skipped += [{"target": f"{p}", "reason": "super-resolution bundles are fp32 or fp16"}
                for p in precisions if p not in wanted]
    source = _resolve(bundle_or_name, out, wanted)
    spec = Manifest.load(next(iter(source.bundles.values()))).preprocessing
    window = int(spec["window"])
    tile = tile or int(spec["tile"])
    overlap = min(int(spec["overlap"]), max(tile - window, 0))
    side = side or 2 * tile
    image = _sky(side)
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for backend in backends:
        if backend not in SR_BACKENDS:
            skipped.append({"target": backend, "reason": "not a super-resolution backend"})
            continue
        for precision, bundle in source.bundles.items():
            if backend == "torch":
                row, output = _torch_row(source, precision, image, tile, overlap, iterations, warmup,
                                         max_seconds, skipped)
                if row:
                    rows.append(row)
                reference = output if output is not None else reference
                continue
            for batch in batches:
                row = _runtime_row(bundle, backend, precision, batch, image, tile, overlap, iterations, warmup,
                                   max_seconds, skipped, reference)
                if row:
                    rows.append(row)
    for row in rows:
        base = next((r for r in rows if r["backend"] == "torch" and r["precision"] == "fp32"
                     and r["device"] == row.get("device")), None)
        row["speedup_vs_torch_fp32"] = row["megapixels_per_second"] / base["megapixels_per_second"] if base else None
    return {"task": "enhance", "source": source.what, "image": f"{side}x{side} synthetic sky",
            "tile": tile, "overlap": overlap, "scale": int(spec["scale"]), "rows": rows, "skipped": skipped,
            "headlines": cpu_speedup_headline(rows, "runtime fp32 / PyTorch fp32, CPU, tiled MP/s", CPU_TARGET)}


def _torch_row(source: SRSource, precision: str, image: np.ndarray, tile: int, overlap: int, iterations: int,
               warmup: int, max_seconds: float, skipped: list[dict[str, str]]) -> tuple[dict | None, np.ndarray | None]:
    target = f"torch {precision}"
    try:
        import torch

        from flare.training.sr.tiling import sr_tiled
        from flare.training.sr.train import load_sr
    except ImportError:
        skipped.append({"target": target, "reason": "torch is not installed (the 'train' extra)"})
        return None, None
    if source.checkpoint is None:
        skipped.append({"target": target, "reason": "the bundle's source checkpoint is not on this machine"})
        return None, None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision == "fp16" and device == "cpu":
        skipped.append({"target": target, "reason": "PyTorch has no fast fp16 on CPU"})
        return None, None
    model, config, _ = load_sr(source.checkpoint)
    model = model.to(device)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255.0)
    if precision == "fp16":
        model, x = model.half(), x.half()
    sync = torch.cuda.synchronize if device == "cuda" else None
    reset_peak_rss()
    latencies, first = time_calls(lambda: sr_tiled(model, x, config.scale, tile, overlap, device=device),
                                  warmup, iterations, sync, max_seconds)
    output = sr_tiled(model, x, config.scale, tile, overlap, device=device)[0].float().numpy()
    log(f"torch {precision} on {device}: {x.shape[-1] * x.shape[-2] / 1e6 / np.median(latencies):.4f} MP/s")
    return _row("torch", precision, 1, latencies, first, x.shape[-1] * x.shape[-2] / 1e6, device=device), \
        (output if precision == "fp32" else None)


def _runtime_row(bundle: Path, backend: str, precision: str, batch: int, image: np.ndarray, tile: int,
                 overlap: int, iterations: int, warmup: int, max_seconds: float, skipped: list[dict[str, str]],
                 reference: np.ndarray | None) -> dict[str, Any] | None:
    from flare.runtime.core.backends.options import RunnerOptions
    from flare.runtime.tasks.enhance import ArraySource, Enhancer

    target = f"{backend} {precision} batch {batch}"
    try:
        enhancer = Enhancer(bundle, RunnerOptions(backend), tile=tile, overlap=overlap, batch=batch)
    except (FlareError, ImportError) as exc:
        skipped.append({"target": target, "reason": str(exc).split(";")[0]})
        return None
    with enhancer:
        source = ArraySource(image, enhancer.spec.channels)
        reset_peak_rss()
        latencies, first = time_calls(lambda: enhancer.run(source, lambda first_row, rows: None), warmup,
                                      iterations, None, max_seconds)
        psnr = None
        if reference is not None:
            from flare.export.parity import psnr_db

            out = np.empty_like(reference)

            def keep(first_row: int, rows: np.ndarray) -> None:
                out[:, first_row:first_row + rows.shape[1]] = rows

            enhancer.run(source, keep)
            psnr = min(psnr_db(np.clip(reference, 0, 1), np.clip(out, 0, 1)), 200.0)
        device = "cuda" if backend in ("cuda", "tensorrt") or "CUDA" in enhancer.backend else "cpu"
        row = _row(enhancer.backend, precision, batch, latencies, first, image.shape[0] * image.shape[1] / 1e6,
                   device=device, psnr_vs_torch_db=psnr)
    log(f"{target} on {row['backend']}: {row['megapixels_per_second']:.4f} MP/s")
    return row


def markdown(results: dict[str, Any], command: str, machine: dict[str, Any]) -> str:
    """bench.md for an SR run."""
    lines = [f"# flare bench: {results['source']}", "", f"`{command}`", "",
             f"Tiled x{results['scale']} enhancement of a {results['image']} image, tiles of {results['tile']} px "
             f"overlapping by {results['overlap']}. MP/s: input megapixels per second (median run).", "",
             "| backend | precision | tiles per call | MP/s | p50 ms | p90 ms | first ms | peak RSS MiB "
             "| vs PyTorch fp32 | PSNR vs PyTorch dB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        speed = f"{r['speedup_vs_torch_fp32']:.2f}x" if r.get("speedup_vs_torch_fp32") else "-"
        psnr = f"{r['psnr_vs_torch_db']:.1f}" if r.get("psnr_vs_torch_db") is not None else "-"
        lines.append(f"| {r['backend']} | {r['precision']} | {r['batch']} | {r['megapixels_per_second']:.4f} | "
                     f"{r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['first_call_ms']:.0f} | {r['peak_rss_mib']:.0f} | "
                     f"{speed} | {psnr} |")
    lines += markdown_footer(results, machine)
    return "\n".join(lines) + "\n"
