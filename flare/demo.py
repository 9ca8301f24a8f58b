"""``flare demo``: the whole path from sky images to a triaged survey, on a laptop CPU.

1. synthesize a small labelled sky set (8 classes) and a separate "survey" from other seeds;
2. train a small backbone briefly on a leak-free split;
3. export it to ONNX behind the parity gate;
4. triage a survey folder that also holds real FITS images shipped inside astropy and one
   deliberately broken file, with the torch-free runtime;
5. print where every output was written.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from flare.options import input_size

#: Real astronomical FITS files that ship with astropy's test data (globular cluster M13,
#: a survey field, an HST raw frame); whichever exist in the installed astropy are used.
ASTROPY_FITS = (
    "io/fits/hdu/compressed/tests/data/m13.fits",
    "io/fits/hdu/compressed/tests/data/m13_rice.fits",
    "modeling/tests/data/1904-66_AZP.fits",
    "io/fits/tests/data/o4sp040b0_raw.fits",
)


def astropy_fits_files() -> list[Path]:
    """The sample FITS files of the installed astropy (empty without astropy)."""
    try:
        import astropy
    except ImportError:
        return []
    base = Path(astropy.__file__).parent
    return [base / rel for rel in ASTROPY_FITS if (base / rel).is_file()]


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("flare-demo"), show_default=True,
              help="Folder for everything the demo writes (re-running reuses finished steps).")
@click.option("--model", "model_name", default="resnet18", show_default=True, help="Backbone to train.")
@click.option("--per-class", default=80, show_default=True, help="Training images per class.")
@click.option("--epochs", default=15, show_default=True)
@input_size(64)
def demo(out: Path, model_name: str, per_class: int, epochs: int, input_size: int) -> None:
    """Synthesize, train, export with the parity gate, and triage a survey, in minutes on a CPU."""
    from flare.export.classifier import export_classifier
    from flare.runtime.artifacts import ClassifierTraining
    from flare.runtime.classify import Classifier
    from flare.runtime.progress import log, progress_bar
    from flare.runtime.triage import triage
    from flare.training.classifiers.train import train
    from flare.training.data.synth import SynthConfig, synthesize

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data, survey, run, bundle = out / "data", out / "survey", out / "run", out / "bundle"

    log(f"[1/4] synthesizing {per_class} sky images per class into {data}")
    with progress_bar(per_class * 8, "synthesizing") as advance:
        synthesize(data, SynthConfig(per_class=per_class, size=128, seed=0), progress=advance)

    log(f"[2/4] training {model_name} for {epochs} epochs at {input_size} px into {run}")
    resume = (run / "train_state.pt").is_file()
    results = train(ClassifierTraining(model=model_name, data=str((data / "hr").resolve()), epochs=epochs, batch=32,
                                       lr=1e-3, step_size=max(epochs // 2, 1), input_size=input_size, seed=0),
                    run, resume=resume)

    log(f"[3/4] exporting to ONNX with the parity gate into {bundle}")
    _, report = export_classifier(str(run), bundle)
    log(report.summary())

    log(f"[4/4] triaging a survey folder with the torch-free runtime into {out / 'triage.csv'}")
    with progress_bar(12 * 8, "survey") as advance:
        synthesize(survey / "synthetic", SynthConfig(per_class=12, size=128, seed=1), progress=advance)
    shutil.rmtree(survey / "synthetic" / "lr", ignore_errors=True)  # the survey holds the HR images
    real = survey / "fits"
    real.mkdir(parents=True, exist_ok=True)
    fits_files = astropy_fits_files()
    for f in fits_files:
        shutil.copyfile(f, real / f.name)
    (survey / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    csv_path = out / "triage.csv"
    with Classifier(bundle) as classifier, progress_bar(None, f"triage on {classifier.backend}") as bar:
        summary = triage(survey, classifier, csv_path, threshold=0.5, progress=bar, on_start=bar.start)

    click.echo("")
    click.echo(summary.format())
    click.echo("")
    click.echo(f"FLARE Edge demo finished in {time.perf_counter() - t0:.0f} s")
    click.echo(f"  synthetic data      {data}/hr and {data}/lr (8 classes x {per_class})")
    click.echo(f"  training run        {run} (test accuracy {results['test_acc']:.3f}, "
               f"macro-F1 {results['test_macro_f1']:.3f})")
    click.echo(f"  confusion matrix    {run / 'confusion_matrix.png'}")
    click.echo(f"  bundle              {bundle} ({report.summary()})")
    click.echo(f"  survey              {survey} ({len(fits_files)} real FITS files from astropy, one broken file)")
    click.echo(f"  triage results      {csv_path}")
    click.echo(f"Next: flare info {bundle}; flare classify {bundle} <image>; flare triage <dir> --model {bundle} --out results.csv")
