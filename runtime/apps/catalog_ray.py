"""``flare catalog --engine ray``: the local engine's rows, frames spread over a Ray cluster.

Built on the triage engine's pieces (:mod:`flare.runtime.apps.triage_ray`: joining the
cluster, checking it can hold the actors, Ray's failures as one line, the actor pool and its
retries, a bundle opened once per actor and checked against the driver's). The unit of work is
a frame, one per block: an actor pool, one model per actor, reads, searches and classifies whole
frames (a frame's cutouts never cross the network) and sends back its rows. There are no decode
tasks, so unlike triage the actors may take every CPU of the cluster.
The driver is the single writer, through the same journal as the local engine, so the
guarantees are triage's: a frame redone after a lost worker is dropped by index before it is
written, a killed driver takes its actors with it, and a re-run resumes from the committed frames.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from flare.runtime.apps.catalog import (CatalogOptions, CatalogSummary, Searcher, check_options, finish_table,
                                        frame_rows, open_catalog)
from flare.runtime.apps.triage_ray import (PredictorFactory, PredictorInfo, RayOptions, _check_options, _connected,
                                           _ray_errors, import_ray, model_actors, open_model)
from flare.runtime.foundation.errors import FlareError


def catalog_on_ray(inputs: list[Path], predictors: PredictorFactory, out: Path, *,
                   options: CatalogOptions = CatalogOptions(), ray_options: RayOptions = RayOptions(),
                   batch_size: int = 64, progress: Callable[[int], None] | None = None,
                   on_start: Callable[[int], None] | None = None) -> CatalogSummary:
    """Catalogue ``inputs`` into ``out`` on Ray: the arguments and rows of :func:`flare.runtime.apps.catalog.catalog`."""
    check_options(options, batch_size, ray_options.workers)
    _check_options(ray_options)
    ray = import_ray()
    described = predictors.describe()
    with open_catalog(inputs, out, described, options) as run:
        todo = run.todo
        started = time.perf_counter()
        if on_start is not None and not todo:
            on_start(0)
        if todo:
            seen = np.zeros(len(todo), dtype=bool)
            with _connected(ray, ray_options, spare_cpus=0):
                if on_start is not None:  # once joined: a cluster refused is the command's one line, no bar before it
                    on_start(len(todo))
                # One frame per block, so idle actors take the next frame and a lost one redoes one.
                items = ray.data.from_items([{"index": i, "path": os.fsencode(run.root / rel)}
                                             for i, (rel, _) in enumerate(todo)], override_num_blocks=len(todo))
                rows = model_actors(ray, items, _CatalogActor, {"predictors": predictors, "described": described,
                                                                "options": options, "batch_size": batch_size},
                                    1, ray_options)
                with _ray_errors(ray):
                    for batch in rows.iter_batches(batch_size=None, batch_format="numpy"):
                        failure = next((f for f in batch["failure"].tolist() if f), "")
                        if failure:
                            raise FlareError(failure)
                        for index, cells in zip(batch["index"].tolist(), batch["rows"].tolist()):
                            if seen[index]:  # a frame redone after a worker died comes back twice
                                continue
                            seen[index] = True
                            run.append([[todo[index][1], *row] for row in json.loads(cells)])
                            if progress is not None:
                                progress(1)
            if not seen.all():
                raise FlareError(f"the cluster returned no rows for {int((~seen).sum())} of {len(todo)} frames; "
                                 f"the frames it did return are in {out}, re-run the same command to do the rest")
        elapsed = time.perf_counter() - started
    finish_table(Path(out))
    return run.summary(elapsed)


class _CatalogActor:
    """One model per actor: frames in (by path), their rows out (without the key, which the
    driver adds back by index). Our errors travel as data, as in the triage engine's actor."""

    def __init__(self, predictors: PredictorFactory, described: PredictorInfo, options: CatalogOptions,
                 batch_size: int, threads: int) -> None:
        self.described, self.options, self.batch_size = described, options, batch_size
        self.predictor, self.failure = open_model(predictors, described, threads)
        self.search = Searcher(options, described.spec.stretch)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(batch["index"])
        out = np.full(n, "", dtype=object)
        if not self.failure:
            try:
                for i, raw in enumerate(batch["path"]):
                    item = self.search((Path(os.fsdecode(bytes(raw))), ""))
                    rows = frame_rows(item, self.predictor, self.described.labels, self.described.macro_of,
                                      self.options, self.batch_size)
                    out[i] = json.dumps([row[1:] for row in rows])
            except FlareError as exc:
                self.failure = str(exc)
        failures = np.full(n, self.failure, dtype=object)
        return {"index": batch["index"], "rows": out, "failure": failures}
