"""What every stage of the study shares: the context, the seed tree, cached outputs and the
checkpointed training wrapper.

Caching: a stage's output file is its "done" marker (`done`), written atomically by process 0
(`write`); a training stage checkpoints every epoch and resumes from its newest checkpoint
(`train_stage`), so a killed run restarted with the same command finishes with the same
results as an uninterrupted one.

Randomness: all keys derive from `key(config.seed)` with these `fold_in` names:
INIT (the shared network's init), SHARED_DATA (its data key), SIBLING_DATA -> t -> i (sibling
i spawned at epoch t), INDEPENDENT -> j (init of control network j; its data key is
`fold_in(init key, 1)`), RETRAIN_DATA -> t (one data key for every mask retrained from W_t, so
masks are compared on the same data order), RANDOM_MASKS -> t -> density index -> 0 (global),
1 -> i (the positive control of one-shot mask i; i = 0 is the key itself) or 2 -> c -> i (with
`--natural_density`, the control of one-shot mask i at the natural density of the c-th composed
method and k'), SUBSET (the training/test subsets, numpy), REINIT -> t (the fresh init of
the re-initialized baselines), IMP_DATA -> level -> i (sibling i of every IMP chain at a level;
single-network IMP and its one-shot baseline use i = 0), SIBLING_DATA_AT_ITERATION -> s -> i
(sibling i spawned after s iterations, `--spawn_iterations`), REPLICATE -> j (the root of
initialization j >= 1 of `--inits`: the same tree of names below it; initialization 0 is the
root itself, so one init keeps every earlier key). A network's scores that draw (the `random`
criterion) come from its own data key: `fold_in(data key, train.MASK_SCORES)`.

Spawn points are named by an int t (after t epochs, `--spawn_epochs`) or a string "<s>it"
(after s iterations, `--spawn_iterations`); `Context.spawn_step` and `spawn_epoch` read them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxlottery import checkpoint, criteria, files, models, paths, sharding, siblings, stacks
from jaxlottery import data as data_lib
from jaxlottery import train as train_lib
from jaxlottery.config import Config

(INIT, SHARED_DATA, SIBLING_DATA, INDEPENDENT, RETRAIN_DATA, RANDOM_MASKS, SUBSET, REINIT,
 IMP_DATA, SIBLING_DATA_AT_ITERATION, REPLICATE) = range(11)


class ConfigMismatch(RuntimeError):
    """The run directory was made by a different configuration (or an earlier version that laid
    out a stage differently): its files cannot be trusted for this run."""


class TrainingDiverged(RuntimeError):
    """A loss went NaN or Inf: the run stops, its results are marked failed."""


@dataclasses.dataclass
class Context:
    """What every stage needs: the configuration, the run directory, data and model."""

    config: Config
    rundir: str
    dataset: data_lib.Dataset
    data: data_lib.DeviceData
    model: Any
    recipe: train_lib.Recipe
    root: jax.Array
    progress: bool
    log: Callable[[str], None]
    labels: dict = dataclasses.field(default_factory=dict)  # stage name -> "[i/n]"
    timing: dict = dataclasses.field(default_factory=dict)  # training seconds per folder
    evaluation_seconds: float | None = None  # stage 5 (connectivity), when it ran here
    images: dict = dataclasses.field(default_factory=dict)
    mesh: Any = None  # the sibling axis over all devices, when there are several
    init: int = 0  # which initialization of --inits this context runs (0: the root's)

    @property
    def prunable(self):
        """The model family's rule for which weights every mask of the study prunes."""
        return models.get(self.config.model).prunable

    @property
    def spe(self) -> int:
        return self.recipe.steps_per_epoch(self.dataset.x_train.shape[0])

    @property
    def spawn_points(self) -> list[int | str]:
        """Every spawn point's name, in order of iteration (epochs t, then "<s>it" names)."""
        return [name for name, _ in self.config.spawn_points(self.dataset.x_train.shape[0])]

    def spawn_step(self, name: int | str) -> int:
        """The iteration of a spawn point: t epochs, or s iterations for "<s>it"."""
        return int(name[:-2]) if isinstance(name, str) else name * self.spe

    def spawn_epoch(self, name: int | str) -> float:
        """A spawn point in epochs, as results rows give it (fractional for "<s>it")."""
        return round(self.spawn_step(name) / self.spe, 4) if isinstance(name, str) else name

    def sibling_key(self, name: int | str, i: int) -> jax.Array:
        """The data key of sibling i spawned at a spawn point."""
        if isinstance(name, str):
            return self.key(SIBLING_DATA_AT_ITERATION, self.spawn_step(name), i)
        return self.key(SIBLING_DATA, name, i)

    def replicate(self, j: int) -> "Context":
        """The context of initialization j of --inits: the same data, model and recipe, its
        keys under REPLICATE -> j, its files in `inits/<j>/` of the run directory."""
        if j == 0:
            return self
        return dataclasses.replace(self, rundir=os.path.join(self.rundir, paths.replicate(j)),
                                   root=jax.random.fold_in(jax.random.fold_in(self.root, REPLICATE), j),
                                   init=j)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.spe

    def path(self, relative: str) -> str:
        """The absolute path of a run file (`jaxlottery.paths`), its folder created."""
        p = os.path.join(self.rundir, relative)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    @property
    def how(self) -> dict:
        """How stacks are compiled (strategy, iterations per call, XLA options): for training and
        evaluation. (`flat_update`, a training-only choice, goes to `siblings.train` itself.)"""
        return {"strategy": self.config.strategy, "steps_per_call": self.config.steps_per_call,
                "xla_options": self.config.xla_options}

    def key(self, *names: int) -> jax.Array:
        k = self.root
        for n in names:
            k = jax.random.fold_in(k, n)
        return k

    def scorer(self, start: dict, keys: list, step: int,
               stacked: bool = False) -> Callable[[Any], Any]:
        """`params stack -> scores` of `--criterion` (`jaxlottery.criteria`) for members that
        started from the variables `start` (one network shared by all, or a stack when
        `stacked`) at iteration `step` with data keys `keys`; each member's own score key is
        `fold_in(data key, train.MASK_SCORES)`. SNIP's gradients are taken once, when first
        needed."""
        name = self.config.criterion
        needs = criteria.get(name).needs
        score_keys = jnp.stack([jax.random.fold_in(key, train_lib.MASK_SCORES) for key in keys])
        grads: list = []

        def scores(params):
            if "grads" in needs and not grads:
                grads.append(stacks.stack([train_lib.batch_gradients(
                    stacks.index(start, i) if stacked else start, key, self.data,
                    model=self.model, recipe=self.recipe, step=step,
                    batches=criteria.SNIP_BATCHES) for i, key in enumerate(keys)]))
            return criteria.scores(name, criteria.Evidence(
                params, start["params"], score_keys, grads[0] if grads else None))
        return scores

    def bar(self, stage: str, what: str, total: int):
        """A progress bar for part of a stage, labelled "[i/n] what"; None without progress."""
        if not self.progress or total <= 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"{self.labels.get(stage, '')} {what}".strip(), unit="it",
                    dynamic_ncols=True)


def done(ctx: Context, path: str) -> bool:
    """Whether a stage's output is there and whole (a corrupt one is reported and set aside);
    process 0 decides for all processes."""
    return sharding.agree(checkpoint.readable(path, ctx.log) if sharding.is_main()
                          else os.path.exists(path))


def write(writer: Callable, path: str, obj: Any) -> None:
    """Run files are written by process 0 only (arrays gathered from every process first);
    all processes wait until the file is there, so they skip and read stages alike."""
    obj = sharding.gather(obj)
    if sharding.is_main():
        writer(path, obj)
    sharding.barrier(f"write {path}")


def train_stage(ctx: Context, folder: str, states: train_lib.TrainState, keys: jax.Array,
                bar: Any, *, until: int | None = None, ms: Any = None, evaluate: bool = True,
                on_epoch: Callable | None = None,
                members: int | None = None) -> tuple[train_lib.TrainState, list[dict]]:
    """Train a stack to iteration `until` (default: the end of the schedule), checkpointing
    every epoch in `<folder>/ckpt` and resuming from its newest checkpoint. `members`: how many
    of the stack's networks are real (the rest pad it to a compiled shape); only they count
    in the images/s of the run's timing."""
    until = ctx.total_steps if until is None else until
    ckpts = checkpoint.Checkpoints(ctx.path(paths.checkpoints(folder)))
    first = int(states.step[0])
    history: list[dict] = []
    restored = ckpts.restore(states, log=ctx.log)
    if restored is not None:
        states, meta = restored
        history = meta["history"]
        if bar is not None:
            bar.update(int(states.step[0]) - first)

    def save(epoch: int, st, record: dict):
        files.fault_point(f"epoch {folder}")
        history.append(record)
        if on_epoch is not None:  # before the checkpoint: a resume that starts past this epoch
            on_epoch(epoch, st, record)  # must find what it wrote (the shared stage's W_t)
        step = int(sharding.gather(st.step)[0])
        if (epoch + 1) % ctx.config.checkpoint_every == 0 or step == until:
            ckpts.save(step, st, {"history": history})

    t0, step0 = time.perf_counter(), int(states.step[0])
    try:
        states, _ = siblings.train(states, keys, ctx.data, ctx.model, ctx.recipe, until=until,
                                   ms=ms, evaluate=evaluate, eval_batch=ctx.config.eval_batch,
                                   progress=bar, on_epoch=save,
                                   mesh=ctx.mesh if stacks.size(states) > 1 else None,
                                   flat_update=ctx.config.flat_update, **ctx.how)
    except FloatingPointError as e:
        failed = ctx.path(paths.FAILED)
        failure = {"stage": folder, "error": str(e), "last_good_checkpoint": ckpts.latest_step(),
                   "checkpoints": ckpts.directory}
        write(checkpoint.write_json, failed, failure)
        raise TrainingDiverged(f"stage {folder}: {e}; the last good checkpoint (iteration "
                               f"{failure['last_good_checkpoint']}) is kept in {ckpts.directory}; "
                               f"no results are reported (see {failed})") from None
    finally:
        ckpts.close()  # waits for the last (asynchronous) checkpoint to be complete
    real = stacks.size(states) if members is None else members
    images = real * ctx.recipe.examples(step0, until, ctx.dataset.x_train.shape[0])
    ctx.images[folder] = ctx.images.get(folder, 0) + images
    ctx.timing[folder] = ctx.timing.get(folder, 0.0) + time.perf_counter() - t0
    return states, history
