"""What checking a bundle's checksums costs on open: sha256 of a 100 MB model file.

    python -m flare.benchmarks.checksum_speed [--mb 100] [--repeat 5]

Writes ``benchmarks/results/checksum_speed.{json,md}`` with the machine. The file is read
back from the page cache after the first pass, as it is when a bundle is opened repeatedly;
the first (cold) pass is reported separately.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from flare.benchmarks.common import write_results
from flare.runtime.core.manifest import BundleFile, Manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with open(folder / "model.onnx", "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        manifest = Manifest(task="enhance", files={"model": BundleFile.describe(folder, "model.onnx")},
                            inputs=[], outputs=[])
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            manifest.verify(folder)
            times.append(time.perf_counter() - t0)
    best, median = min(times), sorted(times)[len(times) // 2]
    results = {"megabytes": args.mb, "seconds": times, "best_s": best, "median_s": median,
               "throughput_mb_s": args.mb / median}
    table = ("| file | verify (median of %d) | best | throughput |\n|---|---|---|---|\n"
             "| %d MB | %.3f s | %.3f s | %.0f MB/s |\n" % (args.repeat, args.mb, median, best, args.mb / median))
    js, md = write_results(args.out, "checksum_speed", results, table)
    print(md.read_text())


if __name__ == "__main__":
    main()
