"""``flare catalog`` throughput: sources/s and frames/s against the bound of its two parts.

    python -m flare.benchmarks.catalog_bench --model BUNDLE --out FOLDER [--frames 3]

For 1024^2 and 4096^2 planted frames (:mod:`flare.benchmarks.planted`, ~200 sources each) it
times the catalogue end to end and splits the time into reading, background, detection,
cutouts and the model. The bound is triage's rule (:func:`flare.benchmarks.endtoend.bound`)
with detection (read + background + detection + cutouts, alone) and the model (alone, on the
same cutouts) as the two parts. Peak RSS of each size is measured in a fresh process. It also
compares SEP and photutils (speed, completeness) on the 1024^2 frame: the measurement behind
the detection choice in docs/catalog.md. Writes ``catalog.{json,md}`` with the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from flare.benchmarks.common import write_results
from flare.benchmarks.endtoend import bound
from flare.benchmarks.planted import frame_wcs, make_frame, write_fits

SIZES = (1024, 4096)
SOURCES = 200


def _completeness(x: np.ndarray, y: np.ndarray, truth) -> float:
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(np.c_[x, y]).query(np.c_[truth.x, truth.y])
    return float((distance < 2.0).mean())


def compare_detectors(side: int = 1024) -> dict[str, dict[str, float]]:
    """SEP (as :func:`flare.runtime.core.detection.detect` runs it) against photutils' equivalent
    (Background2D, detect_sources on the same 3x3 filtered frame, deblend_sources, SourceCatalog)."""
    from astropy.convolution import convolve
    from photutils.background import Background2D
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources

    from flare.runtime.core.detection import detect

    frame, truth = make_frame(side, SOURCES, seed=11)
    timings: dict[str, dict[str, float]] = {}
    best = np.inf
    for _ in range(3):
        started = time.perf_counter()
        found = detect(frame.copy())
        best = min(best, time.perf_counter() - started)
    timings["sep"] = {"seconds": best, "detections": len(found), "completeness": _completeness(found.x, found.y, truth)}
    kernel = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=float) / 16
    best = np.inf
    for _ in range(2):
        started = time.perf_counter()
        bkg = Background2D(frame, (64, 64), filter_size=(3, 3))
        data = frame - bkg.background
        convolved = convolve(data, kernel)
        segments = deblend_sources(convolved, detect_sources(convolved, 1.5 * bkg.background_rms, 5), 5,
                                   progress_bar=False)
        table = SourceCatalog(data, segments, convolved_data=convolved, error=bkg.background_rms)
        x, y = np.asarray(table.x_centroid), np.asarray(table.y_centroid)
        best = min(best, time.perf_counter() - started)
    timings["photutils"] = {"seconds": best, "detections": len(x), "completeness": _completeness(x, y, truth)}
    return timings


PEAK = """
import resource, sys, pathlib
sys.path.insert(0, sys.argv[3])
from flare.runtime.apps.catalog import catalog
from flare.runtime.tasks.classify import Classifier
from flare.runtime.core.backends.options import RunnerOptions
with Classifier(sys.argv[1], RunnerOptions(spin=False)) as clf:
    catalog([pathlib.Path(sys.argv[2])], clf, pathlib.Path(sys.argv[2]).with_suffix(".peak.csv"))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(bundle: Path, side: int, frames: int, work: Path) -> dict[str, float]:
    """One size: end-to-end rates, the time split, the bound and its share, peak RSS."""
    from flare.runtime.apps.catalog import catalog
    from flare.runtime.core.backends.options import RunnerOptions
    from flare.runtime.tasks.classify import Classifier

    folder = work / f"frames{side}"
    folder.mkdir()
    for i in range(frames):
        write_fits(folder / f"f{i}.fits", make_frame(side, SOURCES, seed=i)[0], frame_wcs(side))
    for path in folder.iterdir():
        path.read_bytes()
    with Classifier(bundle, RunnerOptions(spin=False)) as clf:
        timing: dict[str, float] = {}
        started = time.perf_counter()
        summary = catalog([folder], clf, work / f"cat{side}.csv", timing=timing)
        wall = time.perf_counter() - started
        # the model alone, on batches of the same size and count
        n = summary.new_sources
        batch = np.zeros((min(64, n), 3, clf.spec.size, clf.spec.size), np.float32)
        started = time.perf_counter()
        for _ in range(max(1, -(-n // len(batch)))):
            clf.predict(batch)
        model_alone = time.perf_counter() - started
    detection_alone = sum(timing.get(k, 0.0) for k in ("read", "background", "detection", "cutouts"))
    sources_per_s = n / wall
    limit = bound(n / model_alone, n / detection_alone, on_gpu=False)
    rss = subprocess.run([sys.executable, "-c", PEAK, str(bundle), str(folder / "f0.fits"), str(Path.cwd())],
                         capture_output=True, text=True, check=True).stdout.split()[-1]
    return {"side": side, "frames": frames, "sources": n, "seconds": wall, "frames_per_second": frames / wall,
            "sources_per_second": sources_per_s, "bound_sources_per_second": limit,
            "share_of_bound": sources_per_s / limit, "split_seconds": timing, "model_alone_seconds": model_alone,
            "peak_rss_mib": int(rss) / 1024}


@click.command()
@click.option("--model", "bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--frames", default=3, show_default=True, help="Frames per size.")
def main(bundle: Path, out: Path, frames: int) -> None:
    """Run the benchmark and write catalog.json / catalog.md under OUT."""
    with tempfile.TemporaryDirectory(prefix="flare-catalog-bench-") as tmp:
        sizes = [measure(bundle, side, frames, Path(tmp)) for side in SIZES]
    detectors = compare_detectors()
    lines = ["| frame | sources | frames/s | sources/s | bound sources/s | share of bound | read | background | "
             "detection | cutouts | model | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in sizes:
        split = s["split_seconds"]
        lines.append(f"| {s['side']}^2 | {s['sources']} | {s['frames_per_second']:.2f} | {s['sources_per_second']:.0f} "
                     f"| {s['bound_sources_per_second']:.0f} | {s['share_of_bound']:.0%} | "
                     + " | ".join(f"{split.get(k, 0.0):.2f} s" for k in ("read", "background", "detection", "cutouts",
                                                                          "model"))
                     + f" | {s['peak_rss_mib']:.0f} |")
    lines += ["", "| detector (1024^2, 200 stars) | seconds | detections | completeness |", "|---|---|---|---|"]
    lines += [f"| {name} | {d['seconds']:.3f} | {d['detections']} | {d['completeness']:.1%} |"
              for name, d in detectors.items()]
    write_results(out, "catalog", {"sizes": sizes, "detectors": detectors}, "\n".join(lines))
    click.echo("\n".join(lines))
    click.echo(json.dumps({"rss_ratio_4096_over_1024": sizes[1]["peak_rss_mib"] / sizes[0]["peak_rss_mib"]}))


if __name__ == "__main__":
    main()
