"""One preprocessing for training and runtime, equal to the authors' torchvision transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flare.runtime.core.preprocess import PreprocessSpec, StretchSpec, planes_to_rgb, preprocess, stretch, to_rgb
from flare.runtime.foundation.errors import BundleError, ImageDecodeError
from flare.runtime.io.images import load_rgb


def write_images(folder: Path) -> list[Path]:
    """A few images of different sizes, modes and formats, one per class folder."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (mode, size, ext) in enumerate([("RGB", (37, 53), "png"), ("L", (64, 64), "png"),
                                           ("RGBA", (20, 31), "png"), ("RGB", (90, 41), "jpg")]):
        arr = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
        img = Image.fromarray(arr, "RGBA").convert(mode)
        cls = ["galaxy", "nebula", "star", "comet"][i]
        (folder / cls).mkdir(parents=True, exist_ok=True)
        path = folder / cls / f"img{i}.{ext}"
        img.save(path)
        paths.append(path)
    from astropy.io import fits

    (folder / "planet").mkdir(exist_ok=True)
    data = rng.normal(100, 20, (30, 44))
    data[3:6, 4:9] = np.nan
    fits.PrimaryHDU(data).writeto(folder / "planet" / "sky.fits")
    paths.append(folder / "planet" / "sky.fits")
    return paths


def test_training_tensors_are_the_authors_transform_through_a_bundle_spec(tmp_path: Path) -> None:
    """What training feeds the network equals an independent implementation, torchvision's
    Resize / ToTensor / Normalize, under the spec as it travels in a bundle manifest."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from flare.training.classifiers.train import ImageDataset
    from flare.training.data.folders import scan_image_folder

    paths = write_images(tmp_path)
    samples, classes = scan_image_folder(tmp_path)
    spec = PreprocessSpec.from_dict(PreprocessSpec(size=48).to_dict())
    rows = [{"path": s.path, "label": s.label} for s in samples]
    ds = ImageDataset(rows, tmp_path, spec, {c: i for i, c in enumerate(classes)}, cache=False)
    batch, _ = next(iter(DataLoader(ds, batch_size=len(ds))))
    assert batch.dtype == torch.float32 and tuple(batch.shape[1:]) == (3, 48, 48)
    reference = transforms.Compose([transforms.Resize((48, 48)), transforms.ToTensor(),
                                    transforms.Normalize(spec.mean, spec.std)])
    by_path = {tmp_path / r["path"]: i for i, r in enumerate(rows)}
    for path in paths[:4]:  # the Pillow formats; FITS has no torchvision counterpart
        with Image.open(path) as img:
            expected = reference(Image.fromarray(to_rgb(img))).numpy()
        np.testing.assert_allclose(batch[by_path[path]].numpy(), expected, atol=1e-5, err_msg=path.name)


def test_matches_the_authors_torchvision_transform(tmp_path: Path) -> None:
    """FLARE's classifiers used Resize((224, 224)), ToTensor, ImageNet Normalize on PIL images."""
    pytest.importorskip("torchvision")
    from torchvision import transforms

    reference = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                    transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    for path in write_images(tmp_path)[:4]:
        with Image.open(path) as img:
            rgb_pil = Image.fromarray(to_rgb(img))
        expected = reference(rgb_pil).numpy()
        ours = preprocess(load_rgb(path), PreprocessSpec())
        np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_alpha_is_composited_on_black() -> None:
    img = Image.new("RGBA", (2, 1), (200, 100, 50, 0))
    img.putpixel((1, 0), (200, 100, 50, 255))
    rgb = to_rgb(img)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [200, 100, 50]


def test_stretch_handles_nan_and_refuses_all_nan() -> None:
    data = np.linspace(0, 1000, 100).reshape(10, 10)
    data[0, 0] = np.nan
    out = stretch(data)
    assert out.dtype == np.uint8 and out[0, 0] == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel()[1:].astype(int)) >= 0), "the stretch must be monotonic"
    linear = stretch(data, StretchSpec(kind="linear"))
    assert out[5, 5] > linear[5, 5], "asinh lifts faint values above a linear stretch"
    with pytest.raises(ImageDecodeError, match="no finite"):
        stretch(np.full((4, 4), np.nan))


def test_planes() -> None:
    assert planes_to_rgb(np.ones((1, 5, 6))).shape == (5, 6, 3)
    cube = np.stack([np.arange(30).reshape(5, 6) * k for k in (1, 2, 3)])
    assert planes_to_rgb(cube).shape == (5, 6, 3)
    with pytest.raises(ImageDecodeError, match="shape"):
        planes_to_rgb(np.ones((4, 5, 6)))


def test_spec_round_trip_and_refusals() -> None:
    spec = PreprocessSpec(size=96, interpolation="bicubic", stretch=StretchSpec(softening=5.0))
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(BundleError, match="interpolation"):
        PreprocessSpec.from_dict({**spec.to_dict(), "interpolation": "magic"})
    with pytest.raises(BundleError, match="malformed"):
        PreprocessSpec.from_dict({"mean": [0, 0, 0]})


def _stretch_before_astropy(data: np.ndarray, spec: StretchSpec = StretchSpec()) -> np.ndarray:
    """The hand-written stretch this project used before it moved to astropy.visualization,
    kept here only as the reference that the default must still reproduce."""
    data = np.asarray(data, dtype=np.float64)
    finite = np.isfinite(data)
    lo, hi = np.percentile(data[finite], [spec.lower_percentile, spec.upper_percentile])
    hi = hi if hi > lo else lo + 1.0
    x = np.clip((np.where(finite, data, lo) - lo) / (hi - lo), 0.0, 1.0)
    x = np.arcsinh(spec.softening * x) / np.arcsinh(spec.softening)
    return np.round(x * 255.0).astype(np.uint8)


def test_default_stretch_gives_the_same_arrays_on_astropys_real_fits() -> None:
    from astropy.io import fits

    from flare.demo import astropy_fits_files

    files = astropy_fits_files()
    assert len(files) >= 2, "astropy ships its FITS samples"
    for path in files:
        with fits.open(path) as hdul:
            data = next(h.data for h in hdul if h.is_image and h.data is not None and h.data.ndim >= 2)
        plane = np.asarray(data, dtype=np.float64)
        while plane.ndim > 2:
            plane = plane[0]
        np.testing.assert_array_equal(stretch(plane), _stretch_before_astropy(plane), err_msg=path.name)


def test_astropy_intervals_and_stretches_travel_with_the_spec() -> None:
    from astropy.visualization import SqrtStretch, ZScaleInterval

    rng = np.random.default_rng(0)
    sky = rng.normal(100.0, 5.0, (64, 64))
    sky[30:34, 30:34] += 5000.0  # a bright star
    spec = StretchSpec(kind="sqrt", interval="zscale")
    lo, hi = ZScaleInterval().get_limits(sky)
    expected = np.round(SqrtStretch()(np.clip((sky - lo) / (hi - lo), 0, 1), clip=True) * 255).astype(np.uint8)
    np.testing.assert_array_equal(stretch(sky, spec), expected)
    assert not np.array_equal(stretch(sky, spec), stretch(sky))
    carried = PreprocessSpec.from_dict(PreprocessSpec(size=64, stretch=spec).to_dict())
    assert carried.stretch == spec  # what a bundle's manifest carries to the runtime
    with pytest.raises(BundleError, match="unknown interval"):
        PreprocessSpec(stretch=StretchSpec(interval="minmaxish"))
