"""Does distillation pay? A student taught by a teacher against the same student from scratch.

On one leak-free split of DATA (default: the synthetic sky, ``flare data synth``), a teacher
is trained with ``flare train`` (or given), then for each seed the student is trained twice
with the same recipe: with ``flare distill`` from the teacher, and with ``flare train`` alone.
The table gives each arm's test accuracy and macro-F1 over the seeds (mean and a 95%
Student-t interval), against the teacher's, and the CPU images/s of both models' fp32 and int8
bundles measured by the first distillation (``flare distill``'s own table). Targets: the
student reaches 95% of the teacher's accuracy at 10 times its CPU throughput. Usage::

    python -m flare.benchmarks.distill_bench [DATA] --work /tmp/distill-bench --out benchmarks/results/<machine>

Runs already finished in ``--work`` are kept (the teacher, each student configuration, arm and
seed), so a stopped benchmark continues, another student reuses the teacher and its cached
logits, and another DATA (real photographs) only needs another ``--work``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

def interval(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and the 95% t interval's half-width of the mean (None for one value)."""
    from flare.training.pipeline.intervals import estimate

    e = estimate(values)
    sd = math.sqrt(sum((v - e.mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"values": values, "mean": e.mean, "sd": sd, "ci95_half_width": None if e.high is None else e.high - e.mean}


def _done(run: Path) -> bool:
    return (run / "results.json").is_file()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, nargs="?", default=None,
                        help="ImageFolder data (default: a synthetic sky made in --work).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flare-distill-bench"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--per-class", type=int, default=60, help="Synthetic images per class.")
    parser.add_argument("--teacher", type=Path, default=None, help="An existing classifier RUN trained on DATA.")
    parser.add_argument("--teacher-model", default="resnet18")
    parser.add_argument("--teacher-size", type=int, default=128)
    parser.add_argument("--teacher-epochs", type=int, default=25)
    parser.add_argument("--student", default="mobilenetv3_small_100")
    parser.add_argument("--student-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for training (1 on a shared machine: oversubscribed threads ran 40x slower)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from flare.benchmarks.common import write_results
    from flare.runtime.core.runs import ClassifierTraining
    from flare.training.classifiers.train import prepare_split, train
    from flare.training.data.splits import write_split
    from flare.training.data.synth import SynthConfig, synthesize
    from flare.training.distill.trainer import DistillSettings, distill

    started = time.perf_counter()
    work = args.work
    data = args.data
    if data is None:
        data = work / "sky" / "hr"
        if not data.is_dir():
            synthesize(work / "sky", SynthConfig(per_class=args.per_class, size=args.teacher_size, seed=0))
    split = work / "split.csv"
    if not split.is_file():
        write_split(prepare_split(data, None, seed=0), split)
    teacher = args.teacher or work / "teacher"
    if args.teacher is None and not _done(teacher):
        train(ClassifierTraining(model=args.teacher_model, data=str(data.resolve()), epochs=args.teacher_epochs,
                                 batch=args.batch, lr=args.lr, input_size=args.teacher_size, seed=0), teacher,
              split=split, resume=(teacher / "train_state.pt").is_file())
    seeds = [int(s) for s in args.seeds.split(",")]
    arms: dict[str, list[dict[str, float]]] = {"distilled": [], "scratch": []}
    table: dict[str, Any] | None = None
    for i, seed in enumerate(seeds):
        # several configurations share --work; the scratch arm does not depend on T and alpha
        student = f"{args.student}-{args.student_size}"
        kd = work / f"distilled_{student}_T{args.temperature:g}_a{args.alpha:g}_{seed}"
        scratch = work / f"scratch_{student}_{seed}"
        if not (kd / "distill.json").is_file():
            distill(DistillSettings(data=data, teacher=teacher, student=args.student, out=kd, split=split,
                                    temperature=args.temperature, alpha=args.alpha, epochs=args.epochs,
                                    batch=args.batch, lr=args.lr, input_size=args.student_size, seed=seed,
                                    cache=work / "cache", bench=i == 0, resume=(kd / "train_state.pt").is_file()))
        if not _done(scratch):
            train(ClassifierTraining(model=args.student, data=str(data.resolve()), epochs=args.epochs, batch=args.batch,
                                     lr=args.lr, input_size=args.student_size, seed=seed), scratch, split=split,
                  resume=(scratch / "train_state.pt").is_file())
        for arm, run in (("distilled", kd), ("scratch", scratch)):
            r = json.loads((run / "results.json").read_text())
            arms[arm].append({"accuracy": r["test_acc"], "macro_f1": r["test_macro_f1"]})
        if i == 0:
            table = json.loads((kd / "distill.json").read_text())
    assert table is not None
    t, s = table["teacher"], table["student"]
    speed = {p: (s["cpu"][p]["images_per_second"] / t["cpu"][p]["images_per_second"])
             for p in ("fp32", "int8") if s.get("cpu", {}).get(p, {}).get("images_per_second")
             and t.get("cpu", {}).get(p, {}).get("images_per_second")}
    summary = {arm: {m: interval([row[m] for row in rows]) for m in ("accuracy", "macro_f1")}
               for arm, rows in arms.items()}
    share = summary["distilled"]["accuracy"]["mean"] / t["accuracy"] if t["accuracy"] else None
    results = {
        "data": str(data), "test_images": table["test_images"], "seeds": seeds,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "teacher": {"accuracy": t["accuracy"], "macro_f1": t["macro_f1"], "parameters": t["parameters"],
                    "gflops": t["gflops"], "cpu": t.get("cpu")},
        "student": {"parameters": s["parameters"], "gflops": s["gflops"], "cpu": s.get("cpu")},
        "arms": summary, "throughput_ratio": speed,
        "headlines": [{"metric": "distilled student accuracy / teacher accuracy", "value": share, "target": 0.95,
                       "met": share is not None and share >= 0.95},
                      {"metric": "student fp32 CPU images/s / teacher fp32", "value": speed.get("fp32"),
                       "target": 10.0, "met": speed.get("fp32", 0) >= 10.0}],
        "distilled_beats_scratch": summary["distilled"]["accuracy"]["mean"] > summary["scratch"]["accuracy"]["mean"],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    name = (f"distill_{args.teacher_model}-{args.teacher_size}_{args.student}-{args.student_size}"
            f"_T{args.temperature:g}_a{args.alpha:g}")
    js, md = write_results(args.out, name, results, markdown(results, args))
    print(md.read_text())
    print(f"written: {js}, {md}")


def _ci(x: dict[str, Any]) -> str:
    half = x["ci95_half_width"]
    return f"{x['mean']:.3f}" + (f" ± {half:.3f}" if half is not None else "")


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The benchmark's table and headlines."""
    t, arms = results["teacher"], results["arms"]
    n = len(results["seeds"])
    cpu_t, cpu_s = t.get("cpu") or {}, results["student"].get("cpu") or {}
    lines = [f"# flare distill: {args.student} at {args.student_size} px from {args.teacher_model} at "
             f"{args.teacher_size} px", "",
             f"Data: {results['data']} ({results['test_images']} test images); {args.epochs} epochs, batch {args.batch}, "
             f"Adam lr {args.lr}, T = {args.temperature}, alpha = {args.alpha}; mean ± 95% interval over {n} seeds "
             f"(Student t).", "",
             "| model | test accuracy | macro-F1 | parameters (M) | GFLOPs | CPU images/s fp32 | CPU images/s int8 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| teacher | {t['accuracy']:.3f} | {t['macro_f1']:.3f} | {t['parameters'] / 1e6:.2f} | {t['gflops']:.3f} | "
             f"{_speed(cpu_t, 'fp32')} | {_speed(cpu_t, 'int8')} |"]
    for arm, label in (("distilled", "student, distilled"), ("scratch", "student, from scratch")):
        lines.append(f"| {label} | {_ci(arms[arm]['accuracy'])} | {_ci(arms[arm]['macro_f1'])} | "
                     f"{results['student']['parameters'] / 1e6:.2f} | {results['student']['gflops']:.3f} | "
                     f"{_speed(cpu_s, 'fp32')} | {_speed(cpu_s, 'int8')} |")
    lines.append("")
    for h in results["headlines"]:
        value = "n/a" if h["value"] is None else f"{h['value']:.2f}"
        lines.append(f"- **{h['metric']}**: {value} (target {h['target']}: {'met' if h['met'] else 'MISSED'})")
    per_seed = ", ".join(f"seed {s}: {a:.3f} vs {b:.3f}" for s, a, b in
                         zip(results["seeds"], arms["distilled"]["accuracy"]["values"],
                             arms["scratch"]["accuracy"]["values"]))
    verdict = "beat" if results["distilled_beats_scratch"] else "did NOT beat"
    lines += [f"- distilled {verdict} the same student from scratch on mean accuracy ({per_seed}).",
              f"- wall time {results['wall_s'] / 60:.1f} min."]
    return "\n".join(lines)


def _speed(cpu: dict[str, Any], precision: str) -> str:
    value = cpu.get(precision, {}).get("images_per_second")
    return "n/a" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
