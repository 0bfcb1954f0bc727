"""The training recipe (OpenLTH `cifar_resnet_20`), a masked SGD step, epochs and evaluation.

Every network, whether one dense network or a stack of k siblings or k masks to retrain, is
trained by the same code: `train` runs a stack of `TrainState`s (leading axis k, k = 1 for one
network) with one mask per member (or none), each with its own data key. How the k members are
computed together (vmap, a loop inside one jit, or one jit per member) is the `strategy` of
`jaxlottery.siblings`.

Randomness of a member comes only from its data key (`fold_in` names):
- data order of epoch e: `fold_in(fold_in(key, DATA_ORDER), e)`
- augmentation at global iteration s: `fold_in(fold_in(key, AUGMENT), s)`
- scores that draw (the `random` pruning criterion): `fold_in(key, MASK_SCORES)`
so member i of a k-member run sees exactly what a 1-member run with the same key sees.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlottery import config
from jaxlottery import data as data_lib
from jaxlottery import masks as masks_lib

DATA_ORDER = 0  # fold_in tag: per-epoch permutation
AUGMENT = 1  # fold_in tag: per-iteration flips and crops
MASK_SCORES = 2  # fold_in tag: the member's key for scores that draw (criterion `random`)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """SGD recipe. Defaults: OpenLTH's cifar_resnet_20 (160 epochs, drops at 80 and 120).

    Weight decay is added to the gradient of every parameter (BN and biases too) before
    momentum, and momentum is PyTorch's (buf = momentum * buf + g; p -= lr * buf). Every field
    is a `Config` option of the same name (`Recipe.from_config`), checked by the same rule
    (`config.check_recipe`).
    """

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int = 160
    lr_drop_epochs: tuple[int, ...] = (80, 120)
    lr_drop_factor: float = 0.1
    augment: bool = True

    def __post_init__(self):
        object.__setattr__(self, "lr_drop_epochs", tuple(self.lr_drop_epochs))
        config.check_recipe(self)

    @classmethod
    def from_config(cls, cfg: config.Config) -> "Recipe":
        """The recipe of a study: its fields, by name."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})

    def steps_per_epoch(self, n_train: int) -> int:
        """Iterations per epoch: the last batch is partial (391 for CIFAR-10 at 128, last 80)."""
        return -(-n_train // self.batch_size)

    def total_steps(self, n_train: int) -> int:
        return self.epochs * self.steps_per_epoch(n_train)

    def examples(self, start: int, stop: int, n_train: int) -> int:
        """Training examples one network sees in iterations [start, stop): full batches, and
        the partial last batch of an epoch counted as what it holds."""
        spe = self.steps_per_epoch(n_train)
        last = n_train - (spe - 1) * self.batch_size
        partials = sum(1 for s in range(start, stop) if s % spe == spe - 1)
        return (stop - start - partials) * self.batch_size + partials * last

    def lr_boundaries(self, n_train: int) -> tuple[int, ...]:
        """Iterations at which the learning rate drops (31,280 and 46,920 for CIFAR-10)."""
        return tuple(e * self.steps_per_epoch(n_train) for e in self.lr_drop_epochs)


def schedule(recipe: Recipe, n_train: int) -> optax.Schedule:
    """The learning rate as a function of the (0-based, global) iteration: an optax schedule.
    Piecewise constant: `lr`, multiplied by `lr_drop_factor` at each of `lr_drop_epochs`. Another
    kind of schedule (cosine, warm-up) is another branch here."""
    boundaries = recipe.lr_boundaries(n_train)

    def step_schedule(step: jax.Array) -> jax.Array:
        drops = sum(jnp.asarray(step >= b, jnp.int32) for b in boundaries)
        return recipe.lr * jnp.asarray(recipe.lr_drop_factor, jnp.float32) ** drops
    return step_schedule


class TrainState(NamedTuple):
    """Everything that changes during training; `step` is the global iteration count."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array


def optimizer(recipe: Recipe) -> optax.GradientTransformation:
    """Weight decay, then momentum; the learning rate is applied by the step from `step`."""
    return optax.chain(optax.add_decayed_weights(recipe.weight_decay),
                       optax.trace(decay=recipe.momentum, nesterov=recipe.nesterov))


def init_state(variables: dict, recipe: Recipe, step: int = 0) -> TrainState:
    """A state at iteration `step` with fresh (zero) momentum: spawning and rewinding."""
    params = variables["params"]
    return TrainState(params, variables["batch_stats"], optimizer(recipe).init(params),
                      jnp.asarray(step, jnp.int32))


def variables(state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(state: TrainState, mask: Any, key: jax.Array, perm: jax.Array,
               data: data_lib.DeviceData, *, model: nn.Module, recipe: Recipe,
               batch: int, flat: bool = False) -> tuple[TrainState, dict]:
    """One SGD iteration of one network on the batch `perm[pos * B : pos * B + batch]`.

    `mask` (or None for dense training) zeroes gradients and weights of pruned entries, so
    pruned weights stay exactly 0.0 through momentum and weight decay. `flat` computes the
    update on one vector per network (`flat_update`). Returns summed metrics.
    """
    n = data.x_train.shape[0]
    x, labels = batch_at(state.step, key, perm, data, recipe, batch)
    (loss, (logits, batch_stats)), grads = jax.value_and_grad(training_loss, has_aux=True)(
        state.params, state.batch_stats, x, labels, model)
    lr = schedule(recipe, n)(state.step)
    params, opt_state = (flat_update if flat else update)(state.params, state.opt_state, grads,
                                                          mask, lr, recipe)
    metrics = {"loss": loss * batch, "correct": jnp.sum(jnp.argmax(logits, -1) == labels),
               "count": jnp.asarray(batch, jnp.int32)}
    return TrainState(params, batch_stats, opt_state, state.step + 1), metrics


def training_loss(params: Any, batch_stats: Any, x: jax.Array, labels: jax.Array,
                  model: nn.Module) -> tuple[jax.Array, tuple[jax.Array, Any]]:
    """The mean cross-entropy of a batch with BN in training mode: (loss, (logits, the updated
    batch statistics)); what the training step and SNIP differentiate."""
    logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                  mutable=["batch_stats"])
    return jnp.mean(cross_entropy(logits, labels)), (logits, updates.get("batch_stats", {}))


def batch_at(step: jax.Array, key: jax.Array, perm: jax.Array, data: data_lib.DeviceData,
             recipe: Recipe, batch: int) -> tuple[jax.Array, jax.Array]:
    """The normalized (and, per the recipe, augmented) images and labels of global iteration
    `step` for the member with data key `key`, whose epoch's order is `perm`."""
    spe = recipe.steps_per_epoch(data.x_train.shape[0])
    start = (step % spe) * recipe.batch_size
    idx = jax.lax.dynamic_slice(perm, (start,), (batch,))
    images, labels = data.x_train[idx], data.y_train[idx]
    if recipe.augment:
        images = data_lib.augment(jax.random.fold_in(jax.random.fold_in(key, AUGMENT), step),
                                  images)
    return data_lib.normalize(images, data.mean, data.std), labels


def batch_gradients(variables: dict, key: jax.Array, data: data_lib.DeviceData, *,
                    model: nn.Module, recipe: Recipe, step: int, batches: int) -> Any:
    """The mean gradient of the training loss at `variables` over the `batches` batches the
    member with data key `key` sees from global iteration `step` (BN in training mode, its
    statistics not updated): what SNIP scores (`jaxlottery.criteria`)."""
    n = data.x_train.shape[0]
    spe = recipe.steps_per_epoch(n)
    total = None
    for s in range(step, step + batches):
        perm = epoch_permutation(key, jnp.asarray(s // spe), n)
        size = recipe.batch_size if s % spe < spe - 1 else n - (spe - 1) * recipe.batch_size
        x, labels = batch_at(jnp.asarray(s), key, perm, data, recipe, size)
        grads = _gradients(variables, x, labels, model)
        total = grads if total is None else jax.tree.map(jnp.add, total, grads)
    return jax.tree.map(lambda g: g / batches, total)


@functools.partial(jax.jit, static_argnames="model")
def _gradients(variables: dict, x: jax.Array, labels: jax.Array, model: nn.Module) -> Any:
    return jax.grad(training_loss, has_aux=True)(variables["params"], variables["batch_stats"],
                                                 x, labels, model)[0]


def update(params: Any, opt_state: Any, grads: Any, mask: Any, lr: jax.Array,
           recipe: Recipe) -> tuple[Any, Any]:
    """The masked SGD update, leaf by leaf: (new params, new optimizer state)."""
    if mask is not None:
        grads = masks_lib.apply(grads, mask)
    updates, opt_state = optimizer(recipe).update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    if mask is not None:
        params = masks_lib.apply(params, mask)
    return params, opt_state


def flat_update(params: Any, opt_state: Any, grads: Any, mask: Any, lr: jax.Array,
                recipe: Recipe) -> tuple[Any, Any]:
    """`update` on one concatenated vector per network (parameters, gradients, momentum, mask):
    the same arithmetic element by element, in a few large kernels instead of one or more per
    leaf (a GPU speed candidate). The optimizer state keeps its per-leaf layout in and out, so
    checkpoints do not depend on the choice."""
    treedef = jax.tree.structure(params)
    ravel = lambda tree: jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
    shapes = [x.shape for x in jax.tree.leaves(params)]
    ends = np.cumsum([int(np.prod(s)) for s in shapes])

    def unravel(vector):
        pieces = [vector[a:b].reshape(s) for a, b, s in zip([0, *ends[:-1]], ends, shapes)]
        return jax.tree.unflatten(treedef, pieces)

    def like_params(x):
        return jax.tree.structure(x) == treedef

    flat_mask = None
    if mask is not None:
        flat_mask = ravel(jax.tree.map(lambda m, p: jnp.ones(p.shape, bool) if m is None else m,
                                       mask, params, is_leaf=masks_lib.is_none))
    flat_state = jax.tree.map(lambda x: ravel(x) if like_params(x) else x, opt_state,
                              is_leaf=like_params)
    vector, opt_vector = update(ravel(params), flat_state, ravel(grads), flat_mask, lr, recipe)
    opt_state = jax.tree.map(lambda x, v: unravel(v) if like_params(x) else v, opt_state,
                             opt_vector, is_leaf=like_params)
    return unravel(vector), opt_state


def epoch_permutation(key: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
    """The data order of `epoch` for the member with data key `key`."""
    return data_lib.epoch_permutation(
        jax.random.fold_in(jax.random.fold_in(key, DATA_ORDER), epoch), n)


def eval_sums(variables: dict, data: data_lib.DeviceData, start: jax.Array, *,
              model: nn.Module, batch: int) -> tuple[jax.Array, jax.Array]:
    """Summed test loss and correct predictions over `batch` test images from `start`
    (rows past the end of the test set are masked out). Traceable: evaluation programs map it
    over a stack and loop it over batches."""
    n = data.x_test.shape[0]
    idx = start + jnp.arange(batch)
    valid = idx < n
    idx = jnp.minimum(idx, n - 1)
    logits = model.apply(variables, data_lib.normalize(data.x_test[idx], data.mean, data.std),
                         train=False)
    labels = data.y_test[idx]
    loss = jnp.sum(jnp.where(valid, cross_entropy(logits, labels), 0.0))
    correct = jnp.sum(jnp.where(valid, jnp.argmax(logits, -1) == labels, False))
    return loss, correct


eval_batch = jax.jit(eval_sums, static_argnames=("model", "batch"))


def evaluate(variables: dict, data: data_lib.DeviceData, model: nn.Module,
             batch: int = 1000) -> dict[str, float]:
    """Test loss and accuracy of one network; one host read at the end."""
    n = data.x_test.shape[0]
    batch = min(batch, n)
    loss, correct = 0.0, 0
    for start in range(0, n, batch):
        l, c = eval_batch(variables, data, jnp.asarray(start, jnp.int32), model=model, batch=batch)
        loss, correct = loss + l, correct + c
    return {"loss": float(loss) / n, "accuracy": float(correct) / n}


def check_finite(metrics: dict, what: str) -> None:
    """Stop loudly when a loss went NaN or Inf. A host check: under `jax.jit` it cannot see
    values, so it refuses a traced loss instead of passing silently."""
    if isinstance(metrics["loss"], jax.core.Tracer):
        raise TypeError(f"check_finite({what!r}) reads the loss on the host; call it on the "
                        "outputs of a jitted step, not inside one (inside, use "
                        "jax.experimental.checkify or jax_debug_nans)")
    loss = np.asarray(metrics["loss"])
    if not np.all(np.isfinite(loss)):
        bad = np.flatnonzero(~np.isfinite(np.atleast_1d(loss))).tolist()
        raise FloatingPointError(f"non-finite training loss in {what} (members {bad})")

