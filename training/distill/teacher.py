"""The teacher of ``flare distill`` and its logits, computed once per teacher, data and preprocessing.

A teacher is a classifier RUN (its torch model, :func:`build_from_run`) or a classify bundle
(the torch-free :class:`~flare.runtime.tasks.classify.Classifier`, so an fp16 or int8 export can
teach). Either gives one row of scores per image: logits, or for a bundle whose graph ends in
a softmax, log-probabilities (the same softmax at any temperature, up to a constant per row).

The scores are cached in ``<cache>/teacher-<key>.npz`` (default ``<images>/.flare-cache/``,
hidden, so a scan of the data skips it, and beside the data, so every student of that data
finds it). ``key`` is a sha256 of the teacher's identity (the weights file's sha256 for a RUN,
the sha256 of the manifest, which holds every model file's sha256, for a bundle), the
preprocessing the teacher's inputs get, and every image's relative path and content sha256:
content rather than size and mtime, so a copied data set still hits and an image re-saved in
place still misses. Anything else changed means another file, never stale logits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from flare.runtime.core.artifact import sha256
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.preprocess import PreprocessSpec
from flare.runtime.core.runs import ClassifierRun
from flare.runtime.core.sources import source_task
from flare.runtime.foundation.atomic import write_atomically
from flare.runtime.foundation.errors import ArtifactError, UsageError
from flare.runtime.foundation.progress import log, progress_bar

#: Images per teacher call while filling the cache.
BATCH = 32
#: The default cache folder, inside the images' folder.
CACHE_DIR = ".flare-cache"


@dataclass
class Teacher:
    """A teacher opened: what it is, its classes and preprocessing, and how to score a batch."""

    path: Path
    kind: str  # "run" or "bundle"
    sha256: str
    scores_kind: str  # "logits" or "log-probabilities"
    classes: list[str]
    spec: PreprocessSpec
    score: Callable[[np.ndarray], np.ndarray]
    #: The RUN's config (a bundle has none): its data folder and split are the student's defaults.
    run: ClassifierRun | None = None


def open_teacher(path: Path, device: str = "auto") -> Teacher:
    """The teacher at ``path``; a bundle or RUN of another task is a usage error naming what it is."""
    path = Path(path)
    from flare.runtime.tasks.classify import Classifier

    found = source_task(str(path), {}, default=Classifier.TASK)
    if found != Classifier.TASK or not ((path / Manifest.FILE).is_file() or (path / ClassifierRun.FILE).is_file()):
        what = f"a source for '{found}'" if found != Classifier.TASK else "neither a classify bundle nor a classifier RUN"
        raise UsageError(f"--teacher {path} is {what}; a teacher is a classifier RUN ('flare train') or a "
                         f"classify bundle ('flare export classifier')")
    if (path / Manifest.FILE).is_file():
        return _bundle_teacher(path)
    return _run_teacher(path, device)  # a damaged run.json or checkpoint is refused there, naming the file


def _bundle_teacher(path: Path) -> Teacher:
    from flare.runtime.tasks.classify import Classifier

    model = Classifier(path)
    if model.outputs_probabilities:
        def score(batch: np.ndarray) -> np.ndarray:
            return np.log(np.clip(model.scores(batch), 1e-30, None))
    else:
        score = model.scores
    return Teacher(path, "bundle", model.fingerprint,
                   "log-probabilities" if model.outputs_probabilities else "logits",
                   list(model.labels), model.spec, score)


def _run_teacher(path: Path, device: str) -> Teacher:
    import torch

    from flare.training.classifiers.train import build_from_run
    from flare.training.devices import pick_device

    model, config, weights = build_from_run(path)
    dev = pick_device(device)
    model = model.to(dev)

    def score(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(dev)).float().cpu().numpy()

    return Teacher(path, "run", sha256(weights), "logits", list(config.classes), config.preprocessing, score, config)


def cache_key(teacher: Teacher, root: Path, paths: list[str]) -> str:
    """The sha256 naming the cache file of ``teacher``'s scores for these images (see the module)."""
    digest = hashlib.sha256(json.dumps({"teacher": teacher.sha256, "scores": teacher.scores_kind,
                                        "preprocessing": teacher.spec.to_dict()}, sort_keys=True).encode())
    for rel in paths:
        digest.update(rel.encode() + b"\0" + sha256(root / rel).encode() + b"\n")
    return digest.hexdigest()


def infer(teacher: Teacher, root: Path, paths: list[str]) -> np.ndarray:
    """The teacher's scores of every image, (N, classes) float32, through its own preprocessing."""
    from flare.runtime.core.preprocess import preprocess
    from flare.runtime.io.images import load_rgb

    out = []
    with progress_bar(len(paths), "teacher logits") as advance:
        for start in range(0, len(paths), BATCH):
            chunk = paths[start:start + BATCH]
            batch = np.stack([preprocess(load_rgb(root / rel, stretch=teacher.spec.stretch), teacher.spec)
                              for rel in chunk])
            out.append(np.asarray(teacher.score(batch), dtype=np.float32))
            advance(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, len(teacher.classes)), dtype=np.float32)


def teacher_logits(teacher: Teacher, root: Path, paths: list[str], cache: Path) -> tuple[dict[str, np.ndarray], Path]:
    """Each image's teacher scores by relative path, and the cache file they are kept in.

    Read from the cache when a file of this key is there (a re-run, a second student), else
    computed once and written atomically.
    """
    paths = sorted(set(paths))
    file = Path(cache) / f"teacher-{cache_key(teacher, root, paths)[:32]}.npz"
    if file.is_file():
        try:
            with np.load(file, allow_pickle=False) as saved:
                if list(saved["paths"]) == paths:
                    log(f"teacher logits: reusing {file}")
                    return dict(zip(paths, saved["logits"])), file
        except (OSError, ValueError, KeyError) as exc:
            log(f"teacher logits: {file} cannot be read ({exc}); computing them again")
    logits = infer(teacher, root, paths)
    if not np.all(np.isfinite(logits)):
        raise ArtifactError(f"the teacher {teacher.path} gives non-finite scores on these images; it cannot teach")

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, paths=np.array(paths), logits=logits, classes=np.array(teacher.classes),
                     meta=np.array(json.dumps({"teacher": str(teacher.path), "sha256": teacher.sha256,
                                               "scores": teacher.scores_kind, "root": str(root)})))

    write_atomically(file, save)
    log(f"teacher logits: {len(paths)} images, kept in {file}")
    return dict(zip(paths, logits)), file
