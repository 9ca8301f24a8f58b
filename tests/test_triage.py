"""Tests for flare.runtime.apps.triage: CSV shape, bad files, resume, SIGKILL safety, the ONNX path.

A fake numpy predictor (probabilities from each image's mean colour) stands in for a model so
the tests need no bundle; one test runs a real tiny ONNX graph through onnxruntime.
"""

from __future__ import annotations
import csv
import hashlib
import io
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from flare.runtime.apps.triage import FIXED_COLUMNS, TriageSummary, csv_header, triage
from flare.runtime.core.preprocess import PreprocessSpec, preprocess
from flare.runtime.core.taxonomy import FINE_CLASSES, MACRO_OF
from flare.runtime.foundation.errors import FlareError, UsageError
from flare.runtime.io.images import load_rgb
from flare.runtime.io.images import list_images

REPO = Path(__file__).resolve().parents[1]
LABELS = list(FINE_CLASSES)
SPEC = PreprocessSpec(size=32)
# Fixed class weights: each class responds to a direction in mean-colour space.
WEIGHTS = np.random.default_rng(7).normal(size=(3, len(LABELS))) * 3.0


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class FakePredictor:
    """Deterministic stand-in for a model: softmax of the mean colour times fixed weights.

    Rows are computed independently of the batch they arrive in (no BLAS), so a run split by
    kills and resumes must produce byte-identical output to a clean run.
    """

    def __init__(self, *, delay: float = 0.0, fail_after: int | None = None,
                 labels: list[str] | None = None) -> None:
        self.spec = SPEC
        self.labels = list(labels or LABELS)
        self.macro_of = {label: MACRO_OF.get(label, "Other") for label in self.labels}
        self.notes: list[str] = []
        self.fingerprint = "fake-" + ",".join(self.labels)
        self.delay = delay
        self.fail_after = fail_after
        self.calls = 0

    def predict(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, 32, 32)
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("model crashed")
        if self.delay:
            time.sleep(self.delay)
        mean = batch.mean(axis=(2, 3), dtype=np.float64)
        weights = WEIGHTS[:, : len(self.labels)]
        return softmax((mean[:, :, None] * weights[None]).sum(axis=1)).astype(np.float32)


# --- fixtures: image files ----------------------------------------------------------------


def colour_image(i: int, size: int = 12) -> Image.Image:
    rng = np.random.default_rng(i)
    base = rng.integers(0, 256, size=3)
    noise = rng.integers(-20, 21, size=(size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def make_survey(root: Path, n: int) -> list[str]:
    """``n`` small PNGs spread over nested folders; returns their sorted relative paths."""
    rels = []
    for i in range(n):
        rel = f"field{i % 3}/night{i % 2}/img{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        colour_image(i).save(root / rel)
        rels.append(rel)
    return sorted(rels)


def write_fits(path: Path, data: np.ndarray) -> None:
    from astropy.io import fits

    fits.PrimaryHDU(data).writeto(path)


def write_bomb_png(path: Path, side: int = 12000) -> None:
    """A valid 1-bit PNG of side x side pixels, a few kB on disk (a decompression bomb)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = zlib.compress(b"\x00" * ((side // 8 + 1) * side))
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))


def write_premultiplied_la_tiff(path: Path) -> None:
    """A grey TIFF with *associated* alpha, which Pillow opens as mode 'La'.

    Pillow cannot write 'La', so an 'LA' TIFF gets its ExtraSamples tag (338) patched from
    2 (unassociated alpha) to 1 (associated alpha).
    """
    buf = io.BytesIO()
    Image.new("LA", (4, 4), (100, 128)).save(buf, format="TIFF")
    entry = struct.pack("<HHII", 338, 3, 1, 2)
    assert buf.getvalue().count(entry) == 1
    path.write_bytes(buf.getvalue().replace(entry, struct.pack("<HHII", 338, 3, 1, 1)))
    with Image.open(path) as img:
        assert img.mode == "La"


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        records = list(csv.reader(f))
    header = records[0]
    for record in records[1:]:
        assert len(record) == len(header), record
    return header, [dict(zip(header, record)) for record in records[1:]]


def assert_complete(out: Path, rels: list[str]) -> list[dict[str, str]]:
    """Every file exactly once, in sorted order, every row ``ok`` and consistent."""
    assert out.read_bytes().endswith(b"\n")
    header, rows = read_csv(out)
    assert header == csv_header(LABELS)
    assert [r["path"] for r in rows] == rels
    for r in rows:
        assert r["status"] == "ok", r
        probs = [float(r[f"p_{label}"]) for label in LABELS]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert r["fine_class"] == LABELS[int(np.argmax(probs))]
        summed: dict[str, float] = {}
        for label, prob in zip(LABELS, probs):
            summed[MACRO_OF[label]] = summed.get(MACRO_OF[label], 0.0) + prob
        assert float(r["macro_confidence"]) == pytest.approx(summed[r["macro_class"]], abs=1e-5)
        assert summed[r["macro_class"]] == pytest.approx(max(summed.values()), abs=1e-5)
        assert r["confidence"] == f"{max(probs):.6f}"
    return rows


# --- basic run ----------------------------------------------------------------------------


def test_mixed_formats_one_row_each(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".cache").mkdir()
    colour_image(1).save(root / "rgb.png")
    colour_image(2).save(root / "a" / "photo.jpg", quality=90)
    colour_image(3).convert("L").save(root / "a" / "grey.tif")
    Image.fromarray((np.arange(144).reshape(12, 12) * 400).astype(np.uint16)).save(
        root / "a" / "b" / "deep16.tiff")
    with Image.open(root / "a" / "b" / "deep16.tiff") as img:
        assert img.mode == "I;16"
    rgba = colour_image(4).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "a" / "b" / "alpha.tif")
    write_fits(root / "a" / "sky.fits", np.random.default_rng(0).normal(size=(20, 24)))
    (root / "notes.txt").write_text("not listed")
    colour_image(5).save(root / ".cache" / "hidden.png")
    colour_image(6).save(root / ".thumb.png")
    out = root / "results.csv"  # inside the folder being triaged

    summary = triage(root, FakePredictor(), out, batch_size=4, workers=2)

    expected = sorted(["rgb.png", "a/photo.jpg", "a/grey.tif", "a/b/deep16.tiff",
                       "a/b/alpha.tif", "a/sky.fits"])
    header, _ = read_csv(out)
    assert header[: len(FIXED_COLUMNS)] == ["path", "fine_class", "macro_class", "confidence",
                                             "flagged", "status", "error"]
    assert header[len(FIXED_COLUMNS):] == [*(f"p_{label}" for label in LABELS), "macro_confidence"]
    rows = assert_complete(out, expected)
    assert all(r["error"] == "" and r["flagged"] in ("0", "1") for r in rows)
    assert isinstance(summary, TriageSummary)
    assert (summary.total, summary.processed, summary.skipped, summary.errors) == (6, 6, 0, 0)
    assert summary.flagged == sum(r["flagged"] == "1" for r in rows)
    assert {k: v for k, v in summary.class_counts.items() if v} == Counter(
        r["fine_class"] for r in rows)
    assert list(summary.class_counts) == LABELS
    assert summary.images_per_second > 0
    text = summary.format()
    assert str(out) in text and "6 triaged" in text


def test_list_images_excludes_results_file_and_sorts(tmp_path: Path) -> None:
    for rel in ["z.png", "b/a.FITS", "a/c.jpeg", "results.png", ".git/x.png", "a/.tmp.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found, unlisted = list_images(tmp_path, exclude=tmp_path / "results.png")
    assert found == ["a/c.jpeg", "b/a.FITS", "z.png"]
    assert unlisted == []


# --- bad files ----------------------------------------------------------------------------


def test_bad_files_become_error_rows(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    root.mkdir()
    colour_image(1).save(root / "good1.png")
    colour_image(2).save(root / "good2.png")
    noisy = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), np.uint8))
    noisy.save(root / "truncated.png")
    data = (root / "truncated.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("hello, I am not a picture\n")
    write_bomb_png(root / "bomb.png")
    write_fits(root / "nan.fits", np.full((8, 8), np.nan))
    write_fits(root / "cube5.fits", np.ones((5, 8, 8)))
    write_premultiplied_la_tiff(root / "premultiplied.tif")
    out = tmp_path / "out.csv"

    summary = triage(root, FakePredictor(), out, batch_size=3, workers=3)

    header, rows = read_csv(out)
    by_path = {r["path"]: r for r in rows}
    assert sorted(by_path) == sorted(p.name for p in root.iterdir())
    expected_message = {
        "truncated.png": "truncated",
        "empty.png": "empty",
        "text.png": "not an image",
        "bomb.png": "decompression bomb",
        "nan.fits": "no finite pixel",
        "cube5.fits": "shape (5, 8, 8)",
    }
    for name, needle in expected_message.items():
        row = by_path[name]
        assert row["status"] == "error", row
        assert name in row["error"] and needle in row["error"], row["error"]
        assert "\n" not in row["error"]
        assert all(row[c] == "" for c in header if c.startswith("p_"))
        assert row["fine_class"] == row["macro_class"] == row["confidence"] == row["flagged"] == ""
    for name in ("good1.png", "good2.png", "premultiplied.tif"):
        assert by_path[name]["status"] == "ok" and by_path[name]["error"] == ""
    assert (summary.total, summary.processed, summary.errors) == (9, 9, 6)
    assert summary.classified == 3
    assert "6 unreadable" in summary.format()


def test_small_max_pixels_refuses_large_images(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    root.mkdir()
    colour_image(1, size=10).save(root / "small.png")
    colour_image(2, size=40).save(root / "large.png")
    triage(root, FakePredictor(), tmp_path / "out.csv", max_pixels=500)
    _, rows = read_csv(tmp_path / "out.csv")
    status = {r["path"]: (r["status"], r["error"]) for r in rows}
    assert status["small.png"] == ("ok", "")
    assert status["large.png"][0] == "error" and "over the limit of 500" in status["large.png"][1]


def test_unexpected_decoder_exception_becomes_error_row(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import flare.runtime.apps.triage as triage_module

    root = tmp_path / "survey"
    rels = make_survey(root, 5)

    def flaky_load(path: Path, **kwargs: object) -> np.ndarray:
        if Path(path).name == "img002.png":
            raise ZeroDivisionError("a bug in a decoder")
        return load_rgb(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(triage_module, "load_rgb", flaky_load)
    summary = triage(root, FakePredictor(), tmp_path / "out.csv", batch_size=2)
    _, rows = read_csv(tmp_path / "out.csv")
    assert [r["path"] for r in rows] == rels
    bad = [r for r in rows if r["status"] == "error"]
    assert len(bad) == 1 and bad[0]["path"].endswith("img002.png")
    assert "ZeroDivisionError" in bad[0]["error"] and "img002.png" in bad[0]["error"]
    assert summary.errors == 1 and summary.classified == 4


# --- resume -------------------------------------------------------------------------------


def test_resume_after_predict_error(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    rels = make_survey(root, 10)
    (root / "aaa_broken.png").write_bytes(b"")  # sorts first: an error row from run one
    rels = sorted(rels + ["aaa_broken.png"])
    out = tmp_path / "out.csv"

    with pytest.raises(RuntimeError, match="model crashed"):
        triage(root, FakePredictor(fail_after=2), out, batch_size=3, workers=2)
    _, partial = read_csv(out)
    assert [r["path"] for r in partial] == rels[:6]  # two whole batches, nothing after

    calls: list[int] = []
    summary = triage(root, FakePredictor(), out, batch_size=3, progress=calls.append)
    assert (summary.total, summary.skipped, summary.processed) == (11, 6, 5)
    assert sum(calls) == 5 and all(n > 0 for n in calls)
    assert summary.errors == 1  # counted from the first run's row
    _, rows = read_csv(out)
    assert [r["path"] for r in rows] == rels

    reference = tmp_path / "reference.csv"
    triage(root, FakePredictor(), reference, batch_size=4)
    assert out.read_bytes() == reference.read_bytes()

    again = triage(root, FakePredictor(), out)
    assert (again.processed, again.skipped) == (0, 11)
    assert out.read_bytes() == reference.read_bytes()


def test_torn_last_line_is_repaired(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 8)
    reference = tmp_path / "reference.csv"
    triage(root, FakePredictor(), reference)
    full = reference.read_bytes()
    lines = full.splitlines(keepends=True)

    out = tmp_path / "out.csv"
    (tmp_path / "out.csv.flare.json").write_bytes((tmp_path / "reference.csv.flare.json").read_bytes())
    out.write_bytes(b"".join(lines[:-3]) + lines[-3][:25])  # last two rows lost, one torn
    summary = triage(root, FakePredictor(), out, batch_size=2)
    assert (summary.skipped, summary.processed) == (5, 3)
    assert out.read_bytes() == full

    out.write_bytes(lines[0][:12])  # killed while writing the header
    triage(root, FakePredictor(), out)
    assert out.read_bytes() == full


def test_foreign_file_is_refused_untouched(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 2)
    out = tmp_path / "out.csv"
    out.write_bytes(b"my precious notes")  # no newline, but not a torn header either
    with pytest.raises(FlareError, match="another --out"):
        triage(root, FakePredictor(), out)
    assert out.read_bytes() == b"my precious notes"


def test_header_mismatch_raises(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 3)
    out = tmp_path / "out.csv"
    triage(root, FakePredictor(labels=["star", "galaxy"]), out)
    before = out.read_bytes()
    with pytest.raises(FlareError, match="another --out"):
        triage(root, FakePredictor(), out)
    assert out.read_bytes() == before


def test_malformed_middle_row_raises(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 3)
    out = tmp_path / "out.csv"
    triage(root, FakePredictor(), out)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(lines[0] + b"oops,1,2\n" + b"".join(lines[1:]))
    with pytest.raises(FlareError, match="row 2 has 3 cells"):
        triage(root, FakePredictor(), out)


# --- SIGKILL ------------------------------------------------------------------------------

KILLABLE_RUN = """
import pathlib, sys
sys.path.insert(0, sys.argv[1])
from test_triage import FakePredictor
from flare.runtime.apps.triage import triage
triage(pathlib.Path(sys.argv[2]), FakePredictor(delay=0.05), pathlib.Path(sys.argv[3]),
       batch_size=2, workers=2)
"""


def run_and_kill(script: str, root: Path, out: Path, started: Callable[[], bool], rng: random.Random) -> int:
    """Run ``script`` (a triage of ``root`` into ``out``), SIGKILL it a random moment after
    ``started()`` first holds, and return its exit code (0 when it finished first)."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent), str(root), str(out)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline and not started():
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode in (-signal.SIGKILL, 0), stderr.decode()
    return proc.returncode


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    rels = make_survey(root, 60)
    reference = tmp_path / "reference.csv"
    triage(root, FakePredictor(), reference, batch_size=7)
    rng = random.Random(20240611)
    kills_mid_run = 0

    for attempt in range(5):
        out = tmp_path / f"killed{attempt}.csv"
        for _ in range(2):  # the second kill lands in a resumed run
            code = run_and_kill(KILLABLE_RUN, root, out, lambda: out.exists() and out.stat().st_size > 0, rng)
            rows_written = out.read_bytes().count(b"\n") - 1
            kills_mid_run += code == -signal.SIGKILL and 0 < rows_written < len(rels)

        summary = triage(root, FakePredictor(), out, batch_size=2)
        assert summary.skipped + summary.processed == len(rels)
        assert_complete(out, rels)
        assert out.read_bytes() == reference.read_bytes()

    assert kills_mid_run >= 3, "the kills should mostly land while rows are being written"


# --- options and contracts ----------------------------------------------------------------


def test_threshold_flags_low_confidence(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 12)
    first = tmp_path / "first.csv"
    assert triage(root, FakePredictor(), first, threshold=0.0).flagged == 0
    _, rows = read_csv(first)
    confidences = sorted(float(r["confidence"]) for r in rows)
    threshold = confidences[len(confidences) // 2]
    assert confidences[0] < threshold

    second = tmp_path / "second.csv"
    summary = triage(root, FakePredictor(), second, threshold=threshold)
    _, rows = read_csv(second)
    for r in rows:
        assert r["flagged"] == ("1" if float(r["confidence"]) < threshold else "0")
    assert summary.flagged == sum(c < threshold for c in confidences) == len(confidences) // 2
    # A written confidence of exactly 1.000000 is not below 1.0, so that row stays unflagged.
    everything = triage(root, FakePredictor(), tmp_path / "all.csv", threshold=1.0)
    assert everything.flagged == sum(c < 1.0 for c in confidences) >= 11


def test_parallel_decoding_and_batching_do_not_change_output(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 23)
    outputs = []
    for workers, batch in ((1, 1), (4, 5), (8, 64)):
        out = tmp_path / f"w{workers}b{batch}.csv"
        calls: list[int] = []
        summary = triage(root, FakePredictor(), out, workers=workers, batch_size=batch,
                         progress=calls.append)
        assert sum(calls) == summary.processed == 23
        assert len(calls) == -(-23 // batch)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_bad_arguments_and_predictor_shape(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 2)
    out = tmp_path / "out.csv"
    with pytest.raises(UsageError):
        triage(root, FakePredictor(), out, batch_size=0)
    with pytest.raises(UsageError):
        triage(root, FakePredictor(), out, threshold=1.5)
    with pytest.raises(UsageError):
        triage(root / "missing", FakePredictor(), out)

    class WrongWidth(FakePredictor):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            return super().predict(batch)[:, :3]

    with pytest.raises(FlareError, match="shape"):
        triage(root, WrongWidth(), out)
    assert read_csv(out)[1] == []  # header only: nothing half-written


# --- a real ONNX model --------------------------------------------------------------------


class OnnxPredictor:
    """The smallest real Predictor: an ONNX graph run by onnxruntime on the CPU."""

    def __init__(self, model: bytes, labels: list[str]) -> None:
        import onnxruntime as ort

        self.spec = SPEC
        self.labels = labels
        self.macro_of = dict(MACRO_OF)
        self.notes: list[str] = []
        self.fingerprint = hashlib.sha256(model).hexdigest()
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": batch})[0]


def tiny_onnx_model(weights: np.ndarray) -> bytes:
    """GlobalAveragePool -> Flatten -> MatMul(weights) -> Softmax, as a serialized model."""
    from onnx import TensorProto, helper, numpy_helper

    n_classes = weights.shape[1]
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_real_onnx_model(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="building the model needs the 'export' extra")
    pytest.importorskip("onnxruntime", reason="running it needs the 'cpu' extra")
    root = tmp_path / "survey"
    rels = make_survey(root, 9)
    (root / "broken.jpg").write_text("nope")
    out = tmp_path / "out.csv"

    summary = triage(root, OnnxPredictor(tiny_onnx_model(WEIGHTS), LABELS), out, batch_size=4)

    assert (summary.processed, summary.errors, summary.classified) == (10, 1, 9)
    _, rows = read_csv(out)
    by_path = {r["path"]: r for r in rows}
    assert by_path["broken.jpg"]["status"] == "error"
    for rel in rels:
        x = preprocess(load_rgb(root / rel), SPEC)
        expected = softmax(x.mean(axis=(1, 2), dtype=np.float64) @ WEIGHTS)
        got = np.array([float(by_path[rel][f"p_{label}"]) for label in LABELS])
        np.testing.assert_allclose(got, expected, atol=2e-6)
        assert by_path[rel]["fine_class"] == LABELS[int(np.argmax(expected))]


def test_resume_with_another_model_is_refused(tmp_path: Path) -> None:
    """Rows of one model are never resumed into by another: the CSV's settings record says so."""
    root = tmp_path / "survey"
    make_survey(root, 4)
    out = tmp_path / "out.csv"
    triage(root, FakePredictor(), out)
    before = out.read_bytes()
    other = FakePredictor()
    other.fingerprint = "another model"
    with pytest.raises(FlareError, match=r"--model .* then, .* now.*another --out"):
        triage(root, other, out)
    with pytest.raises(FlareError, match=r"--threshold 0.5 then, 0.9 now"):
        triage(root, FakePredictor(), out, threshold=0.9)
    assert out.read_bytes() == before


def test_a_second_run_on_the_same_csv_is_told_to_wait(tmp_path: Path) -> None:
    from flare.runtime.foundation.journal import CsvJournal
    from flare.runtime.apps.triage import csv_header

    root = tmp_path / "survey"
    make_survey(root, 2)
    out = tmp_path / "out.csv"
    with CsvJournal(out, csv_header(LABELS)):  # another run holds the file
        with pytest.raises(FlareError) as refused:
            triage(root, FakePredictor(), out)
    message = str(refused.value)
    assert "being written by another flare process" in message and "delete" not in message
