"""What every benchmark records beside its numbers: the machine and the library versions."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU, core count, memory, GPU (when torch sees one) and the versions that matter."""
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
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


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
