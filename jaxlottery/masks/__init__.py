"""Pruning masks as pytrees of booleans, and their algebra.

Conventions (the whole library relies on them):

- A mask has the tree structure of the parameters it masks. A prunable leaf holds a bool
  array of the parameter's shape (True = kept); a leaf that is never pruned (biases,
  BatchNorm) holds `None`. Counts, densities and overlaps therefore see only prunable
  weights: ResNet-20 has 270,896 of them. `None` is an empty subtree to JAX, so masks pass
  through `jit`, `vmap` and `tree.map(..., is_leaf=masks.is_none)` unchanged.
- By default the prunable leaves are the conv and dense weights of 2 or more dimensions named
  `kernel` (Flax, also inside NNX states, `.../kernel/value`), `w` (Haiku) or `weight`
  (Equinox, PyTorch-style dicts); pass `rule=` to choose others. Masks made elsewhere
  (jaxpruner's uint8 0/1 arrays, NNX states) go through `convert`, and back to NNX with
  `to_nnx`; `keep_pruned_zero(mask)` is an optax transformation for any training loop.
- Density is the fraction of prunable weights kept; sparsity = 1 - density. Layer-wise
  distributions: `magnitude_prune(..., scope="global" | "uniform" | "erk")`,
  `layer_density_map`.
- A "stack" is a mask (or params) whose leaves carry a leading sibling axis of size k.
  Functions that combine masks (`union`, `intersection`, `vote`, `pairwise_iou`, `compose`)
  take either a stack or a list/tuple of single masks. Functions that describe one mask
  (`count`, `density`, `layer_densities`, `iou`, `overlap`, `magnitude_prune`) take
  `stacked=True` to map over the sibling axis.
- Kept counts: density d keeps `floor(d * n + 0.5)` weights (n = number of prunable weights,
  globally or per layer). Ties in |w| are broken by position: among equal scores the weight
  that comes first in the flattened order (leaves in `jax.tree` order, each row-major) is kept.

Everything here is a pure function of its inputs and works under `jax.jit` (densities may be
traced; `how`, `scope`, `at_least` and `stacked` are static). Bad input raises `ValueError` or
`TypeError` eagerly; a traced value cannot be range-checked and is taken as given.
"""

from jaxlottery.masks.algebra import (COMPOSITIONS, Composition, at_least, combine, compose,
                                      composition_of, intersection, register, union, vote,
                                      weighted_majority)
from jaxlottery.masks.core import (WEIGHT_NAMES, Density, Mask, Params, Rule, apply, count,
                                   default_rule, density, is_none, layer_densities, layer_sizes,
                                   ones_like, path_str, prunable, stack, stack_size)
from jaxlottery.masks.interop import convert, keep_pruned_zero, to_nnx
from jaxlottery.masks.io import FORMAT, FORMAT_VERSION, load, save
from jaxlottery.masks.overlap import (chance_iou, chance_iou_matched, iou, iou_by_layer, kappa,
                                      kappa_by_layer, overlap, overlap_by_layer,
                                      pairwise_chance_iou_matched, pairwise_iou,
                                      pairwise_iou_by_layer, pairwise_kappa,
                                      pairwise_kappa_by_layer, pairwise_overlap,
                                      pairwise_pruned_iou, pruned_iou)
from jaxlottery.masks.pruning import (SCOPES, erk_densities, layer_density_map,
                                      magnitude_prune, mask_from_scores, random_mask,
                                      random_mask_like)
from jaxlottery.stacks import unstack

__all__ = [
    "COMPOSITIONS", "Composition", "Density", "FORMAT", "FORMAT_VERSION", "Mask", "Params", "Rule",
    "SCOPES", "WEIGHT_NAMES", "apply", "at_least", "chance_iou", "chance_iou_matched", "combine",
    "compose", "composition_of", "convert", "count", "default_rule", "density", "erk_densities",
    "intersection", "iou", "iou_by_layer", "is_none", "kappa", "kappa_by_layer",
    "keep_pruned_zero", "layer_densities", "layer_density_map", "layer_sizes", "load",
    "magnitude_prune", "mask_from_scores", "ones_like", "overlap", "overlap_by_layer",
    "pairwise_chance_iou_matched", "pairwise_iou", "pairwise_iou_by_layer", "pairwise_kappa",
    "pairwise_kappa_by_layer", "pairwise_overlap", "pairwise_pruned_iou", "path_str", "prunable",
    "pruned_iou", "random_mask", "random_mask_like", "register", "save", "stack", "stack_size",
    "to_nnx", "union", "unstack", "vote", "weighted_majority",
]
