"""Which hardware targets this machine offers, and why not when it does not.

Checks here are cheap and need no MindSpore import; a cell that passes them can still
be skipped by its own process when MindSpore cannot select the device
(:class:`Unavailable`).
"""
from __future__ import annotations

import glob
import shutil

from bench.job.measure import gpus

HARDWARE = ("cpu", "gpu", "ascend")
MINDSPORE_DEVICE = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}


class Unavailable(RuntimeError):
    """The cell's hardware or mode cannot run here; the message is the skip reason."""


def unavailable_reason(hardware: str) -> str | None:
    """None when ``hardware`` may be used here, else the reason it cannot."""
    if hardware == "cpu":
        return None
    if hardware == "gpu":
        found, why = gpus()
        return None if found else f"no NVIDIA GPU on this machine ({why})"
    if hardware == "ascend":
        if glob.glob("/dev/davinci[0-9]*") or shutil.which("npu-smi"):
            return None
        return "no Ascend NPU on this machine (no /dev/davinci* device, no npu-smi)"
    raise ValueError(f"unknown hardware {hardware!r}; choose from {', '.join(HARDWARE)}")


def select_device(hardware: str) -> str:
    """MindSpore device name for ``hardware``; raises Unavailable when the installed
    MindSpore build cannot use it (e.g. the CPU-only wheel on a GPU machine)."""
    import mindspore as ms

    from mindrec.train.step import use_device
    device = MINDSPORE_DEVICE[hardware]
    try:
        use_device(device)
    except (RuntimeError, ValueError) as exc:
        raise Unavailable(f"MindSpore {ms.__version__} cannot use {device}: {exc}") from exc
    return device

