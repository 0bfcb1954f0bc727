"""jaxlottery: consistency and composability of lottery-ticket pruning masks, in JAX/Flax.

Modules: `masks` (mask pytrees and their algebra), `models` (the CIFAR ResNet family), `data`
(datasets on the device, augmentation), `train` (the recipe and the masked step), `siblings`
(k networks as one stack), `sharding` (the stack over devices and hosts), `imp` (iterative
and parallel magnitude pruning), `connectivity` (linear mode connectivity), `config`,
`experiment` (the study as resumable stages), `report`, `checkpoint`, `files`, `cli`.
"""

__version__ = "0.1.0"
