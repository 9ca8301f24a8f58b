"""The bench report: headline ratios against the targets, a table, bench.md and two charts.

Headline targets (``TARGETS``) are ratios measured in one run on one machine, so they hold
whatever the machine's absolute speed: ONNX Runtime fp32 over torch eager fp32, int8 over
fp32 (with its agreement), triage over its bound, and on a GPU CUDA fp16 over torch fp32
and the best throughput. A headline whose targets did not run is left out, not failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: name -> (threshold, what it means); a headline is "met" at or above its threshold.
TARGETS = {
    "ort_fp32_over_torch": (1.5, "ONNX Runtime fp32 images/s over torch eager fp32 (CPU)"),
    "int8_over_fp32": (2.5, "ONNX Runtime int8 images/s over fp32 (CPU)"),
    "int8_agreement": (0.99, "int8 top-1 agreement with fp32 on held-out images"),
    "triage_share_of_bound": (0.9, "triage images/s over the decode/model bound"),
    "cuda_fp16_over_torch": (3.0, "ONNX Runtime CUDA fp16 images/s over torch eager fp32 on the GPU"),
    "gpu_best_images_per_second": (26_600.0, "best images/s on the GPU (30% of MLPerf v4.0 H100 ResNet-50)"),
}


def _row(targets: list[dict[str, Any]], backend: str, precision: str, batch: int,
         variant: str = "plain") -> dict[str, Any] | None:
    for t in targets:
        if (t["backend"], t["precision"], t["variant"], t["status"]) == (backend, precision, variant, "ok"):
            return next((r for r in t["rows"] if r["batch"] == batch and r["status"] == "ok"), None)
    return None


def _target(targets: list[dict[str, Any]], backend: str, precision: str, variant: str = "plain") -> dict | None:
    return next((t for t in targets if (t["backend"], t["precision"], t["variant"], t["status"])
                 == (backend, precision, variant, "ok")), None)


def headlines(results: dict[str, Any], batches: list[int]) -> list[dict[str, Any]]:
    """Each target ratio this run can compute, with its value and whether it was met."""
    targets, out = results["targets"], []

    def add(name: str, value: float, detail: str) -> None:
        threshold, meaning = TARGETS[name]
        out.append({"name": name, "meaning": meaning, "detail": detail, "value": value, "target": threshold,
                    "met": value >= threshold})

    on_gpu = any(t.get("device") == "cuda" for t in targets if t["status"] == "ok")
    for batch in batches:
        torch_fp32, ort_fp32 = _row(targets, "torch", "fp32", batch), _row(targets, "cpu", "fp32", batch)
        if torch_fp32 and ort_fp32 and _target(targets, "torch", "fp32").get("device") == "cpu":
            add("ort_fp32_over_torch", ort_fp32["images_per_second"] / torch_fp32["images_per_second"],
                f"batch {batch}")
        int8 = _row(targets, "cpu", "int8", batch)
        if int8 and ort_fp32:
            add("int8_over_fp32", int8["images_per_second"] / ort_fp32["images_per_second"], f"batch {batch}")
        if on_gpu and torch_fp32:
            cuda_fp16 = _row(targets, "cuda", "fp16", batch)
            if cuda_fp16:
                add("cuda_fp16_over_torch", cuda_fp16["images_per_second"] / torch_fp32["images_per_second"],
                    f"batch {batch}")
    int8_target = _target(targets, "cpu", "int8")
    if int8_target and int8_target.get("top1_agreement") is not None:
        add("int8_agreement", int8_target["top1_agreement"], f"against {int8_target['agreement_with']}")
    for e2e in results["end_to_end"]:
        add("triage_share_of_bound", e2e["share_of_bound"], f"{e2e['precision']} {e2e['variant']} on {e2e['runs_on']}")
    if on_gpu:
        gpu_rows = [(r["images_per_second"], t["label"], r["batch"]) for t in targets if t.get("device") == "cuda"
                    for r in t["rows"] if r["status"] == "ok"]
        best = max(gpu_rows)
        add("gpu_best_images_per_second", best[0], f"{best[1]} at batch {best[2]}")
    return out


def _fmt(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def table(results: dict[str, Any]) -> str:
    """The side-by-side table (Markdown, also what the terminal shows)."""
    lines = ["| target | runs on | batch | p50 ms | p90 ms | p99 ms | images/s | GFLOP/s | % of peak | peak RSS MiB "
             "| first call s | top-1 agreement | accuracy change |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    skipped = []
    for t in results["targets"]:
        if t["status"] != "ok":
            skipped.append((t["label"], t["reason"]))
            continue
        for r in t["rows"]:
            if r["status"] != "ok":
                skipped.append((f"{t['label']} batch {r['batch']}", r["reason"]))
                continue
            share = r.get("share_of_peak")
            lines.append(
                f"| {t['label']} | {t['runs_on']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['images_per_second']:.1f} | {r['gflop_per_s']:.1f} | "
                f"{_fmt(share and share * 100, '.0f')} | {r['peak_rss_mib']:.0f} | {r['first_call_s']:.2f} | "
                f"{_fmt(t.get('top1_agreement'), '.3f')} | {_fmt(t.get('accuracy_change'), '+.3f')} |")
    if skipped:
        lines += ["", "Not run here:", *_grouped(skipped)]
    return "\n".join(lines)


def _grouped(skipped: list[tuple[str, str]]) -> list[str]:
    """One line per reason, naming every target it applies to (reasons repeat per precision)."""
    by_reason: dict[str, list[str]] = {}
    for label, reason in skipped:
        by_reason.setdefault(reason, []).append(label)
    return [f"- {', '.join(labels)}: {reason}" for reason, labels in by_reason.items()]


def e2e_table(results: dict[str, Any]) -> str:
    lines = ["| bundle | runs on | images | decode /s | model /s | bound /s | triage /s | share of bound |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for e in results["end_to_end"]:
        lines.append(f"| {e['precision']} {e['variant']} | {e['runs_on']} | {e['images']} | "
                     f"{e['decode_images_per_second']:.1f} | {e['model_images_per_second']:.1f} | "
                     f"{e['bound_images_per_second']:.1f} | {e['triage_images_per_second']:.1f} | "
                     f"{e['share_of_bound']:.0%} |")
    return "\n".join(lines)


def headline_table(items: list[dict[str, Any]]) -> str:
    lines = ["| headline | detail | value | target | met |", "|---|---|---:|---:|---|"]
    for h in items:
        value = f"{h['value']:,.0f}" if h["value"] >= 100 else f"{h['value']:.2f}"
        lines.append(f"| {h['meaning']} | {h['detail']} | {value} | {h['target']:g} | {'yes' if h['met'] else 'NO'} |")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """bench.md: what was measured, on what, and every table."""
    m, machine = results["model"], results["machine"]
    gpu = machine.get("gpu") or "no GPU"
    peaks = ", ".join(f"{k} {_fmt(v, '.0f', 'not measured')}" for k, v in results["peaks_gflop_per_s"].items())
    parts = [
        f"# flare bench: {m['what']}",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cpus')} cores, {machine.get('memory_gib')} GiB, {gpu}; "
        f"{machine.get('date')}. Command: `{results['command']}`.",
        "",
        f"Model: {m['architecture']} at {m['input_size']} px, {m['flops_per_image']['gflops']:.2f} GFLOP per image "
        f"(counted from the ONNX graph). Evaluation: {results['evaluation']['images']} images from "
        f"{results['evaluation']['where']}.",
        *[f"Note: {n}" for n in m["notes"]],
        "",
        "Bundles (parity gate against PyTorch at export): " + "; ".join(
            f"{k} {v['parity']}" for k, v in m["bundles"].items()) + ".",
        "",
        f"GEMM peaks (GFLOP/s, same library, device and precision): {peaks or 'none measured'}.",
        "",
        "## Headlines",
        "",
        headline_table(results["headlines"]),
        "",
        "## Every backend",
        "",
        table(results),
        "",
        "## End to end (triage)",
        "",
        e2e_table(results),
    ]
    return "\n".join(parts) + "\n"


def charts(results: dict[str, Any], out: Path) -> list[Path]:
    """latency.png (p50 bars, p90-p99 whiskers) and throughput.png (images/s against batch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [t for t in results["targets"] if t["status"] == "ok" and any(r["status"] == "ok" for r in t["rows"])]
    batches = sorted({r["batch"] for t in ran for r in t["rows"] if r["status"] == "ok"})
    written = []
    fig, axes = plt.subplots(1, max(len(batches), 1), figsize=(5 + 2.2 * len(ran), 5), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        labels, p50, low, high = [], [], [], []
        for t in ran:
            row = next((r for r in t["rows"] if r["batch"] == batch and r["status"] == "ok"), None)
            if row:
                labels.append(t["label"])
                p50.append(row["p50_ms"])
                low.append(row["p90_ms"])
                high.append(row["p99_ms"])
        x = range(len(labels))
        ax.bar(x, p50, color="#4c72b0", label="p50")
        ax.vlines(x, low, high, color="black", linewidth=2, label="p90 to p99")
        ax.set_xticks(list(x), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"batch {batch}")
        ax.set_ylabel("latency per batch (ms)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{results['model']['architecture']}: latency")
    fig.tight_layout()
    written.append(_save(fig, out / "latency.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for t in ran:
        rows = [r for r in t["rows"] if r["status"] == "ok"]
        ax.plot([r["batch"] for r in rows], [r["images_per_second"] for r in rows], marker="o", label=t["label"])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("images / s")
    ax.set_title(f"{results['model']['architecture']}: throughput against batch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out / "throughput.png"))
    plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    """Write a PNG atomically: a later step (a README link) may treat it as done."""
    partial = path.with_name(path.name + ".partial.png")
    fig.savefig(partial, dpi=110)
    partial.replace(path)
    return path
