"""``flare enhance`` over many files: outputs named after inputs, resumable, one line per failure.

Each input file gives one output under ``--out`` (a folder argument keeps its files'
relative paths). Outputs are written atomically, so one that exists is finished and a
re-run skips it. ``enhance.csv`` in ``--out`` records every file's outcome and pins the
settings that change pixels (bundle, tile, overlap), so a re-run with other settings is
refused instead of mixing two kinds of output in one folder. An unreadable file is reported
on its own line and recorded; the run goes on and ends with exit code 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from flare.runtime.foundation.errors import FlareError, ImageDecodeError, UsageError, one_line
from flare.runtime.foundation.fingerprint import fingerprint_path
from flare.runtime.foundation.journal import CsvJournal
from flare.runtime.foundation.paths import check_apart
from flare.runtime.foundation.progress import Bar, log
from flare.runtime.io.enhance_io import OutputWriter, output_name, probe_pixels, read_picture
from flare.runtime.io.images import list_images
from flare.runtime.tasks.enhance import Enhancer

JOURNAL = "enhance.csv"
#: ``input_sha256`` is the input as it was enhanced: an input changed since is enhanced again.
COLUMNS = ["input", "output", "status", "error", "input_megapixels", "seconds", "input_sha256"]


@dataclass
class Job:
    """One input file and where its output goes (relative to ``--out``)."""

    source: Path
    output: Path


@dataclass
class EnhanceSummary:
    images: int = 0
    skipped: int = 0
    failed: int = 0
    input_megapixels: float = 0.0
    output_megapixels: float = 0.0
    seconds: float = 0.0

    def format(self) -> str:
        rate = self.input_megapixels / self.seconds if self.seconds > 0 else 0.0
        return (f"enhanced {self.images} images ({self.input_megapixels:.2f} MP in, {self.output_megapixels:.2f} MP "
                f"out) in {self.seconds:.1f} s: {rate:.3f} input MP/s; {self.skipped} already done, "
                f"{self.failed} failed")


def plan_jobs(inputs: list[Path], out: Path) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Files to enhance, with output paths, and the files that cannot be (with why): of two
    inputs that would write one output (``m13.jpg`` beside ``m13.png``) the second is not
    enhanced, which is a failure of that file, not of the command line."""
    jobs: list[Job] = []
    for arg in inputs:
        if arg.is_dir():
            files, unlisted = list_images(arg, exclude=out / JOURNAL)
            for folder in unlisted:
                log(f"Error: cannot list {folder}; its images are skipped")
            jobs += [Job(arg / rel, output_name(Path(rel))) for rel in files]
        else:
            jobs.append(Job(arg, output_name(Path(arg.name))))
    seen: dict[Path, Path] = {}
    kept, clashes = [], []
    for job in jobs:
        if job.output in seen:
            clashes.append((job.source, f"{job.source}: would be written to {out / job.output} like "
                                        f"{seen[job.output]}; enhance it into another --out"))
            continue
        seen[job.output] = job.source
        kept.append(job)
    return kept, clashes


def enhance_files(enhancer: Enhancer, inputs: list[Path], out: Path, display: bool = False,
                  bar: Bar | None = None) -> EnhanceSummary:
    """Enhance every image of ``inputs`` (files and folders) into ``out``."""
    out = Path(out)
    check_apart((out, "--out"), [(p, "IMAGE_OR_DIR") for p in inputs if p.is_dir()])
    jobs, clashes = plan_jobs(inputs, out)
    if not jobs:
        raise UsageError(f"no images found in {', '.join(map(str, inputs))}")
    settings = {"BUNDLE": enhancer.fingerprint, "--tile": enhancer.tile, "--overlap": enhancer.overlap}
    summary = EnhanceSummary()
    with CsvJournal(out / JOURNAL, COLUMNS, "enhance into another --out", settings) as journal:
        for source, why in clashes:
            summary.failed += 1
            log(f"Error: {why}")
            journal.append([[str(source), "", "error", one_line(why), "", "", ""]])
        enhanced = {row[0]: row[6] for row in journal.rows if row[2] == "ok"}  # the last row of an input wins
        todo, digests = [], {}
        for job in jobs:
            target = out / job.output
            if not target.is_file() or (display and _is_scientific(job.source) and
                                        not target.with_suffix(".png").is_file()):
                todo.append(job)
                continue
            digests[job.source] = digest = _sha256(job.source)
            if enhanced.get(str(job.source)) == digest:
                summary.skipped += 1
            else:
                log(f"{job.source} changed since {target} was made from it (or was not recorded); enhancing it again")
                todo.append(job)
        if summary.skipped:
            log(f"resuming: {summary.skipped} of {len(jobs)} outputs already in {out}")
        if bar is not None:
            bar.start(sum(probe_pixels(job.source) for job in todo))
        for job in todo:
            started = time.perf_counter()
            digest = digests.get(job.source) or _sha256(job.source)  # before reading: what was enhanced
            try:
                picture = read_picture(job.source, enhancer.spec.channels, enhancer.spec.stretch)
                enhancer.check_size(picture.height, picture.width, str(job.source))
                with OutputWriter(picture, out / job.output, enhancer.scale, display) as writer:
                    enhancer.run(picture, writer, progress=bar)
            except ImageDecodeError as exc:
                summary.failed += 1
                log(f"Error: {exc}")
                journal.append([[str(job.source), "", "error", one_line(str(exc)), "", "", ""]])
                continue
            seconds = time.perf_counter() - started
            summary.images += 1
            summary.seconds += seconds
            summary.input_megapixels += picture.megapixels
            summary.output_megapixels += picture.megapixels * enhancer.scale**2
            journal.append([[str(job.source), job.output.as_posix(), "ok", "", f"{picture.megapixels:.4f}",
                             f"{seconds:.3f}", digest]])
    return summary


def _sha256(path: Path) -> str:
    """The input's checksum, or "" when it cannot be read (its decode then fails with the reason)."""
    try:
        return fingerprint_path(path)
    except OSError:
        return ""


def _is_scientific(path: Path) -> bool:
    from flare.runtime.io.images import is_fits

    return is_fits(path)


def raise_if_failed(summary: EnhanceSummary) -> None:
    """Exit code 1 after the run when some files could not be enhanced (they are listed above)."""
    if summary.failed:
        total = summary.images + summary.failed + summary.skipped
        raise FlareError(f"{summary.failed} of {total} images could not be enhanced (see the lines above); "
                         "the others are in --out")
