"""Named bundles of settings (`config.preset(name, **overrides)` applies one to a `Config`).

- `paper` (the default): the protocol on CIFAR-10, ResNet-20, k = 10.
- `quick`: a scaled study for a laptop CPU: ResNet-8 of width 8, a 4,000-image subset,
  12 epochs, k = 4. Shows the effects qualitatively; not the paper's numbers.
- `smoke`: synthetic data, every stage, seconds per stage; for tests and first contact.
- `imprint`: the mechanism behind claim 1 at quick's scale: siblings spawned at initialization
  only, two initializations, no retraining; `jaxlottery.imprint_sweep` runs it at several weight
  decays, so that the imprint the initialization leaves on the final weights spans 0.98 to 0.05.
- `claim2`: the paper's composition claim on one GPU: the paper's recipe and network, siblings
  spawned at epoch 5 only, k' in {2, 10} (union and intersection), two densities, every mask
  and its replicates, the one-shot baselines and the positive control retrained with 3 data
  orders; no connectivity, no control inits.

`quick` and `smoke` also run every analysis beyond the paper (IMP and parallel IMP, the random
and re-initialized baselines); `paper` runs those only when asked, since they would more than
double its cost. Plain data: this module imports nothing.
"""

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": dict(model="cifar_resnet_8_8", train_subset=4000, test_subset=2000, epochs=12,
                  lr_drop_epochs=(6, 9), k=4, spawn_epochs=(0, 1, 3),
                  densities=(0.8**3, 0.8**7, 0.8**10, 0.8**14), independent_inits=2,
                  k_values=(2, 4), retrain_spawn_epochs=(1,), retrain_densities=(0.8**7, 0.8**14),
                  baseline_siblings=2, random_baselines=("random", "random_matched", "reinit"),
                  lmc_pairs=2, imp_levels=4, imp_rate=0.36, imp_k=2, retrain_seeds=2),
    "smoke": dict(dataset="synthetic", model="cifar_resnet_8_4", train_subset=256,
                  test_subset=128, epochs=3, lr_drop_epochs=(2,), batch_size=64, k=3,
                  spawn_epochs=(0, 1), densities=(0.5, 0.2), independent_inits=2, k_values=(2, 3),
                  retrain_spawn_epochs=(1,), retrain_densities=(0.2,), baseline_siblings=2,
                  random_baselines=("random", "random_matched", "reinit"), lmc_points=5,
                  imp_levels=2, imp_k=2, retrain_seeds=2),
}
PRESETS["imprint"] = dict(
    {k: v for k, v in PRESETS["quick"].items()
     if k in ("model", "train_subset", "test_subset", "epochs",
              "lr_drop_epochs", "k", "densities", "independent_inits")},
    spawn_epochs=(0,), retrain_spawn_epochs=(), k_values=(2,), baseline_siblings=1, lmc_pairs=0,
    inits=2)
PRESETS["claim2"] = dict(spawn_epochs=(5,), retrain_spawn_epochs=(5,), k_values=(2, 10),
                        compose=("union", "intersection"), retrain_densities=(0.8**8, 0.8**12),
                        retrain_seeds=3, independent_inits=0, lmc_pairs=0)
