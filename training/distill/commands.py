"""``flare distill``: train a student classifier on a teacher's soft labels. Heavy imports stay inside it."""

from __future__ import annotations

from pathlib import Path

import click

from flare.runtime.foundation.options import (COUNT, DEVICE, FRACTION, NON_NEGATIVE, POSITIVE, SEED, FlareCommand,
                                              InputPath, OutputPath, check_resume, input_size)
from flare.training.distill import ALPHA, TEMPERATURE



@click.command(cls=FlareCommand)
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--teacher", type=InputPath("dir"), required=True,
              help="Classifier RUN ('flare train') or classify bundle (any precision) whose soft labels teach.")
@click.option("--student", required=True, help="timm model name or googlenet.")
@click.option("--out", type=OutputPath("dir", made_by="run.json"), required=True, help="RUN folder of the student.")
@click.option("--temperature", type=POSITIVE, default=TEMPERATURE, show_default=True,
              help="Softmax temperature T of the soft labels (above 0).")
@click.option("--alpha", type=FRACTION, default=ALPHA, show_default=True,
              help="Weight of the soft term; 1 - alpha weighs the hard labels' cross-entropy.")
@click.option("--epochs", type=COUNT, default=50, show_default=True)
@click.option("--split", "split_csv", type=InputPath("file"), default=None,
              help="Split of DATA (default: the teacher RUN's data and split; for a bundle teacher, a grouped split "
                   "made now).")
@click.option("--batch", type=COUNT, default=64, show_default=True)
@click.option("--lr", type=POSITIVE, default=2e-5, show_default=True, help="Adam learning rate.")
@input_size(None)
@click.option("--weights", type=InputPath("file"), default=None, help="Local weights to start the student from.")
@SEED
@click.option("--cache", type=OutputPath("dir"), default=None,
              help="Folder of the teacher-logit cache (default: .flare-cache in the images' folder).")
@click.option("--bench/--no-bench", default=True, show_default=True,
              help="Export both models to fp32 and int8 bundles and time them on the CPU for the table.")
@click.option("--workers", type=NON_NEGATIVE, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@DEVICE
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.pass_context
def distill(ctx: click.Context, data_dir: Path, teacher: Path, student: str, out: Path, temperature: float,
            alpha: float, epochs: int, split_csv: Path | None, batch: int, lr: float, input_size: int | None,
            weights: Path | None, seed: int, cache: Path | None, bench: bool, workers: int, amp: bool, device: str,
            resume: bool) -> None:
    """Train the classifier --student on DATA from the soft labels of --teacher and the hard labels.

    Loss: alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, label).
    Ends with a teacher / student table, kept in --out as distill.json and distill.md.
    """
    from flare.runtime.core.runs import ClassifierRun
    from flare.runtime.foundation.progress import log
    from flare.training.distill.report import markdown
    from flare.training.distill.trainer import DistillSettings, distill as run_distill

    kept = ClassifierRun.load(out) if resume and (out / ClassifierRun.FILE).is_file() else None
    if kept is not None and kept.distill is not None:  # a run of 'flare train' is refused by the trainer
        d = kept.distill
        check_resume(ctx, out, {"data_dir": d.data, "teacher": d.teacher, "student": kept.train.model,
                                "temperature": d.temperature, "alpha": d.alpha, "split_csv": None,
                                **{name: getattr(kept.train, name) for name in ("batch", "lr", "input_size", "seed",
                                                                                "amp", "weights")}})
    result = run_distill(DistillSettings(
        data=data_dir, teacher=teacher, student=student, out=out, temperature=temperature, alpha=alpha, epochs=epochs,
        split=split_csv, batch=batch, lr=lr, input_size=input_size, weights=weights, seed=seed, workers=workers,
        amp=amp, device=device, cache=cache, bench=bench, resume=resume))
    click.echo(markdown(result, list(result["student"]["per_class_accuracy"])))
    log(f"table kept in {out / 'distill.md'} and {out / 'distill.json'}")
