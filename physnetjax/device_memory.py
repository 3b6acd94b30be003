"""The memory a compiled program allocates, checked against what the device has free before it runs.

XLA allocates a program's temporary buffers and its outputs when the program runs. Where they do not fit, a GPU
raises ``RESOURCE_EXHAUSTED``; on the CPU the allocation usually succeeds (Linux over-commits memory) and the
kernel's out-of-memory killer ends the process once the pages are written: no exception and no message, the shell
says "Killed" (exit status 137). Measured here: a D3(BJ)+ATM model (15 Å) on a periodic box of 8 water molecules
(24 atoms, 2.4e7 triangles of atoms within the cutoff) compiles to a program of 24 GB of temporaries, and the
process was killed on a machine of 24 GiB.

XLA reports those sizes once a program is compiled (``Compiled.memory_analysis()``). :func:`check_fits` compares
the bytes a program allocates, :func:`allocated_bytes` (temporaries + outputs, less the outputs that reuse donated
inputs), with :func:`available_bytes` and raises :class:`~physnetjax.errors.OutOfMemoryError` before it runs.
Every function compiled through :func:`physnetjax.compilation.jit` is checked once per argument shape, and the MD
driver checks the chunk programs it compiles ahead of time. Host arrays that grow faster than the system (the D3
three-body triplet lists) are checked before they are allocated (:func:`check_host_fits`).

Free memory: on a GPU or TPU, the allocator's limit less its bytes in use (``Device.memory_stats()``); on the CPU,
the kernel's estimate of memory available without swapping (``MemAvailable`` of ``/proc/meminfo``, Linux), or less
where the process runs under a memory limit of its control group (a container's, or a batch job's such as SLURM's
``--mem``, whose excess the kernel kills as well): the smallest limit on the way from the process's group to the
root, less that group's usage, plus its reclaimable page cache (``inactive_file``), cgroup v1 or v2. Where none of
this is known (another system, a backend without memory statistics) nothing is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import jax

from physnetjax.errors import OutOfMemoryError

MEMINFO = "/proc/meminfo"
"""Where Linux reports ``MemAvailable`` (kB)."""
PROC_CGROUP = "/proc/self/cgroup"
"""The control groups of this process, ``ID:CONTROLLERS:PATH`` per line (empty controllers: cgroup v2)."""
CGROUP_ROOT = "/sys/fs/cgroup"
"""Where the control groups are mounted: ``memory/PATH`` (v1) or ``PATH`` (v2) below it."""
CGROUP_FILES = {"v1": ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
                "v2": ("memory.max", "memory.current", "inactive_file")}
"""Per cgroup version: the files of the limit and the usage (bytes), and the key of the reclaimable page cache in
``memory.stat``."""
NO_LIMIT = 2 ** 60
"""A limit at or above this many bytes is none (v1 writes 2⁶³ rounded to pages, v2 ``max``)."""


def available_bytes(device: Optional[jax.Device] = None) -> Optional[int]:
    """Bytes ``device`` (default: JAX's first) can still allocate, or None where that is not known."""
    import jax  # here, not on import: the host's checks (data.generate) need no JAX

    device = jax.devices()[0] if device is None else device
    if device.platform == "cpu":
        return host_available_bytes()
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def host_available_bytes() -> Optional[int]:
    """Bytes the host (this process's CPU memory) can still allocate, or None where that is not known."""
    known = [size for size in (_meminfo_available_bytes(), _cgroup_available_bytes()) if size is not None]
    return min(known) if known else None


def _meminfo_available_bytes() -> Optional[int]:
    try:
        with open(MEMINFO) as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available_bytes() -> Optional[int]:
    """Bytes this process may still allocate under the memory limits of its control groups (the smallest of limit −
    usage + reclaimable page cache over the group and its ancestors), or None without a limit."""
    try:
        with open(PROC_CGROUP) as groups:
            lines = groups.read().splitlines()
    except OSError:
        return None
    room = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        version = "v2" if controllers == "" else "v1" if "memory" in controllers.split(",") else None
        if version is None:
            continue
        base = Path(CGROUP_ROOT) if version == "v2" else Path(CGROUP_ROOT) / "memory"
        parts = [part for part in path.split("/") if part]
        for depth in range(len(parts), -1, -1):
            folder = base.joinpath(*parts[:depth])
            size = _group_room(folder, *CGROUP_FILES[version])
            if size is not None:
                room.append(size)
    return min(room) if room else None


def _group_room(folder: Path, limit_file: str, usage_file: str, cache_key: str) -> Optional[int]:
    """limit − usage + reclaimable page cache of the control group in ``folder``; None without a limit there (or
    where the folder is not visible, as for the host's groups inside a container)."""
    try:
        limit = (folder / limit_file).read_text().strip()
        if limit == "max" or int(limit) >= NO_LIMIT:
            return None
        usage = int((folder / usage_file).read_text())
        stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines() if line.strip())
    except (OSError, ValueError):
        return None
    return int(limit) - usage + int(stat.get(cache_key, 0))


def allocated_bytes(compiled) -> Optional[int]:
    """Bytes the compiled program allocates when it runs: temporaries and outputs, less the outputs that reuse
    donated input buffers; None where XLA gives no memory analysis."""
    try:
        analysis = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError):
        return None
    if analysis is None:
        return None
    return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes - analysis.alias_size_in_bytes)


def gigabytes(size: int) -> str:
    """``size`` bytes as ``"24.1 GB"`` (10⁹ bytes), ``"0.003 GB"`` below 0.1 GB."""
    return f"{size / 1e9:.3g} GB" if size < 1e8 else f"{size / 1e9:.1f} GB"


def check_fits(compiled, what: str, device: Optional[jax.Device] = None) -> None:
    """Raise OutOfMemoryError when ``compiled`` would allocate more than ``device`` has free.

    ``what`` names the program in the message (``"MD chunk of 100 frames"``); callers that know the sizes behind it
    (atoms, pairs, triangles) catch the error and say them with the remedy.

    Raises:
      OutOfMemoryError: ``out of memory on cpu (cpu): WHAT needs 24.1 GB for its temporaries and outputs, 20.3 GB
        are free``; its ``needed_bytes`` and ``available_bytes`` hold the two sizes.
    """
    needed = allocated_bytes(compiled)
    if needed is None:
        return
    import jax

    device = jax.devices()[0] if device is None else device
    free = available_bytes(device)
    if free is None or needed <= free:
        return
    raise OutOfMemoryError(f"out of memory on {device.platform} ({device.device_kind}): {what} needs "
                           f"{gigabytes(needed)} for its temporaries and outputs, {gigabytes(free)} are free",
                           needed, free)


HOST_CHECK_MIN_BYTES = 2 ** 26
""":func:`check_host_fits` leaves arrays below this size (64 MiB) unchecked: reading the free memory costs ~75 µs,
and the calculator builds a triplet list at every call."""


def check_host_fits(needed_bytes: int, doing: str, remedy: str) -> None:
    """Raise OutOfMemoryError when ``needed_bytes`` of host memory, for a NumPy array about to be allocated, are more
    than the host has free (:func:`host_available_bytes`; nothing is checked where that is not known, nor below
    :data:`HOST_CHECK_MIN_BYTES`).

    Raises:
      OutOfMemoryError: ``out of memory on the host DOING: it needs 12.0 GB, 8.3 GB are free: REMEDY``.
    """
    if needed_bytes < HOST_CHECK_MIN_BYTES:
        return
    free = host_available_bytes()
    if free is None or needed_bytes <= free:
        return
    raise OutOfMemoryError(f"out of memory on the host {doing}: it needs {gigabytes(needed_bytes)}, "
                           f"{gigabytes(free)} are free: {remedy}", needed_bytes, free)
