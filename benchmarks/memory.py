"""Peak memory while one benchmark row runs: host RSS, and device memory on a GPU.

On Linux the kernel keeps the process's peak resident set (``VmHWM``) and lets a process
reset it (writing ``5`` to ``/proc/self/clear_refs``), so each row gets the peak of its own
run, the model and the libraries already loaded included. Where that reset is not
available the figure is the peak since the process started, and the row says so.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window; False where the OS cannot (the peak is then since start)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """The process's peak resident set in MiB (since the last :func:`reset_peak_rss`)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def gpu_memory_mib() -> float | None:
    """GPU memory this process holds now (nvidia-smi), or None without an NVIDIA GPU.

    ONNX Runtime and TensorRT keep their allocations in arenas that do not shrink, so after
    a row has run this is its peak. torch's caching allocator is read directly instead.
    """
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return float(used)
    return 0.0
