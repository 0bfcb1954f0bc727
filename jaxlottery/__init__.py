"""jaxlottery: consistency and composability of lottery-ticket pruning masks, in JAX/Flax.

Modules: `masks` (mask pytrees and their algebra), `models` (the CIFAR ResNet family).
"""

__version__ = "0.1.0"
