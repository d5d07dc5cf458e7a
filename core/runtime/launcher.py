"""Start local worker processes for a job, detached from whoever asked (dashboard or terminal).

Each worker is ``python -m core worker --job ID --device D`` in its own session
(``start_new_session=True``), so closing the dashboard or the terminal does not stop it; its
stdout and stderr go to the job's log file. One worker per visible GPU by default (K with
``per_gpu``), CPU workers when there is no GPU. Slots already held by live workers on this machine
are not doubled: the job waits in the queue and those workers take it when they are free.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import SegTuneError
from core.runtime.processes import REPO_ROOT, spawn_detached

if TYPE_CHECKING:
    from core.runtime.job_model import Job
    from core.settings import Settings

_CUDA_DEVICE = re.compile(r"^cuda:(\d+)$")
_PINNED = "SEGTUNE_DEVICE_PINNED"  # set in a worker's environment once CUDA_VISIBLE_DEVICES names its GPU


class LaunchError(SegTuneError):
    """Bad device / worker arguments."""


def visible_gpu_ids() -> list[str]:
    """Physical ids of the GPUs this process may use (CUDA_VISIBLE_DEVICES order), [] without CUDA."""
    import torch

    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(count)]
    return [d.strip() for d in visible.split(",") if d.strip()][:count]


def normalise_devices(devices: Sequence[str] | str | None) -> list[str]:
    """``"cuda:0,cuda:1"`` or a list -> validated names; None/"" -> [] (choose automatically)."""
    if devices is None:
        return []
    names = [d.strip() for d in (devices.split(",") if isinstance(devices, str) else devices) if d.strip()]
    for name in names:
        if name != "cpu" and not _CUDA_DEVICE.match(name):
            raise LaunchError(f"unknown device {name!r}; use 'cpu' or 'cuda:N' (e.g. cuda:0,cuda:1)")
    return list(dict.fromkeys(names))


AUTO = "auto"
CUDA_CONTEXT_BYTES = 600 * 2**20  # what each worker process's CUDA context and allocator slack take
MEMORY_HEADROOM = 0.85  # pack trials into this share of a GPU's free memory
MAX_PER_GPU = 8


def trials_that_fit(trial_bytes: int, free_bytes: int) -> int:
    """How many trials of ``trial_bytes`` peak memory fit in ``free_bytes`` of one GPU (at least 1)."""
    if trial_bytes <= 0:
        raise LaunchError("the per-trial memory estimate must be positive")
    usable = free_bytes * MEMORY_HEADROOM
    return max(1, min(MAX_PER_GPU, int(usable // (trial_bytes + CUDA_CONTEXT_BYTES))))


def free_gpu_memory(device: str) -> int:
    """Free bytes on ``cuda:N`` now (what other processes hold is not free)."""
    import torch

    free, _total = torch.cuda.mem_get_info(int(device.split(":")[1]))
    return int(free)


def plan_slots(
    devices: Sequence[str] | str | None,
    workers: int | None,
    per_gpu: int | str = 1,
    gpu_count: int | None = None,
    *,
    trial_bytes: int | None = None,
    device_memory: Callable[[str], int] = free_gpu_memory,
) -> list[str]:
    """The device of every worker to start: ``per_gpu`` per GPU, or ``workers`` spread round-robin.

    ``per_gpu="auto"`` packs as many trials on each GPU as fit: ``trial_bytes`` (the trial-cost
    probe's peak memory) against ``device_memory(device)`` (free bytes; a parameter for tests).
    """
    names = normalise_devices(devices)
    if workers is not None and workers < 0:
        raise LaunchError(f"workers must be 0 or more, got {workers}")
    if per_gpu == AUTO:
        if trial_bytes is None and workers is None:
            raise LaunchError("per_gpu 'auto' needs the per-trial memory estimate (the trial-cost probe)")
    elif not isinstance(per_gpu, int) or per_gpu < 1:
        raise LaunchError(f"per_gpu must be a whole number of at least 1 or 'auto', got {per_gpu!r}")
    if gpu_count is None:
        gpu_count = 0 if names == ["cpu"] else len(visible_gpu_ids())
    for name in names:
        match = _CUDA_DEVICE.match(name)
        if match and int(match.group(1)) >= gpu_count:
            raise LaunchError(
                f"device {name!r} is not visible here ({gpu_count} GPU(s)); valid: "
                f"{['cpu'] + [f'cuda:{i}' for i in range(gpu_count)]}"
            )
    names = names or ([f"cuda:{i}" for i in range(gpu_count)] or ["cpu"])
    if workers is not None:
        return [names[i % len(names)] for i in range(workers)]

    def count(name: str) -> int:
        if name == "cpu":
            return 1
        return trials_that_fit(trial_bytes, device_memory(name)) if per_gpu == AUTO else int(per_gpu)

    return [slot for name in names for slot in [name] * count(name)]


def free_slots(settings: Settings, slots: Sequence[str]) -> list[str]:
    """``slots`` minus those live workers on this machine already hold (whatever their job)."""
    from core.runtime.job_table import job_workers

    host = socket.gethostname()
    busy = Counter(w.device for w in job_workers(settings) if w.host == host)
    free = []
    for slot in slots:
        if busy[slot] > 0:
            busy[slot] -= 1
        else:
            free.append(slot)
    return free


def launch_workers(settings: Settings, job: Job, slots: Sequence[str]) -> list[int]:
    """Start a detached worker on each free slot; returns their pids."""
    free = free_slots(settings, slots)
    # CPU workers split the cores between them instead of each spawning a thread per core.
    threads = max(1, (os.cpu_count() or 1) // max(1, free.count("cpu")))
    return [start_worker(settings, job, device, threads).pid for device in free]


def worker_env(settings: Settings, device: str, cpu_threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if device == "cpu" and cpu_threads and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(cpu_threads)
    env.update(
        SEGTUNE_HOME=str(settings.home),
        SEGTUNE_DB=settings.db_url,
        SEGTUNE_ARTIFACTS=str(settings.artifacts_dir),
        PYTHONUNBUFFERED="1",  # log lines reach the job's log as they happen
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    )
    pin_device(device, env)
    return env


def pin_device(device: str, env: dict[str, str] | os._Environ) -> str:
    """Make ``device`` the only GPU the process sees (none for 'cpu'); returns the torch device.

    Must run before torch initialises CUDA. The launcher pins its children itself and marks them,
    so the worker does not map the id a second time.
    """
    match = _CUDA_DEVICE.match(device)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu"
    if not match:
        return "auto"
    if env.get(_PINNED) != "1":
        visible = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        index = int(match.group(1))
        if visible and index >= len(visible):
            raise LaunchError(f"device {device!r} is not visible (CUDA_VISIBLE_DEVICES={','.join(visible)})")
        env["CUDA_VISIBLE_DEVICES"] = visible[index] if visible else str(index)
        env[_PINNED] = "1"
    return "cuda"


def start_worker(settings: Settings, job: Job, device: str, cpu_threads: int | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "core", "worker", "--job", str(job.id), "--device", device]
    return spawn_detached(command, worker_env(settings, device, cpu_threads), Path(job.log_path))
