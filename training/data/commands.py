"""``flare data``: make and split image data sets (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import click

from flare.runtime.foundation.options import COUNT, FRACTION, PIXELS, SEED, CommandGroup, InputPath, OutputPath


@click.group(cls=CommandGroup)
def data() -> None:
    """Make and split image data sets (no torch needed)."""


@data.command()
@click.option("--out", type=OutputPath("dir", made_by="synth.json"), required=True, help="Folder for hr/ and lr/.")
@click.option("--per-class", type=COUNT, default=40, show_default=True, help="Images per class.")
@click.option("--size", type=PIXELS, default=128, show_default=True, help="HR side in pixels.")
@SEED
@click.option("--scale", type=COUNT, default=4, show_default=True, help="HR/LR scale factor.")
@click.option("--look", type=click.Choice(["classic", "photo"]), default="classic", show_default=True,
              help="photo: randomised optics, noise, stretches and real objects' shapes (transfers to real "
                   "photos); classic: the original gentle camera of the committed synthetic tables.")
def synth(out: Path, per_class: int, size: int, seed: int, scale: int, look: str) -> None:
    """Procedural sky images for the 8 classes, HR and their degraded LR twins."""
    from flare.runtime.foundation.progress import log, progress_bar
    from flare.training.data.synth import SynthConfig, synthesize

    config = SynthConfig(per_class=per_class, size=size, seed=seed, scale=scale, look=look)
    with progress_bar(per_class * 8, "synthesizing") as advance:
        summary = synthesize(out, config, progress=advance)
    log(f"wrote {summary['count']} images: HR in {summary['hr']}, LR in {summary['lr']}")


class StellariumFolder(InputPath):
    """STELLARIUM_DIR: checked as an input folder, and as Stellarium's nebulae folder, when parsed,
    so a missing installation is one line that says how to install it."""

    def __init__(self) -> None:
        super().__init__("dir")

    def check(self, path: Path, what: str) -> Path:
        from flare.training.data.stellarium import find_installation

        return find_installation(path)


@data.command()
@click.argument("stellarium_dir", metavar="[STELLARIUM_DIR]", type=StellariumFolder(), required=False,
                default="/usr/share/stellarium/nebulae/default")
@click.option("--out", type=OutputPath("dir", made_by="stellarium.json"), required=True,
              help="Folder for hr/, lr/, stellarium.csv and stellarium.json (replaced as a whole).")
@click.option("--size", type=PIXELS, default=128, show_default=True, help="HR side in pixels.")
@click.option("--lr-scale", type=COUNT, default=4, show_default=True, help="HR/LR scale factor.")
def stellarium(stellarium_dir: Path, out: Path, size: int, lr_scale: int) -> None:
    """Stellarium's deep-sky photos (Debian package stellarium-data) as galaxy / nebula / star
    HR images and LR twins, classed by Stellarium's own catalogue; Messier objects held out."""
    from flare.runtime.foundation.progress import Bar, log
    from flare.training.data.stellarium import StellariumConfig, build_stellarium

    bar = Bar("stellarium")
    try:
        summary = build_stellarium(stellarium_dir, out, StellariumConfig(size=size, lr_scale=lr_scale),
                                   progress=bar, planned=bar.start)
    finally:
        bar.close()
    per_class = ", ".join(f"{c} {n}" for c, n in summary["per_class"].items())
    left = ", ".join(f"{reason} {n}" for reason, n in summary["left_out"].items()) or "none"
    log(f"wrote {summary['count']} of {summary['photos']} photos to {out} ({per_class}); "
        f"left out: {left}; Stellarium catalogue {summary['catalogue_version']}, {summary['seconds']} s")


@data.command()
@click.argument("real", metavar="REAL", type=InputPath("dir"))
@click.argument("synthetic", metavar="SYNTHETIC", type=InputPath("dir"))
@click.option("--out", type=OutputPath("dir", made_by="mix.json"), required=True, help="Folder for the mixed hr/ and lr/.")
@click.option("--synthetic", "synthetic_classes", type=click.Choice(["missing", "all"]), default="missing",
              show_default=True, help="Synthetic images of the classes REAL lacks only, or of every class.")
def mix(real: Path, synthetic: Path, out: Path, synthetic_classes: str) -> None:
    """Real photos for the classes REAL has, SYNTHETIC's images for the others (linked, not copied)."""
    from flare.runtime.foundation.progress import log
    from flare.training.data.mix import mix as mix_sets

    for name, entry in mix_sets(real, synthetic, out, synthetic_classes).items():
        log(f"{name}: {entry['images']} {entry['source']} images")
    log(f"mixed set written to {out}")


@data.command()
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--out", type=OutputPath("file"), required=True, help="Split CSV to write.")
@click.option("--group-regex", default=None, help="Regex whose 'group' (or first) group names the original image.")
@click.option("--val", type=FRACTION, default=0.15, show_default=True, help="Fraction of groups for validation.")
@click.option("--test", type=FRACTION, default=0.15, show_default=True, help="Fraction of groups for the test.")
@SEED
def split(data_dir: Path, out: Path, group_regex: str | None, val: float, test: float, seed: int) -> None:
    """Leak-free, class-stratified split grouped by original image."""
    from collections import Counter

    from flare.runtime.foundation.progress import log
    from flare.training.data.folders import scan_image_folder
    from flare.training.data.splits import check_split, split_groups, write_split

    samples, _ = scan_image_folder(data_dir)
    rows = split_groups(samples, val=val, test=test, seed=seed, group_regex=group_regex)
    if val > 0 and test > 0:
        check_split(rows, data_dir)
    write_split(rows, out)
    counts = Counter(r["split"] for r in rows)
    groups = len(set(r["group"] for r in rows))
    log(f"{out}: {len(rows)} files in {groups} groups: "
        + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test")))
