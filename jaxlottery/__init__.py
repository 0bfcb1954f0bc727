"""jaxlottery: consistency and composability of lottery-ticket pruning masks, in JAX/Flax.

Modules: `masks` (mask pytrees and their algebra), `models` (the CIFAR ResNet family), `data`
(datasets on the device, augmentation), `train` (the recipe and the masked step), `siblings`
(k networks as one stack), `sharding` (the stack over devices and hosts), `imp` (iterative
and parallel magnitude pruning), `connectivity` (linear mode connectivity), `config`,
`experiment` (the study as resumable stages), `runs` (`load_run`: a run directory read back),
`report`, `checkpoint`, `files`, `cli`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`jaxlottery.load_run`, imported on first use (plain `import jaxlottery` stays light)."""
    if name == "load_run":
        from jaxlottery.runs import load_run

        return load_run
    raise AttributeError(f"module 'jaxlottery' has no attribute {name!r}")
