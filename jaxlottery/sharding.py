"""The sibling axis over every device of every process: one Mesh, NamedSharding, shard_map.

A stack of k members is padded to a multiple of the device count (with copies of its last
member, whose results are dropped), placed with `NamedSharding(mesh, P("siblings"))`, and each
device runs the ordinary k_local-member step (`loop` or `vmap`, per backend) on its shard
under `shard_map`. The dataset is replicated to every device. `jit(vmap)` over a sharded
stack would make every device compute every sibling; shard_map gives each its own.

Multi-host: call `initialize()` first (it calls `jax.distributed.initialize()` when the
environment describes a cluster, or with an explicit coordinator); `jax.devices()` then spans
all processes and the same code runs on each of them.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "siblings"


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Start JAX's multi-controller runtime when there is more than one process.

    With explicit arguments (or JAXLOTTERY_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID), they
    are passed on; on TPU pods and SLURM or Open MPI clusters `jax.distributed.initialize()`
    finds them itself. Returns whether the runtime was started.
    """
    coordinator, num, pid = launch(coordinator, num_processes, process_id)
    if coordinator:
        jax.distributed.initialize(coordinator, num_processes=num, process_id=pid)
        return True
    if _cluster_size() > 1:  # SLURM, Open MPI, a multi-host TPU slice: JAX finds the rest
        jax.distributed.initialize()
        return True
    return False


def launch(coordinator: str | None = None, num_processes: int | None = None,
           process_id: int | None = None) -> tuple[str | None, int | None, int | None]:
    """The multi-process settings from the arguments, else the JAXLOTTERY_* variables, checked
    together: (coordinator, process count, process id), or Nones for one process and for
    clusters whose launcher JAX reads itself. Raises ValueError naming the flag to change."""
    env = os.environ
    coordinator = coordinator if coordinator is not None else env.get("JAXLOTTERY_COORDINATOR")

    def number(value, flag: str, var: str) -> int | None:
        if value is None and var in env:
            try:
                value = int(env[var])
            except ValueError:
                raise ValueError(f"{var}={env[var]!r} is not an integer (it stands for "
                                 f"{flag})") from None
        return value

    num = number(num_processes, "--num_processes", "JAXLOTTERY_NUM_PROCESSES")
    pid = number(process_id, "--process_id", "JAXLOTTERY_PROCESS_ID")
    if coordinator is not None:
        if not coordinator.strip() or ":" not in coordinator:
            raise ValueError(f"--coordinator: expected HOST:PORT of process 0, got {coordinator!r}")
        if num is None or pid is None:
            raise ValueError("--coordinator needs --num_processes and --process_id too (or "
                             "JAXLOTTERY_NUM_PROCESSES and JAXLOTTERY_PROCESS_ID)")
    elif num is not None or pid is not None:
        raise ValueError("--num_processes and --process_id need --coordinator=HOST:PORT too "
                         "(TPU pods, SLURM and Open MPI need none of the three)")
    if num is not None and num < 1:
        raise ValueError(f"--num_processes: must be >= 1, got {num}")
    if pid is not None and not 0 <= pid < (num or 1):
        raise ValueError(f"--process_id: must lie in 0..{(num or 1) - 1} (one of "
                         f"--num_processes={num}), got {pid}")
    for size, rank, launcher in (("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "mpirun"),):
        if size in env and rank not in env:
            raise ValueError(f"{size} is set but {rank} is not: start the command with "
                             f"{launcher}, or unset {size} for a single process")
        if size in env and not env[size].strip().isdigit():
            raise ValueError(f"{size}={env[size]!r} is not a process count")
    return coordinator, num, pid


def use_cpu_devices(n: int) -> None:
    """Split the host CPU into n XLA devices (before any JAX computation; JAX raises after)."""
    jax.config.update("jax_num_cpu_devices", n)


def _cluster_size() -> int:
    if "SLURM_NTASKS" in os.environ and "SLURM_PROCID" in os.environ:  # launched by srun
        return int(os.environ["SLURM_NTASKS"])  # (an salloc or sbatch shell is one process)
    if "OMPI_COMM_WORLD_SIZE" in os.environ:
        return int(os.environ["OMPI_COMM_WORLD_SIZE"])
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES")
    return len(hosts.split(",")) if hosts else 1


def sibling_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named "siblings" over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (AXIS,))


def padded_size(k: int, mesh: Mesh) -> int:
    """k rounded up to a multiple of the mesh's device count."""
    n = mesh.devices.size
    return -(-k // n) * n


def place(tree: Any, mesh: Mesh, spec: P = P(AXIS)) -> Any:
    """Put a pytree on the mesh: leading axis split over the siblings axis (or replicated with
    `P()`). Works with several processes: every process passes the same global values."""
    def one(x):
        if x is None:
            return None
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        host = np.asarray(jax.device_get(x)) if fully_addressable(x) else None
        sharding = NamedSharding(mesh, spec)
        if host is None:  # already a global array: reshard on device
            return jax.device_put(x, sharding)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
    return jax.tree.map(one, tree, is_leaf=lambda x: x is None)


def gather(tree: Any) -> Any:
    """Host copies of arrays, on every process; arrays spread over several processes are
    all-gathered (a collective: every process must call it)."""
    def one(x):
        if fully_addressable(x):
            return jax.device_get(x)
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(x, tiled=True)
    return jax.tree.map(one, tree)


def is_main() -> bool:
    """Whether this process writes run files and prints (process 0)."""
    return jax.process_index() == 0


def agree(flag: bool) -> bool:
    """Process 0's value of a flag, on every process (so all take the same branch)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def sharded(local_fn, mesh: Mesh, stacked: tuple[bool, ...], outputs: int,
            donate: tuple[int, ...] = ()):
    """jit of a shard_map of a k_local-member function over the siblings axis: arguments marked
    in `stacked` are split over the devices, the others (the dataset) replicated; all `outputs`
    are stacks. `donate`: argument positions whose buffers the result may reuse."""
    in_specs = tuple(P(AXIS) if s else P() for s in stacked)
    out_specs = tuple(P(AXIS) for _ in range(outputs))
    return jax.jit(jax.shard_map(local_fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                                 check_vma=False), donate_argnums=donate)


def fully_addressable(x) -> bool:
    """Whether this process holds all of `x` (not an array spread over several processes)."""
    return not isinstance(x, jax.Array) or x.is_fully_addressable
