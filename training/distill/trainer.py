"""``flare distill`` end to end: the student's images and split, the teacher's logits, training, the table.

Which images the student learns from (a leak-free comparison needs the teacher's own split):

* ``--split CSV``: DATA with that split;
* a RUN teacher: the images the teacher was trained on, the data folder its ``run.json``
  records (a FLARE-augmented set when it was trained on one), with its ``split.csv``;
* a bundle teacher: DATA with a grouped split made now, as ``flare train`` makes one.

Training is ``flare train``'s own loop (:func:`flare.training.classifiers.train.train`) with the
distillation objective, so checkpoints, ``metrics.jsonl``, ``--resume`` and the exported bundle
are those of any classifier RUN; ``run.json`` adds the :class:`Distillation` record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flare.runtime.core.runs import ClassifierRun, ClassifierTraining, Distillation
from flare.runtime.foundation.errors import FlareError, UsageError
from flare.runtime.foundation.progress import log
from flare.training.data.folders import resolve_root
from flare.training.distill import ALPHA, TEMPERATURE
from flare.training.distill.teacher import CACHE_DIR, Teacher


@dataclass
class DistillSettings:
    """What ``flare distill`` was asked; the training fields mean what ``flare train``'s do.

    ``input_size`` None: the teacher's. ``cache`` None: ``<images>/.flare-cache``.
    """

    data: Path
    teacher: Path
    student: str
    out: Path
    temperature: float = TEMPERATURE
    alpha: float = ALPHA
    epochs: int = 50
    split: Path | None = None
    batch: int = 64
    lr: float = 2e-5
    input_size: int | None = None
    weights: Path | None = None
    seed: int = 0
    workers: int = 0
    amp: bool = True
    device: str = "auto"
    cache: Path | None = None
    bench: bool = True
    resume: bool = False


def student_images(settings: DistillSettings, teacher: Teacher) -> tuple[Path, Path | None]:
    """The folder the student trains on and the split file to use there (None: make one)."""
    if settings.split is not None:
        return Path(settings.data), Path(settings.split)
    if teacher.run is None:
        return Path(settings.data), None
    folder, split = Path(teacher.run.train.data), teacher.path / "split.csv"
    if not folder.is_dir() or not split.is_file():
        missing = f"its data {folder}" if not folder.is_dir() else str(split)
        raise FlareError(f"the teacher RUN {teacher.path} lacks {missing}; pass --split with the DATA to train on")
    if folder.resolve() != Path(settings.data).resolve():
        log(f"note: the teacher was trained on {folder}; the student trains on the same images and split "
            f"({split}), not on {settings.data}")
    return folder, split


def teacher_level(rows: list[dict[str, str]], teacher: Teacher) -> str:
    """``fine`` or ``macro``: the labels at which the data's classes are the teacher's, in its order."""
    from flare.training.classifiers.train import run_classes

    fine = run_classes(rows, "fine")[0]
    if fine == teacher.classes:
        return "fine"
    try:
        if run_classes(rows, "macro")[0] == teacher.classes:
            return "macro"
    except UsageError:
        pass
    raise UsageError(f"the teacher's classes {teacher.classes} differ from the data's {fine}: a teacher can only "
                     f"teach the classes it was trained on")


def distill(settings: DistillSettings) -> dict[str, Any]:
    """Train the student in ``settings.out`` (or resume it) and write the comparison; returns it."""
    from flare.training.classifiers.models import create_classifier
    from flare.training.classifiers.train import prepare_split, train
    from flare.training.data.splits import read_split
    from flare.training.distill.loss import soft_label_objective
    from flare.training.distill.report import compare
    from flare.training.distill.teacher import open_teacher, teacher_logits

    out = Path(settings.out)
    teacher = open_teacher(settings.teacher, settings.device)
    kept = ClassifierRun.load(out) if settings.resume and (out / ClassifierRun.FILE).is_file() else None
    if kept is not None:
        if kept.distill is None:
            raise UsageError(f"{out} is a 'flare train' run, not a distilled one: resume it with "
                             f"'flare train --resume'")
        if kept.distill.teacher_sha256 != teacher.sha256:
            raise UsageError(f"the teacher {teacher.path} changed since {out} was started (sha256 "
                             f"{kept.distill.teacher_sha256[:12]} then, {teacher.sha256[:12]} now); distil into a "
                             f"new --out")
        cfg, split = replace(kept.train, epochs=settings.epochs), None
        rows = read_split(out / "split.csv", Path(cfg.data))
        temperature, alpha, data = kept.distill.temperature, kept.distill.alpha, kept.distill.data
    else:
        folder, split = student_images(settings, teacher)
        rows = prepare_split(folder, split, settings.seed)
        cfg = ClassifierTraining(model=settings.student, data=str(folder.resolve()), level=teacher_level(rows, teacher),
                                 epochs=settings.epochs, batch=settings.batch, lr=settings.lr,
                                 input_size=settings.input_size or teacher.spec.size, seed=settings.seed,
                                 weights=str(settings.weights) if settings.weights else None, amp=settings.amp,
                                 workers=settings.workers)
        temperature, alpha, data = settings.temperature, settings.alpha, str(Path(settings.data).resolve())
    create_classifier(cfg.model, len(teacher.classes), cfg.input_size)  # an unknown name fails before any work
    root = resolve_root(Path(cfg.data))
    logits_of, cache = teacher_logits(teacher, root, [r["path"] for r in rows],
                                      Path(settings.cache) if settings.cache else root / CACHE_DIR)
    record = Distillation(teacher=str(teacher.path.resolve()), teacher_kind=teacher.kind, teacher_sha256=teacher.sha256,
                          scores=teacher.scores_kind, temperature=temperature, alpha=alpha, data=data, cache=str(cache))
    train(cfg, out, split=split, resume=settings.resume, device=settings.device,
          objective=soft_label_objective(logits_of, temperature, alpha), distill=record)
    return compare(teacher, logits_of, out, settings.bench, settings.device)
