"""The side-by-side table ``flare distill`` ends with, kept in the RUN as distill.json and distill.md.

Both models are scored on the test split of the student's run: accuracy, macro-F1, per-class
accuracy (recall), and the student's top-1 agreement with the teacher. The teacher's
predictions are its cached logits, so a bundle teacher is scored as it ran. Parameters are
the torch model's (a bundle teacher's: the elements of its graph's initialisers).

Cost: unless ``--no-bench``, each torch model is exported to fp32 and int8 bundles
(in a temporary folder) and each bundle is timed on the CPU with ONNX Runtime, through ``flare
bench``'s own session and timer, in this process one after the other; a bundle teacher is timed
as it is. GFLOPs (2 per multiply-add) are :func:`flare.benchmarks.flops.count_flops` of the fp32
graph; without bundles, a torch model is counted with ``torch.utils.flop_counter``, which
follows the same convention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.core.preprocess import PreprocessSpec
from flare.runtime.core.runs import ClassifierRun
from flare.runtime.foundation.atomic import write_json, write_text
from flare.runtime.foundation.progress import log
from flare.training.classifiers.metrics import accuracy, confusion_matrix, macro_f1
from flare.training.distill.teacher import Teacher

#: Images per timed call, and the timer's warm-up calls, timed calls and time budget per bundle.
BENCH_BATCH, WARMUP, ITERATIONS, BUDGET_S = 16, 3, 30, 5.0


def scores(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and each class's accuracy (None for a class without test images)."""
    cm = confusion_matrix(truth, predicted, len(classes))
    per_class = {c: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i, c in enumerate(classes)}
    return {"accuracy": accuracy(cm), "macro_f1": macro_f1(cm), "per_class_accuracy": per_class}


def torch_cost(model: Any, size: int) -> tuple[int, float]:
    """Parameters and GFLOPs of one image through a torch model (``torch.utils.flop_counter``)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.cpu().eval()(torch.zeros(1, 3, size, size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 1e9


def bundle_graph(bundle: Path) -> Path:
    """The model file of a classify bundle, as its manifest names it."""
    from flare.runtime.core.manifest import Manifest

    return bundle / Manifest.load(bundle, verify=False).files["model"].path


def bundle_params(bundle: Path) -> int:
    """The elements of a bundle graph's initialisers: its weights, whatever their precision."""
    import onnx

    graph = onnx.load(str(bundle_graph(bundle))).graph
    return sum(int(np.prod(t.dims)) for t in graph.initializer)


def images_per_second(bundle: Path, images: list[Path]) -> float | None:
    """CPU images/s of a classify bundle on ONNX Runtime, timed as ``flare bench`` times a row."""
    from flare.benchmarks.stats import summarize, time_calls
    from flare.benchmarks.targets import Skip, Target, open_session
    from flare.runtime.core.manifest import Manifest
    from flare.runtime.core.preprocess import preprocess
    from flare.runtime.io.images import load_rgb

    manifest = Manifest.load(bundle)
    spec = PreprocessSpec.from_dict(manifest.preprocessing)
    batch = np.stack([preprocess(load_rgb(images[i % len(images)], stretch=spec.stretch), spec)
                      for i in range(BENCH_BATCH)])
    try:
        session, _ = open_session(Target("cpu", manifest.precision), bundle, None, "")
    except Skip as exc:
        log(f"  {bundle} not timed: {exc}")
        return None
    try:
        latencies, _ = time_calls(session.bind(batch), WARMUP, ITERATIONS, budget_s=BUDGET_S)
        return summarize(latencies, BENCH_BATCH).images_per_second
    finally:
        session.close()


def export_and_time(run: Path, images: list[Path]) -> dict[str, Any]:
    """Images/s of ``run``'s fp32 and int8 bundles and the fp32 graph's GFLOPs.

    The bundles are made in a temporary folder and removed: an export may not lie inside the
    RUN it reads, and the one to keep is made with ``flare export classifier``.
    """
    import tempfile

    from flare.benchmarks.flops import count_flops
    from flare.export.classifier import export_classifier

    speed: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="flare-distill-") as tmp:
        for precision in ("fp32", "int8"):
            bundle = Path(tmp) / precision
            log(f"exporting {run} as an {precision} bundle and timing it")
            _, report = export_classifier(str(run), bundle, precision=precision, allow_parity_failure=True)
            speed[precision] = {"images_per_second": images_per_second(bundle, images),
                                "parity": "pass" if report.passed else "FAIL"}
        gflops = count_flops(bundle_graph(Path(tmp) / "fp32")).flops / 1e9
    return {"gflops": gflops, "cpu": speed}


def compare(teacher: Teacher, logits_of: dict[str, np.ndarray], out: Path, bench: bool,
            device: str = "auto") -> dict[str, Any]:
    """Score teacher and student on the test split, measure their cost, write distill.json/.md."""
    from torch.utils.data import DataLoader

    from flare.training.classifiers.train import ImageDataset, build_from_run, evaluate
    from flare.training.data.folders import resolve_root
    from flare.training.data.splits import read_split
    from flare.training.devices import pick_device

    run = ClassifierRun.load(out)
    root = resolve_root(Path(run.train.data))
    test = [r for r in read_split(out / "split.csv", Path(run.train.data)) if r["split"] == "test"]
    target_of = {fine: run.classes.index(label) for fine, label in run.label_map.items()}
    truth = np.array([target_of[r["label"]] for r in test], dtype=np.int64)
    taught = np.array([int(np.argmax(logits_of[r["path"]])) for r in test], dtype=np.int64)
    dev = pick_device(device)
    model, _, _ = build_from_run(out)
    loader = DataLoader(ImageDataset(test, root, run.preprocessing, target_of, cache=False), batch_size=64)
    learnt = evaluate(model.to(dev), loader, dev, len(run.classes), run.train.amp)["predictions"]
    images = [root / r["path"] for r in test]

    rows = {"teacher": {"what": f"{teacher.kind} {teacher.path}", **scores(truth, taught, run.classes)},
            "student": {"what": f"{run.train.model} at {run.train.input_size} px, {out}",
                        **scores(truth, learnt, run.classes),
                        "agreement_with_teacher": float((learnt == taught).mean()) if len(test) else None}}
    if teacher.run is not None:
        teacher_model, _, _ = build_from_run(teacher.path)
        rows["teacher"]["parameters"], rows["teacher"]["gflops"] = torch_cost(teacher_model, teacher.spec.size)
    else:
        from flare.benchmarks.flops import count_flops
        from flare.runtime.core.manifest import Manifest

        rows["teacher"]["parameters"] = bundle_params(teacher.path)
        rows["teacher"]["gflops"] = count_flops(bundle_graph(teacher.path)).flops / 1e9
        if bench:
            rows["teacher"]["cpu"] = {Manifest.load(teacher.path).precision: {
                "bundle": str(teacher.path), "images_per_second": images_per_second(teacher.path, images)}}
    rows["student"]["parameters"], rows["student"]["gflops"] = torch_cost(model, run.train.input_size)
    if bench:
        if teacher.run is not None:
            rows["teacher"].update(export_and_time(teacher.path, images))
        rows["student"].update(export_and_time(out, images))
    result = {"test_images": len(test), "distill": run.to_dict()["distill"], **rows}
    write_json(out / "distill.json", result)
    write_text(out / "distill.md", markdown(result, run.classes))
    return result


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(student: Any, teacher: Any, spec: str = ".2f") -> str:
    return f"{student / teacher:{spec}}x" if student is not None and teacher else ""


def markdown(result: dict[str, Any], classes: list[str]) -> str:
    """The table: one row per measure, teacher and student side by side, and student / teacher."""
    t, s = result["teacher"], result["student"]
    d = result["distill"]
    lines = [f"Distillation: T = {d['temperature']:g}, alpha = {d['alpha']:g}, on {result['test_images']} test images",
             "", f"Teacher: {t['what']}", f"Student: {s['what']}", "",
             "| | teacher | student | student / teacher |", "| --- | ---: | ---: | ---: |",
             f"| accuracy | {t['accuracy']:.3f} | {s['accuracy']:.3f} | {_ratio(s['accuracy'], t['accuracy'])} |",
             f"| macro-F1 | {t['macro_f1']:.3f} | {s['macro_f1']:.3f} | {_ratio(s['macro_f1'], t['macro_f1'])} |"]
    for c in classes:
        a, b = t["per_class_accuracy"][c], s["per_class_accuracy"][c]
        lines.append(f"| accuracy: {c} | {_fmt(a, '.3f')} | {_fmt(b, '.3f')} | |")
    lines += [f"| agreement with the teacher | 1.000 | {_fmt(s['agreement_with_teacher'], '.3f')} | |",
              f"| parameters (M) | {t['parameters'] / 1e6:.2f} | {s['parameters'] / 1e6:.2f} | "
              f"{_ratio(s['parameters'], t['parameters'])} |",
              f"| GFLOPs / image | {t['gflops']:.3f} | {s['gflops']:.3f} | {_ratio(s['gflops'], t['gflops'], '.3f')} |"]
    for precision in ("fp32", "fp16", "int8"):
        a = t.get("cpu", {}).get(precision, {}).get("images_per_second")
        b = s.get("cpu", {}).get(precision, {}).get("images_per_second")
        if a is not None or b is not None:
            lines.append(f"| CPU images/s, {precision} bundle | {_fmt(a, '.1f')} | {_fmt(b, '.1f')} | {_ratio(b, a)} |")
    if "cpu" not in s:
        lines += ["", "Not timed (--no-bench)."]
    return "\n".join(lines) + "\n"
