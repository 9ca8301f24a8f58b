"""``flare enhance``: tiled super-resolution in the torch-free runtime.

Agreement with PyTorch (whole image and same tiles), any image size, batching, bit depths
and formats, FITS units and WCS, resume, unreadable files, and working memory on a
4096 x 4096 image.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from flare.cli import cli
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.io.pngwrite import PngWriter
from flare.runtime.tasks.enhance import ArraySource, Enhancer

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

ASTROPY_DATA = Path(__import__("astropy").__file__).parent
M13 = ASTROPY_DATA / "io/fits/hdu/compressed/tests/data/m13.fits"  # globular cluster M13, with a WCS
SIP = ASTROPY_DATA / "nddata/tests/data/sip-wcs.fits"  # SIP distortion, PC + CDELT


@pytest.fixture(scope="module")
def sr_run(sky_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flare.runtime.core.runs import SRTraining
    from flare.training.sr.train import train_sr

    run = tmp_path_factory.mktemp("enhance") / "run"
    train_sr(SRTraining(data=str(sky_data / "hr"), epochs=1, steps_per_epoch=4, batch=2, patch=32), run)
    # Seconds of training leave a noisy correction on top of bicubic. Damp it (and cancel the
    # mean SwinIR adds back) so outputs look like the input and units, ranges and pictures can
    # be checked, while every layer of the network still acts.
    from safetensors.torch import load_file, save_file

    from flare.training.sr.swinir import RGB_MEAN

    weights = load_file(run / "best.safetensors")
    weights["sr.upsample.0.weight"] *= 0.02
    weights["sr.upsample.0.bias"] = torch.tensor(RGB_MEAN).repeat_interleave(16) * -1.0
    save_file(weights, run / "best.safetensors")
    return run


@pytest.fixture(scope="module")
def sr_bundle(sr_run: Path) -> Path:
    from flare.export.sr import export_sr

    return export_sr(sr_run, sr_run.parent / "bundle")[0]


def _sky(height: int, width: int, seed: int = 5) -> np.ndarray:
    from flare.training.data.synth import render

    return render("galaxy", np.random.default_rng(seed), max(height, width, 64))[:height, :width]


def _enhance_array(bundle: Path, image: np.ndarray, **kwargs: int) -> np.ndarray:
    with Enhancer(bundle, **kwargs) as enhancer:
        s = enhancer.scale
        out = np.full((3, image.shape[0] * s, image.shape[1] * s), np.nan, np.float32)

        def sink(first: int, rows: np.ndarray) -> None:
            assert np.isnan(out[:, first:first + rows.shape[1]]).all()  # each row is handed over once
            out[:, first:first + rows.shape[1]] = rows

        enhancer.run(ArraySource(image, 3), sink)
    assert not np.isnan(out).any()
    return out


def _torch_whole(run: Path, image: np.ndarray) -> np.ndarray:
    from flare.training.sr.train import load_sr

    model, _, _ = load_sr(run)
    with torch.inference_mode():
        return model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)[0].numpy()


def test_tiled_runtime_equals_pytorch(sr_run: Path, sr_bundle: Path) -> None:
    """Same tiles as PyTorch's sr_tiled to float rounding; whole-image PyTorch within 0.5 of an
    8-bit level at overlap 16 (docs/commands.md states this tolerance)."""
    from flare.training.sr.tiling import sr_tiled
    from flare.training.sr.train import load_sr

    image = _sky(150, 131)
    got = _enhance_array(sr_bundle, image, tile=64, overlap=16, batch=3)
    model, _, _ = load_sr(sr_run)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    same_tiles = sr_tiled(model, x, 4, 64, 16)[0].numpy()
    np.testing.assert_allclose(got, same_tiles, atol=1e-5, rtol=0)
    whole = _torch_whole(sr_run, image)
    assert np.abs(np.clip(got, 0, 1) - np.clip(whole, 0, 1)).max() * 255 < 0.5


@pytest.mark.parametrize("size", [(37, 45), (20, 300), (200, 9)], ids=["below_tile", "wide", "narrow"])
def test_any_size_and_batch_do_not_change_the_result(sr_run: Path, sr_bundle: Path, size: tuple[int, int]) -> None:
    image = _sky(*size)
    one = _enhance_array(sr_bundle, image, tile=48, overlap=16, batch=1)
    many = _enhance_array(sr_bundle, image, tile=48, overlap=16, batch=5)
    np.testing.assert_allclose(one, many, atol=1e-5, rtol=0)
    assert one.shape == (3, size[0] * 4, size[1] * 4)
    if max(size) <= 48:  # a single tile is whole-image inference
        np.testing.assert_allclose(one, _torch_whole(sr_run, image), atol=1e-5, rtol=0)


def _write_png16(path: Path, pixels: np.ndarray) -> None:
    with open(path, "wb") as f:
        writer = PngWriter(f, pixels.shape[1], pixels.shape[0], 1 if pixels.ndim == 2 else 3, 16)
        writer.write(pixels)
        writer.close()


def _read_png16(path: Path) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    assert info["bitdepth"] == 16
    return np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, -1).squeeze()


def test_formats_and_bit_depths_are_kept(sr_bundle: Path, tmp_path: Path) -> None:
    import tifffile

    src = tmp_path / "in"
    src.mkdir()
    rgb = _sky(40, 52)
    grey16 = (rgb.mean(axis=2) * 257).astype(np.uint16)
    rgb16 = rgb.astype(np.uint16) * 257 + 100
    Image.fromarray(rgb).save(src / "rgb8.png")
    Image.fromarray(rgb[:, :, 0]).save(src / "grey8.png")
    Image.fromarray(grey16).save(src / "grey16.png")
    _write_png16(src / "rgb16.png", rgb16)
    tifffile.imwrite(src / "rgb16.tif", rgb16, photometric="rgb")
    Image.fromarray(rgb).save(src / "photo.jpg", quality=95)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(src / "rgba.png")
    result = CliRunner().invoke(cli, ["enhance", str(sr_bundle), str(src), "--out", str(tmp_path / "out"),
                                      "--tile", "32", "--overlap", "8"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert Image.open(out / "rgb8.png").mode == "RGB" and Image.open(out / "rgb8.png").size == (208, 160)
    assert Image.open(out / "grey8.png").mode == "L"
    assert Image.open(out / "grey16.png").mode == "I;16"
    assert Image.open(out / "photo.png").size == (208, 160)  # JPEG in, lossless PNG out
    rgba = np.asarray(Image.open(out / "rgba.png")).astype(np.float64)
    rgb8 = np.asarray(Image.open(out / "rgb8.png")).astype(np.float64)
    assert rgba.ndim == 3 and rgba.shape[2] == 3
    assert abs(rgba.mean() / rgb8.mean() - 128 / 255) < 0.05  # composited on black at half opacity
    png16 = _read_png16(out / "rgb16.png")
    tif16 = tifffile.imread(out / "rgb16.tif")
    assert png16.dtype == tif16.dtype == np.uint16 and png16.shape == tif16.shape == (160, 208, 3)
    np.testing.assert_array_equal(png16, tif16)  # same pixels through both 16-bit paths
    # 16 bits carry detail 8 bits cannot: the output is not just 8-bit values scaled up
    assert len(np.unique(png16 % 257)) > 50
    # the 8- and 16-bit paths agree on the picture
    assert np.abs(png16 / 65535.0 * 255 - rgb8).mean() < 2.0
    assert "enhanced 7 images" in result.output and "input MP/s" in result.output


def _sky_of(wcs, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    sky = wcs.pixel_to_world(x, y)
    return np.stack([sky.spherical.lon.deg, sky.spherical.lat.deg])


@pytest.mark.parametrize("source", [M13, SIP], ids=["m13_cdelt", "sip_pc"])
def test_fits_keeps_units_header_and_sky_positions(sr_bundle: Path, tmp_path: Path, source: Path) -> None:
    from astropy.io import fits
    from astropy.wcs import WCS

    result = CliRunner().invoke(cli, ["enhance", str(sr_bundle), str(source), "--out", str(tmp_path), "--png",
                                      "--tile", "48", "--overlap", "16"])
    assert result.exit_code == 0, result.output
    with fits.open(source) as hdul:
        hdu = next(h for h in hdul if h.is_image and h.data is not None)
        before, header = hdu.data.astype(np.float64), hdu.header
    with fits.open(tmp_path / source.name) as hdul:
        after, new = hdul[0].data, hdul[0].header
    s = 4
    assert after.dtype == np.dtype(">f4") and after.shape == (before.shape[0] * s, before.shape[1] * s)
    # values are in the input's units (not the network's [0, 1]), and the range is kept
    assert abs(np.median(after) - np.median(before)) < 0.05 * (before.max() - before.min())
    assert before.min() <= after.min() and after.max() <= before.max()
    block_means = after.reshape(before.shape[0], s, before.shape[1], s).mean(axis=(1, 3))
    assert np.corrcoef(block_means.ravel(), before.ravel())[0, 1] > 0.95
    for key in ("CTYPE1", "CTYPE2", "OBJECT", "TELESCOP", "RADESYS"):
        if key in header:
            assert new[key] == header[key], key
    assert "flare enhance" in str(new["HISTORY"]) and "BZERO" not in new
    # the sky position of pixel centres does not move: input (x, y) is output ((x + .5) s - .5, ...)
    x = np.array([0.0, 17.0, before.shape[1] - 1.0, 40.5])
    y = np.array([0.0, 31.0, before.shape[0] - 1.0, 12.25])
    old_wcs, new_wcs = WCS(header), WCS(new)
    np.testing.assert_allclose(_sky_of(new_wcs, (x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5), _sky_of(old_wcs, x, y),
                               atol=1e-8, rtol=0)
    if "A_ORDER" in header:  # the distortion is rescaled, not dropped: it still moves positions
        undistorted = WCS(header)
        undistorted.sip = None
        assert np.abs(_sky_of(undistorted, x, y) - _sky_of(old_wcs, x, y)).max() > 1e-8
    display = Image.open(tmp_path / source.with_suffix(".png").name)
    assert display.size == (after.shape[1], after.shape[0]) and display.mode == "L"
    assert np.asarray(display).std() > 10  # stretched for the eye, not a black frame


def test_fits_blank_pixels_stay_blank(sr_bundle: Path, tmp_path: Path) -> None:
    from astropy.io import fits

    data = np.random.default_rng(0).gamma(2.0, 50.0, (40, 44)).astype(np.float32)
    data[5:9, 10:20] = np.nan
    fits.PrimaryHDU(data).writeto(tmp_path / "blank.fits")
    result = CliRunner().invoke(cli, ["enhance", str(sr_bundle), str(tmp_path / "blank.fits"), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    after = fits.getdata(tmp_path / "out" / "blank.fits")
    expected = np.isnan(np.repeat(np.repeat(data, 4, axis=0), 4, axis=1))
    np.testing.assert_array_equal(np.isnan(after), expected)


def test_resume_skips_finished_outputs_and_refuses_other_settings(sr_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_sky(30 + i, 40, seed=i)).save(src / "sub" / f"{i}.png")
    out = tmp_path / "out"
    args = ["enhance", str(sr_bundle), str(src), "--out", str(out), "--tile", "32", "--overlap", "8"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (out / "sub").iterdir()) == ["0.png", "1.png", "2.png"]
    (out / "sub" / "1.png").unlink()
    stamp = (out / "sub" / "0.png").stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "enhanced 1 images" in again.output and "2 already done" in again.output
    assert (out / "sub" / "0.png").stat().st_mtime_ns == stamp and (out / "sub" / "1.png").is_file()
    other = CliRunner().invoke(cli, [*args[:-4], "--tile", "40", "--overlap", "8"])
    errors = [line for line in other.output.splitlines() if line.startswith("Error:")]
    assert other.exit_code == 1 and len(errors) == 1 and "--tile 32 then, 40 now" in errors[0]
    assert not list(out.rglob("*.part"))


def test_unreadable_file_is_one_line_and_the_run_goes_on(sr_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_sky(30, 30)).save(src / "good.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.fromarray(_sky(3, 30)).save(src / "tiny.png")  # below the model's minimum side
    result = CliRunner().invoke(cli, ["enhance", str(sr_bundle), str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 3  # two files, then the summary line
    assert any("broken.png" in e for e in errors) and any("tiny.png" in e and "at least 5 px" in e for e in errors)
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "broken.png").exists()
    with open(tmp_path / "out" / "enhance.csv", newline="") as f:
        status = {Path(r["input"]).name: r["status"] for r in csv.DictReader(f)}
    assert status == {"good.png": "ok", "broken.png": "error", "tiny.png": "error"}


def test_info_describes_an_enhance_bundle(sr_bundle: Path) -> None:
    result = CliRunner().invoke(cli, ["info", str(sr_bundle)])
    assert result.exit_code == 0, result.output
    assert "task        enhance (fp32)" in result.output and "x4 RGB, window 8" in result.output
    assert "parity      PASS: PSNR" in result.output


def test_enhance_mistakes_are_one_line(sr_bundle: Path, bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(_sky(20, 20)).save(image)
    wrong = CliRunner().invoke(cli, ["enhance", str(bundle), str(image), "--out", str(tmp_path / "o")])
    assert wrong.exit_code == 1 and "not an enhance" in wrong.output
    bad_tile = CliRunner().invoke(cli, ["enhance", str(sr_bundle), str(image), "--out", str(tmp_path / "o"),
                                        "--tile", "16", "--overlap", "12"])
    assert bad_tile.exit_code == 2 and "window" in bad_tile.output
    missing = CliRunner().invoke(cli, ["enhance", str(sr_bundle), str(tmp_path / "nope.png"), "--out",
                                       str(tmp_path / "o")])
    assert missing.exit_code == 1 and "nope.png does not exist" in missing.output


PEAK = """
import sys
from flare.cli import cli
try:
    cli(sys.argv[1:], prog_name="flare", standalone_mode=False)
finally:
    status = open("/proc/self/status").read()
    print("VmHWM", [l.split()[1] for l in status.splitlines() if l.startswith("VmHWM")][0])
"""


def _peak_kib(args: list[str]) -> int:
    result = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split("VmHWM")[-1].split()[0].strip("'[]"))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux /proc")
def test_working_memory_is_bounded_by_tiles_not_the_image(tmp_path: Path, swinir_checkpoint) -> None:
    """4096 x 4096 RGB in, 8192 x 8192 out: the peak beyond that of a 600 x 600 image (same tiles,
    so the same model working memory) stays below the input plus output array sizes. The PNG
    output is streamed, so what remains is the input, its decoding and one band of rows."""
    from flare.export.sr import export_sr
    from flare.training.sr.swinir import SwinIRConfig

    cfg = SwinIRConfig(scale=2, upsampler="pixelshuffledirect", embed_dim=6, depths=(1,), num_heads=(1,))
    bundle = export_sr(swinir_checkpoint(cfg, tmp_path / "x2.pth"), tmp_path / "x2")[0]
    side = 4096
    yy, xx = np.mgrid[0:side, 0:side]
    big = np.dstack([(xx // 7) % 256, (yy // 5) % 256, ((xx + yy) // 11) % 256]).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png", compress_level=1)
    Image.fromarray(big[:600, :600]).save(tmp_path / "small.png")  # full tiles too: the same ONNX Runtime arena
    del big, yy, xx
    common = ["--tile", "256", "--overlap", "16", "--batch", "4"]
    small = _peak_kib(["enhance", str(bundle), str(tmp_path / "small.png"), "--out", str(tmp_path / "s"), *common])
    large = _peak_kib(["enhance", str(bundle), str(tmp_path / "big.png"), "--out", str(tmp_path / "l"), *common])
    input_bytes, output_bytes = side * side * 3, (2 * side) ** 2 * 3
    extra = (large - small) * 1024
    print(f"peak beyond a 64 px run: {extra / 2**20:.0f} MiB; input {input_bytes / 2**20:.0f} MiB, "
          f"output {output_bytes / 2**20:.0f} MiB")
    assert Image.open(tmp_path / "l" / "big.png").size == (2 * side, 2 * side)
    assert extra < input_bytes + output_bytes


def test_sr_bundle_passes_the_static_tensorrt_op_check(sr_bundle: Path) -> None:
    from flare.runtime.core.manifest import Manifest

    ops = Manifest.load(sr_bundle).extra["tensorrt_ops"]
    assert ops["passed"] and "TensorRT 10.16" in ops["checked_against"]
    assert ops["models"]["model"]["unsupported"] == [] and {"Conv", "MatMul", "Softmax"} <= set(ops["models"]["model"]["ops"])


def test_triton_repository_enhances_image_bytes_as_the_runtime_does(sr_bundle: Path, tmp_path: Path) -> None:
    import io

    from PIL import Image
    from triton_fakes import Server, check_onnx_model, parse

    from flare.export.triton import export_triton

    repo = export_triton([sr_bundle], tmp_path / "repo")
    name = sr_bundle.name
    model = check_onnx_model(repo / f"{name}_model")
    assert list(model.input[0].dims) == [3, -1, -1]
    python = parse(repo / name / "config.pbtxt")
    assert python.backend == "python" and [o.name for o in python.output] == ["ENHANCED"]
    picture = _sky(40, 52)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    server = Server(repo)
    try:
        got = server.infer(name, {"IMAGE": np.array([buffer.getvalue()], dtype=object)})["ENHANCED"]
    finally:
        server.close()
    with Enhancer(sr_bundle, RunnerOptions("cpu")) as enhancer:
        want = enhancer.enhance_rgb(picture)
        assert got.shape == (40 * enhancer.scale, 52 * enhancer.scale, 3)
    assert np.abs(got.astype(int) - want).max() <= 1


def test_an_input_changed_since_it_was_enhanced_is_enhanced_again(sr_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_sky(30, 40, seed=1)).save(src / "a.png")
    Image.fromarray(_sky(30, 40, seed=2)).save(src / "b.png")
    out = tmp_path / "out"
    args = ["enhance", str(sr_bundle), str(src), "--out", str(out), "--tile", "32", "--overlap", "8"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = np.asarray(Image.open(out / "a.png")).copy()
    Image.fromarray(_sky(30, 40, seed=9)).save(src / "a.png")  # the same name, another picture
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "enhanced 1 images" in again.output and "1 already done" in again.output
    assert "a.png changed since" in again.output
    assert not np.array_equal(np.asarray(Image.open(out / "a.png")), before)


def test_two_inputs_for_one_output_fail_that_file_not_the_command(sr_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_sky(30, 30, seed=1)).save(src / "m13.png")
    Image.fromarray(_sky(30, 30, seed=2)).convert("RGB").save(src / "m13.jpg")
    Image.fromarray(_sky(30, 30, seed=3)).save(src / "other.png")
    result = CliRunner().invoke(cli, ["enhance", str(sr_bundle), str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "would be written to" in result.output and (tmp_path / "out" / "other.png").is_file()
