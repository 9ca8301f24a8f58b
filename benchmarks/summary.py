"""The headline table of several ``flare bench`` results, for a results folder's README.

    python -m flare.benchmarks.summary benchmarks/results/<machine>

Reads every ``<model>/bench.json`` under the folder and writes ``README.md`` there: one row
per model with its headline ratios (each the worst over the batches measured, so a "met" is
met at every batch) and the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flare.benchmarks.report import TARGETS
from flare.runtime.core.tasks import TASKS
from flare.runtime.foundation.atomic import write_text


def summarize(folder: Path) -> str:
    """The Markdown table for the bench.json files under ``folder``."""
    loaded = [(p, json.loads(p.read_text())) for p in sorted(folder.glob("*/bench.json"))]
    if not loaded:
        raise SystemExit(f"no */bench.json under {folder}")
    by_task: dict[str, list[tuple[Path, dict]]] = {name: [] for name in TASKS}
    for path, result in loaded:  # a classifier's bench.json names no task
        by_task[result.get("task", "classify")].append((path, result))
    sr, generate = by_task["enhance"], by_task["generate"]
    paths, results = [p for p, _ in by_task["classify"]], [r for _, r in by_task["classify"]]
    names = [n for n in TARGETS if any(h["name"] == n for r in results for h in r["headlines"])]
    header = ["model", "GFLOP/image", *[f"{TARGETS[n][1]} (target {TARGETS[n][0]:g})" for n in names]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for path, r in zip(paths, results):
        cells = [f"{path.parent.name} ({r['model']['architecture']}, {r['model']['input_size']} px)",
                 f"{r['model']['flops_per_image']['gflops']:.2f}"]
        for n in names:
            values = [h for h in r["headlines"] if h["name"] == n]
            if not values:
                cells.append("-")
                continue
            worst = min(values, key=lambda h: h["value"])
            shown = f"{worst['value']:,.0f}" if worst["value"] >= 100 else f"{worst['value']:.2f}"
            cells.append(f"{shown} {'met' if all(h['met'] for h in values) else 'MISSED'} ({worst['detail']})")
        lines.append("| " + " | ".join(cells) + " |")
    if sr:
        lines += ["", "| super-resolution model | image, tile | best runtime fp32 MP/s | PyTorch fp32 MP/s "
                  "| runtime / PyTorch (target 1.3) |", "|---|---|---|---|---|"]
        for path, r in sr:
            torch_rows = [x for x in r["rows"] if x["backend"] == "torch" and x["precision"] == "fp32"]
            runtime = [x for x in r["rows"] if x["backend"] != "torch" and x["precision"] == "fp32"]
            best = max(runtime, key=lambda x: x["megapixels_per_second"]) if runtime else None
            head = r["headlines"][0] if r["headlines"] else None
            lines.append(f"| {path.parent.name} | {r['image']}, {r['tile']} px | "
                         + (f"{best['megapixels_per_second']:.4f} ({best['backend']})" if best else "-") + " | "
                         + (f"{torch_rows[0]['megapixels_per_second']:.4f}" if torch_rows else "-") + " | "
                         + (f"{head['value']:.2f} {'met' if head['met'] else 'MISSED'}" if head else "-") + " |")
    if generate:
        lines += ["", "| generation model | image, sampler | PyTorch fp32 s/image | best runtime fp32 s/image "
                  "| runtime / PyTorch (target 1.2) |", "|---|---|---|---|---|"]
        for path, r in generate:
            for batch in sorted({x["batch"] for x in r["rows"]}):
                rows = [x for x in r["rows"] if x["batch"] == batch and x["precision"] == "fp32"]
                base = next((x for x in rows if x["backend"] == "torch"), None)
                best = min((x for x in rows if x["backend"] != "torch"), key=lambda x: x["seconds_per_image"],
                           default=None)
                ratio = base["seconds_per_image"] / best["seconds_per_image"] if base and best else None
                lines.append(f"| {path.parent.name} ({batch} per call) | {r['image']}, {r['steps']} steps of "
                             f"{r['sampler']} | " + (f"{base['seconds_per_image']:.3f}" if base else "-") + " | "
                             + (f"{best['seconds_per_image']:.3f} ({best['backend']})" if best else "-") + " | "
                             + (f"{ratio:.2f} {'met' if ratio >= 1.2 else 'MISSED'}" if ratio else "-") + " |")
    m = (results or [r for _, r in sr + generate])[0]["machine"]
    machine = (f"{m.get('cpu')}, {m.get('cpus')} cores, {m.get('memory_gib')} GiB, {m.get('gpu') or 'no GPU'}"
               + (f" (driver {m['gpu_driver']})" if m.get("gpu_driver") else ""))
    return (f"# flare bench results: {machine}\n\nEach cell is the worst value over the batches measured. "
            f"Per-model details, every backend row and charts: `<model>/bench.md`, `<model>/*.png`.\n\n"
            + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args().folder
    write_text(folder / "README.md", summarize(folder))
    print((folder / "README.md").read_text())


if __name__ == "__main__":
    main()
