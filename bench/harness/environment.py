"""Where and with what a run happened: recorded once per run and, in short, on every result row."""
import datetime
import os
import platform
import shlex
import subprocess
import sys
import uuid

import torch


def _git(*args) -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))  # inside the checkout when installed editable
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit() -> str:
    """$HIGHWAY_COMMIT where it is set: a working tree copied to a GPU machine, whose .git, if one travels,
    can be an older commit's (a lease tool's copy of the session's first checkout, seen on the first H200
    run: its rows read that commit '+dirty'). Else the checkout's commit, with '+dirty' when it has
    uncommitted changes; outside git, 'unknown'."""
    if os.environ.get("HIGHWAY_COMMIT"):
        return os.environ["HIGHWAY_COMMIT"]
    commit = _git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {cpu_name()} ({os.cpu_count()} threads)"


def driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
        return out.strip().splitlines()[0] if out.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def resolve_device(device=None) -> torch.device:
    """The device a run uses: the one asked for, else the first CUDA GPU when there is one, else the CPU.
    ValueError for a device that is not a device name, or that this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} asked for, but this machine has no CUDA GPU that torch can use")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {device} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"device {device} is not supported here; expected cpu, cuda or cuda:N")
    return device


def worker_identity(device: torch.device) -> dict:
    """Where a unit of work ran, for its row: the host and the device (a Ray worker's own, not the driver's)."""
    import socket

    return {"host": socket.gethostname(), "device": device_name(device), "device_type": device.type}


def environment(device: torch.device, argv=None) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "run_id": uuid.uuid4().hex[:12],
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "device_type": device.type,
        "driver": driver_version() if device.type == "cuda" else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # the process's own: a throughput row's fp32 precision is its dtype's ("fp32" IEEE, "tf32" TF32), and the
        # convergence study and the gallery's tests run at this one
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
        "commit": git_commit(),
        "command": shlex.join(argv if argv is not None else sys.argv),
    }
