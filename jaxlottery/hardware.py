"""The accelerator the machine has against the one JAX uses: a GPU box must not train the paper
on its CPU because the installed jaxlib has no CUDA.

JAX falls back to the CPU with a warning when its GPU or TPU plugin is missing or does not match
the driver; a study started that way runs for days. `check` stops such a run before any data are
loaded, with one line naming the extra to install, unless the user asked for the CPU
(`--allow_cpu`, or JAX_PLATFORMS naming cpu). `describe` is the first line every run prints;
`host_available_bytes` is the memory a CPU run may still take (a CPU reports none to JAX).
"""

from __future__ import annotations

import glob
import os
import shutil

from jaxlottery.validation import ConfigError

INSTALL = {
    "gpu": 'pip install -e ".[cuda]" (CUDA 12 wheels, drivers >= 525; ".[cuda13]" for '
           'drivers >= 580)',
    "tpu": 'pip install -e ".[tpu]"',
}


class AcceleratorUnused(ConfigError):
    """The machine has a GPU or TPU, but JAX computes on the CPU (a launch setting to change:
    the installed extra, or --allow_cpu)."""


def visible_accelerators() -> dict[str, str]:
    """What the operating system shows, without asking JAX: {"gpu" | "tpu": what was seen}.
    NVIDIA: the device files /dev/nvidia<N> or an nvidia-smi on the PATH; TPU: /dev/accel<N>
    (TPU VMs) or /dev/vfio devices with a TPU runtime's environment."""
    found = {}
    nvidia = sorted(glob.glob("/dev/nvidia[0-9]*"))
    if nvidia or shutil.which("nvidia-smi"):
        found["gpu"] = f"NVIDIA device {nvidia[0]}" if nvidia else "nvidia-smi on the PATH"
    accel = sorted(glob.glob("/dev/accel[0-9]*"))
    if accel or (glob.glob("/dev/vfio/[0-9]*") and os.environ.get("TPU_ACCELERATOR_TYPE")):
        found["tpu"] = f"TPU device {accel[0]}" if accel else "a TPU VM's VFIO devices"
    return found


def cpu_requested() -> bool:
    """The user asked JAX for the CPU (JAX_PLATFORMS starting with cpu)."""
    return os.environ.get("JAX_PLATFORMS", "").split(",")[0].strip().lower() == "cpu"


def check(allow_cpu: bool = False, seen: dict[str, str] | None = None) -> None:
    """Raise AcceleratorUnused (one line: what was seen, what JAX uses, what to install) when an
    accelerator is visible but JAX's backend is the CPU, unless the CPU was asked for."""
    import jax

    if allow_cpu or cpu_requested() or jax.default_backend() != "cpu":
        return
    seen = visible_accelerators() if seen is None else seen
    if not seen:
        return
    kind, what = next(iter(seen.items()))
    raise AcceleratorUnused(
        f"this machine has a {kind.upper()} ({what}) but JAX computes on the CPU (jax "
        f"{jax.__version__} has no working {kind.upper()} plugin here): {INSTALL[kind]}, or pass "
        f"--allow_cpu to train on the CPU anyway")


def host_available_bytes() -> int | None:
    """The host memory available to a new allocation now: Linux's MemAvailable (free memory plus
    what the kernel can reclaim), else free pages from sysconf; None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def describe() -> str:
    """'backend gpu: 1 x NVIDIA H100 80GB HBM3 (jax 0.11.2)': the first line of every run."""
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return (f"backend {jax.default_backend()}: {len(devices)} x {', '.join(kinds)} "
            f"(jax {jax.__version__}, {jax.process_count()} process"
            f"{'es' if jax.process_count() > 1 else ''})")
