"""What every benchmark records beside its numbers: the machine and the library versions."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from flare.export.bundle import library_versions

#: Libraries whose versions change the figures; recorded with every result.
LIBRARIES = ("flare-edge", "numpy", "torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxruntime-gpu",
             "openvino", "tensorrt", "pillow")


def machine() -> dict[str, Any]:
    """CPU, core count, memory, GPU and driver (nvidia-smi), and the library versions."""
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 1024**2, 1)
    except OSError:
        info["cpu"] = platform.processor()
    info.update(_gpu())
    versions = library_versions(LIBRARIES)
    info["versions"] = versions
    if "torch" in versions:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    return info


def _gpu() -> dict[str, Any]:
    """The first NVIDIA GPU's name, memory and driver, from nvidia-smi; empty without one."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        line = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return {}
    name, memory, driver = (part.strip() for part in line.split(",")[:3])
    return {"gpu": name, "gpu_memory": memory, "gpu_driver": driver}


def write_results(out: Path, name: str, results: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """``<out>/<name>.json`` (results + machine) and ``<out>/<name>.md`` (the table + machine line)."""
    out.mkdir(parents=True, exist_ok=True)
    m = machine()
    js = out / f"{name}.json"
    js.write_text(json.dumps({"machine": m, **results}, indent=2) + "\n")
    md = out / f"{name}.md"
    md.write_text(markdown.rstrip() + f"\n\nMachine: {m.get('cpu')}, {m['cpus']} cores"
                  + (f", GPU {m['gpu']}" if "gpu" in m else ", no GPU") + f"; {m['platform']}; {m['date']}.\n")
    return js, md


def class_recalls(cm: np.ndarray, classes: list[str]) -> dict[str, dict[str, Any]]:
    """Per class (a row of confusion matrix ``cm``, true x predicted): its images, recall and what
    the others were taken for. Classes without images are left out."""
    out = {}
    for i, name in enumerate(classes):
        row = cm[i]
        if not row.sum():
            continue
        out[name] = {"images": int(row.sum()), "recall": float(row[i] / row.sum()),
                     "taken_for": {classes[j]: int(n) for j, n in enumerate(row) if n and j != i}}
    return out


def grouped_split(data: Path, seed: int) -> tuple[Path, list[dict[str, str]]]:
    """The images of ``data`` (an ImageFolder, or a folder with ``hr/`` in it, as ``flare data``
    writes) and their grouped split drawn with ``seed``: the image root and the split's rows."""
    from flare.training.data.folders import scan_image_folder
    from flare.training.data.splits import split_groups

    root = data / "hr" if (data / "hr").is_dir() else data
    samples, _ = scan_image_folder(root)
    return root, split_groups(samples, seed=seed)


def cpu_speedup_headline(rows: list[dict[str, Any]], metric: str, target: float) -> list[dict[str, Any]]:
    """The best runtime fp32 row's speed-up over PyTorch fp32 on the CPU, against ``target``
    (the SR and generation benches' headline); empty when there is nothing to compare."""
    cpu = [r for r in rows if r["device"] == "cpu" and r["precision"] == "fp32" and r["backend"] != "torch"
           and r.get("speedup_vs_torch_fp32")]
    if not cpu:
        return []
    best = max(cpu, key=lambda r: r["speedup_vs_torch_fp32"])
    return [{"metric": metric, "value": best["speedup_vs_torch_fp32"], "target": target,
             "met": best["speedup_vs_torch_fp32"] >= target, "at": f"{best['backend']} batch {best['batch']}"}]


def markdown_footer(results: dict[str, Any], host: dict[str, Any]) -> list[str]:
    """Headlines, skipped targets and the machine, as the last lines of a bench.md."""
    import time

    lines = []
    for h in results["headlines"]:
        lines += ["", f"**{h['metric']}**: {h['value']:.2f}x at {h['at']} (target {h['target']}x: "
                  f"{'met' if h['met'] else 'missed'})"]
    if results["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{s['target']} ({s['reason']})" for s in results["skipped"])]
    lines += ["", f"Machine: {host.get('cpu')}, {host.get('cpus')} cores"
              + (f", GPU {host['gpu']}" if "gpu" in host else ", no GPU") + f"; {host.get('platform')}; "
              f"{time.strftime('%Y-%m-%d')}."]
    return lines
