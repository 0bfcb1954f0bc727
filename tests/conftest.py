"""Test-wide JAX settings: compile time dominates these small runs on CPU, so XLA's
optimizations are off (set JAXLOTTERY_TEST_OPTIMIZE=1 to keep them)."""

import os

import jax

if os.environ.get("JAXLOTTERY_TEST_OPTIMIZE") != "1":
    jax.config.update("jax_disable_most_optimizations", True)
