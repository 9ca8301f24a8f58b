"""``flare bench`` for generation: seconds per image at N sampler steps.

The runtime (:class:`~flare.runtime.tasks.generate.Generator`: numpy DPM-Solver++ around ONNX
Runtime or OpenVINO, guidance batched into one UNet call per step) and the PyTorch pipeline
(:meth:`~flare.training.diffusion.model.LatentDiffusion.generate`: diffusers' UNet, VAE and
scheduler) make the same images from the same weights and seeds. Figures are seconds per
image from the median call (``batch`` images per call), and the speed-up is against PyTorch
fp32 on the same device. The runtime images' largest difference from PyTorch's (8-bit
levels) shows both computed the same pictures.

Sources: a generate bundle (measured as it is, PyTorch from its source when that is here), a
``train-diffusion`` RUN or pipeline folder (exported fp32 and fp16 under ``OUT/bundles``), or
``diffusion-tiny`` / ``diffusion-paper``: the demo-size and the paper-size (Stable Diffusion
sized) configurations with seeded random weights, which do not change the speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flare.benchmarks.common import cpu_speedup_headline, markdown_footer
from flare.benchmarks.memory import peak_rss_mib, reset_peak_rss
from flare.benchmarks.stats import time_calls
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.runs import DiffusionRun
from flare.runtime.foundation.errors import FlareError
from flare.runtime.foundation.progress import log

#: Backends a generation row can run on; others of ``flare bench`` are listed as skipped.
GENERATE_BACKENDS = ("torch", "cpu", "cuda", "tensorrt", "openvino")
#: Named configurations measured with random weights.
NAMED = {"diffusion-tiny": "tiny", "diffusion-paper": "paper"}
#: The issue's figure: runtime fp32 over PyTorch fp32 on a CPU, seconds per image.
CPU_TARGET = 1.2
CLASSES = ["galaxy", "nebula", "star", "comet"]


@dataclass
class GenerateSource:
    what: str
    model_path: Path | None
    bundles: dict[str, Path]


def _random_run(name: str, folder: Path) -> Path:
    """A RUN folder of the named configuration with seeded random weights (made once)."""
    if (folder / DiffusionRun.FILE).is_file():
        return folder
    import torch

    from flare.runtime.core.runs import DiffusionTraining
    from flare.training.diffusion.model import build_model, get_config, save_model

    config = get_config(NAMED[name])
    torch.manual_seed(0)
    model = build_model(config, CLASSES)
    save_model(model, folder)
    DiffusionRun(train=DiffusionTraining(data="", config=config.name), conditioner=model.cond.describe(),
                 image_mode="channels", image_cond_cells=config.image_cond_cells, vae_epochs=0).save(folder)
    return folder


def _resolve(bundle_or_name: str, out: Path, precisions: list[str]) -> GenerateSource:
    path = Path(bundle_or_name)
    if (path / Manifest.FILE).is_file():
        manifest = Manifest.load(path)
        src = manifest.source.get("checkpoint")
        return GenerateSource(f"bundle {path}", Path(src) if src and Path(src).exists() else None,
                              {manifest.precision: path})
    if path.is_dir():
        model_path, what = path, f"diffusion model {path}"
    else:
        model_path = _random_run(bundle_or_name, out / "source" / bundle_or_name)
        what = f"{bundle_or_name} (seeded random weights)"
    from flare.export.diffusion import export_diffusion

    bundles = {}
    for precision in precisions:
        target = out / "bundles" / f"generate-{precision}"
        if not (target / Manifest.FILE).is_file():
            log(f"exporting {what} at {precision} into {target}")
            export_diffusion(model_path, target, precision=precision, allow_parity_failure=True)
        bundles[precision] = target
    return GenerateSource(what, model_path, bundles)


def run_generate_bench(bundle_or_name: str, out: Path, *, backends: list[str], precisions: list[str],
                       batches: list[int], iterations: int, warmup: int, max_seconds: float,
                       steps: int) -> dict[str, Any]:
    """Measure every backend x precision x batch; returns the results written to bench.json."""
    skipped: list[dict[str, str]] = []
    wanted = [p for p in precisions if p in ("fp32", "fp16")]
    skipped += [{"target": p, "reason": "generate bundles are fp32 or fp16"} for p in precisions if p not in wanted]
    source = _resolve(bundle_or_name, out, wanted)
    spec = Manifest.load(next(iter(source.bundles.values()))).preprocessing
    rows: list[dict[str, Any]] = []
    references: dict[int, np.ndarray] = {}
    for backend in backends:
        if backend not in GENERATE_BACKENDS:
            skipped.append({"target": backend, "reason": "not a generation backend"})
            continue
        for precision, bundle in source.bundles.items():
            for batch in batches:
                if backend == "torch":
                    row = _torch_row(source, precision, batch, steps, iterations, warmup, max_seconds, skipped,
                                     references)
                else:
                    row = _runtime_row(bundle, backend, precision, batch, steps, iterations, warmup, max_seconds,
                                       skipped, references.get(batch))
                if row:
                    rows.append(row)
    for row in rows:
        base = next((r for r in rows if r["backend"] == "torch" and r["precision"] == "fp32"
                     and r["device"] == row["device"] and r["batch"] == row["batch"]), None)
        row["speedup_vs_torch_fp32"] = base["seconds_per_image"] / row["seconds_per_image"] if base else None
    return {"task": "generate", "source": source.what, "steps": steps, "sampler": "dpmpp order 3, guidance 8",
            "image": f"{spec['image_size']} px from {spec['latent_channels']}x{spec['latent_size']}x"
                     f"{spec['latent_size']} latents", "rows": rows, "skipped": skipped,
            "headlines": cpu_speedup_headline(rows, "runtime fp32 / PyTorch fp32, CPU, s per image", CPU_TARGET)}


def _row(backend: str, precision: str, batch: int, latencies: list[float], first: float, **extra: Any) -> dict[str, Any]:
    p50 = float(np.median(latencies))
    return {"backend": backend, "precision": precision, "batch": batch, "calls": len(latencies),
            "seconds_per_image": p50 / batch, "p50_call_s": p50, "p90_call_s": float(np.percentile(latencies, 90)),
            "first_call_s": first, "peak_rss_mib": peak_rss_mib(), **extra}


def _seeds(batch: int) -> tuple[list[str], list[int]]:
    return [CLASSES[i % len(CLASSES)] for i in range(batch)], list(range(batch))


def _torch_row(source: GenerateSource, precision: str, batch: int, steps: int, iterations: int, warmup: int,
               max_seconds: float, skipped: list[dict[str, str]], references: dict[int, np.ndarray]) -> dict | None:
    target = f"torch {precision} batch {batch}"
    try:
        import torch

        from flare.training.diffusion.model import load_diffusion
    except ImportError:
        skipped.append({"target": target, "reason": "torch is not installed (the 'train' extra)"})
        return None
    if source.model_path is None:
        skipped.append({"target": target, "reason": "the bundle's source model is not on this machine"})
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision == "fp16" and device == "cpu":
        skipped.append({"target": target, "reason": "PyTorch has no fast fp16 on CPU"})
        return None
    model = load_diffusion(source.model_path, device)
    if precision == "fp16":
        model = model.half()
    names, seeds = _seeds(batch)
    sync = torch.cuda.synchronize if device == "cuda" else None
    last: dict[str, np.ndarray] = {}

    def call() -> None:
        last["images"] = model.generate(names, seeds, steps=steps)

    reset_peak_rss()
    latencies, first = time_calls(call, warmup, iterations, sync, max_seconds)
    if precision == "fp32":
        references[batch] = last["images"]  # the seeds are fixed: every call makes the same images
    row = _row("torch", precision, batch, latencies, first, device=device)
    log(f"{target} on {device}: {row['seconds_per_image']:.2f} s per image")
    return row


def _runtime_row(bundle: Path, backend: str, precision: str, batch: int, steps: int, iterations: int, warmup: int,
                 max_seconds: float, skipped: list[dict[str, str]], reference: np.ndarray | None) -> dict | None:
    from flare.runtime.core.backends.options import RunnerOptions
    from flare.runtime.tasks.generate import Generator

    target = f"{backend} {precision} batch {batch}"
    names, seeds = _seeds(batch)
    try:
        generator = Generator(bundle, RunnerOptions(backend), batch=batch)
        name = generator.backend
    except (FlareError, ImportError) as exc:
        skipped.append({"target": target, "reason": str(exc).split(";")[0]})
        return None
    last: dict[str, np.ndarray] = {}

    def call() -> None:
        last["images"] = generator.generate(names, seeds, steps=steps)

    with generator:
        reset_peak_rss()
        latencies, first = time_calls(call, warmup, iterations, None, max_seconds)
    diff = None if reference is None else int(np.abs(last["images"].astype(int) - reference).max())
    device = "cuda" if backend in ("cuda", "tensorrt") or "CUDA" in name else "cpu"
    row = _row(name, precision, batch, latencies, first, device=device, max_levels_vs_torch=diff)
    log(f"{target} on {name}: {row['seconds_per_image']:.2f} s per image")
    return row


def markdown(results: dict[str, Any], command: str, machine: dict[str, Any]) -> str:
    """bench.md for a generation run."""
    lines = [f"# flare bench: {results['source']}", "", f"`{command}`", "",
             f"{results['image']}, {results['steps']} steps of {results['sampler']} (one UNet call per step at "
             "twice the batch). s/image: median call time over the images per call.", "",
             "| backend | precision | images per call | s/image | p50 call s | p90 call s | first call s | "
             "peak RSS MiB | vs PyTorch fp32 | max diff vs PyTorch (8-bit levels) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        speed = f"{r['speedup_vs_torch_fp32']:.2f}x" if r.get("speedup_vs_torch_fp32") else "-"
        diff = "-" if r.get("max_levels_vs_torch") is None else str(r["max_levels_vs_torch"])
        lines.append(f"| {r['backend']} | {r['precision']} | {r['batch']} | {r['seconds_per_image']:.3f} | "
                     f"{r['p50_call_s']:.3f} | {r['p90_call_s']:.3f} | {r['first_call_s']:.3f} | "
                     f"{r['peak_rss_mib']:.0f} | {speed} | {diff} |")
    lines += markdown_footer(results, machine)
    return "\n".join(lines) + "\n"
