"""Configuration: paper defaults, presets, run ids that survive new options, CLI flags."""

import dataclasses
import math
import os

import pytest

from jaxlottery import cli, config, imprint
from jaxlottery.config import Config, ConfigError
from jaxlottery.train import Recipe


def test_paper_defaults_follow_the_protocol():
    c = Config()
    r = Recipe.from_config(c)
    assert (r.lr, r.momentum, r.weight_decay, r.batch_size, r.epochs) == (0.1, 0.9, 1e-4, 128, 160)
    assert r.lr_drop_epochs == (80, 120) and not r.nesterov and r.augment
    assert (c.dataset, c.model, c.k) == ("cifar10", "cifar_resnet_20", 10)
    assert c.spawn_epochs == (0, 1, 2, 5) and c.k_values == (2, 3, 5, 10)
    assert [round(100 * d, 1) for d in c.densities] == [51.2, 32.8, 21.0, 16.8, 10.7, 6.9, 4.4,
                                                        2.8, 1.8]


def test_paper_preset_cost_is_within_budget():
    cost = Config().network_epochs()
    # retraining at spawn points 0 and 5, 4 densities, one order: per density 19 composed masks
    # (union, intersection at k' = 2, 3, 5 twice and at 10 once; vote at 3, 5 twice and at 10
    # once), 2 one-shot baselines and 2 random controls; + the dense control: 93 x (160 + 155).
    assert cost == {"shared": 5, "siblings": 6320, "independent": 480, "retrain": 29295}
    assert sum(cost.values()) <= 37_000
    single = Config(mask_replicates=1, positive_control=False).network_epochs()
    assert single["retrain"] == (4 * 13 + 1) * (160 + 155)  # 11 composed + 2 one-shot
    two = Config(retrain_seeds=2).network_epochs()
    assert two["retrain"] == 2 * cost["retrain"]  # what measuring retraining noise costs


def test_retained_imprint_against_a_hand_computation_with_two_drops():
    # 1,000 images at batch 300: 4 iterations per epoch (the last partial). 10 epochs, drops at
    # 5 and 8 (x0.1): 20 iterations at 0.2, 12 at 0.02, 8 at 0.002; wd 1e-3, momentum 0.8.
    cfg = Config(epochs=10, batch_size=300, lr=0.2, momentum=0.8, weight_decay=1e-3,
                 lr_drop_epochs=(5, 8), spawn_epochs=(0,), retrain_spawn_epochs=(0,))
    lr_sum = 20 * 0.2 + 12 * 0.02 + 8 * 0.002
    assert imprint.retained(cfg, 1000) == pytest.approx(math.exp(-1e-3 / 0.2 * lr_sum))
    assert cfg.imprint(1000) == imprint.retained(cfg, 1000)
    # From a spawn point at epoch 6 (iteration 24): 8 iterations at 0.02, 8 at 0.002.
    assert cfg.imprint(1000, from_epoch=6) == pytest.approx(math.exp(-1e-3 / 0.2 * (
        8 * 0.02 + 8 * 0.002)))
    assert imprint.retained(Recipe(), 50_000) == pytest.approx(
        math.exp(-1e-4 / 0.1 * (31280 * 0.1 + 15640 * 0.01 + 15640 * 0.001)))
    # The figures PROTOCOL.md quotes: paper 0.04, 30 CIFAR-10 epochs 0.54, quick 0.98.
    assert Config().imprint() == pytest.approx(0.04, abs=0.005)
    assert Config(epochs=30, lr_drop_epochs=(15, 22)).imprint() == pytest.approx(0.54, abs=0.01)
    assert config.preset("quick").imprint() == pytest.approx(0.98, abs=0.005)
    assert Config(weight_decay=0).imprint() == 1.0


def test_spawn_points_snapshots_and_late_spawn_points():
    cfg = Config(epochs=12, lr_drop_epochs=(6, 9), spawn_epochs=(0, 1, 6), spawn_iterations=(50,),
                 retrain_spawn_epochs=(0,), train_subset=4000)  # 32 iterations per epoch
    assert cfg.spawn_points() == [(0, 0), (1, 32), ("50it", 50), (6, 192)]
    assert cfg.late_spawn_points() == [6]
    assert cfg.snapshots() == (1, 2, 3, 4, 5, 7, 9, 12)  # auto: geometric from 1 to the end
    assert Config().snapshots() == (1, 2, 3, 5, 10, 17, 29, 52, 91, 160)
    assert dataclasses.replace(cfg, snapshot_epochs=(12, 3)).snapshots() == (3, 12)
    assert dataclasses.replace(cfg, snapshot_epochs=()).snapshots() == ()
    assert Config(snapshot_epochs=[1, 2]).snapshot_epochs == (1, 2)
    cost = cfg.network_epochs()  # the iteration spawn point costs its fraction of an epoch
    assert cost["shared"] == 6 and cost["siblings"] == 10 * (12 + 11 + (12 - 50 / 32) + 6)


def test_inits_repeat_the_consistency_design_and_keep_every_earlier_id():
    one, three = Config(), Config(inits=3)
    assert three.network_epochs()["replicates"] == 2 * (5 + 6320 + 480)
    assert {k: v for k, v in three.network_epochs().items() if k != "replicates"} == \
        one.network_epochs()
    assert "replicates" not in one.network_epochs()
    assert Config(inits=1, snapshot_epochs="auto", spawn_iterations=()).run_id() == one.run_id()


def test_run_ids_are_pinned_and_ignore_defaults_and_execution_fields():
    # Pinned: changing how ids are computed would orphan every existing run directory.
    assert Config().run_id() == "2410cd1a8bd8"
    assert config.preset("smoke").run_id() == "dfddfcc91936"
    # The design before replicated masks and the control keeps the ids it had.
    before = dict(mask_replicates=1, positive_control=False)
    assert Config(**before).run_id() == "44136fa355b3"  # sha256("{}")
    assert Config(k=5, **before).run_id() == "7b88004a9ffe"
    assert config.preset("smoke", **before).run_id() == "0d2d60bc61e1"
    # Explicitly passing a default, or changing where/how fast, keeps the id.
    assert Config(k=10, seed=0).run_id() == Config().run_id()
    assert Config(strategy="vmap", data_dir="/data", retrain_chunk=4).run_id() == Config().run_id()
    assert Config(xla_options="concurrent", flat_update=True).run_id() == Config().run_id()
    assert Config(seed=1).run_id() != Config().run_id()
    # bfloat16 arithmetic computes something else: a run of its own; float32 keeps old ids.
    assert Config(compute_dtype="float32").run_id() == Config().run_id()
    assert Config(compute_dtype="bfloat16").run_id() != Config().run_id()
    assert Config(criterion="magnitude").run_id() == Config().run_id()  # existing ids kept
    assert Config(criterion="movement").run_id() != Config().run_id()


def test_models_by_name_keep_the_ids_of_the_depth_and_width_they_replaced():
    """Pinned at the commit before models had names (model_depth/model_width fields): the same
    ResNet gets the same id under either name; another family's name is hashed as given."""
    assert config.preset("quick").run_id() == "132e1071f312"
    assert config.preset("imprint").run_id() == "9273f51b45ee"
    assert Config(model="cifar_resnet_56").run_id() == "90ed6bd4f5b0"
    assert Config(model="cifar_resnet_20_32").run_id() == "aeba3601a92f"
    assert Config(model="cifar_resnet_20_16").run_id() == Config().run_id()
    assert Config(model="cifar_vgg_16").run_id() not in (Config().run_id(),
                                                        Config(model="cifar_vgg_16_64").run_id())


def test_committed_records_load_as_named_models_with_their_ids():
    """Every committed run's results.json reads back with its id. Those written before model
    names (with `model_depth`/`model_width`) read back as the named ResNet, with the id the
    commit before names (f2f3619) gave them: the id they were written under, except the run
    made before issue 23's new defaults, which that issue re-addressed."""
    import glob
    import json

    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
    readdressed = {os.path.join(docs, "quick_composition_fashion_mnist", "results.json"):
                   "e45bed7bd8bd"}
    found = glob.glob(os.path.join(docs, "**", "results.json"), recursive=True)
    assert len(found) >= 5 and set(readdressed) <= set(found)
    legacy = 0
    for path in found:
        with open(path) as f:
            record = json.load(f)
        back = Config.from_dict(record["config"])
        if "model_depth" in record["config"]:
            legacy += 1
            assert back.model == "cifar_resnet_{model_depth}{suffix}".format(
                suffix="" if record["config"]["model_width"] == 16 else
                f"_{record['config']['model_width']}", **record["config"]), path
        else:
            assert back.model == record["config"]["model"] == record["model"]["name"], path
        assert back.run_id() == readdressed.get(path, record["run_id"]), path
    assert legacy >= 5
    assert Config.from_dict({"model_depth": 8}).model == "cifar_resnet_8"
    with pytest.raises(ConfigError, match="names its model twice"):
        Config.from_dict({"model": "cifar_vgg_16", "model_width": 8})
    with pytest.raises(ConfigError, match="must be integers"):
        Config.from_dict({"model_depth": "20"})


def test_adding_an_option_with_a_default_keeps_old_ids():
    @dataclasses.dataclass(frozen=True)
    class Extended(Config):
        new_option: int = 7

    assert Extended(k=5).non_default() == {"k": 5}


@pytest.mark.parametrize("name", sorted(config.PRESETS))
def test_presets_are_valid(name):
    config.preset(name).validate()


@pytest.mark.parametrize("change,flag", [
    (dict(k=0), "--k"), (dict(k=1), "--k"), (dict(densities=(0.5, 0.0)), "--densities"),
    (dict(densities=(1.5,)), "--densities"), (dict(spawn_epochs=(0, 160)), "--spawn_epochs"),
    (dict(k=3), "--k_values"), (dict(model="cifar_resnet_19"), "--model"),
    (dict(retrain_spawn_epochs=(3,)), "--retrain_spawn_epochs"), (dict(compose=("xor",)), "--compose"),
    (dict(independent_inits=1), "--independent_inits"), (dict(strategy="pmap"), "--strategy"),
    (dict(lr_drop_epochs=(200,)), "--lr_drop_epochs"), (dict(train_subset=0), "--train_subset"),
    (dict(checkpoint_every=0), "--checkpoint_every"), (dict(strategy="pjit"), "--strategy"),
    (dict(compute_dtype="float16"), "--compute_dtype"),
    (dict(criterion="size"), "--criterion"), (dict(criterion=None), "--criterion"),
    (dict(xla_options="fast"), "--xla_options"),
    (dict(flat_update="yes"), "--flat_update"),
])
def test_bad_settings_name_their_flag(change, flag):
    with pytest.raises(ConfigError, match=flag):
        Config(**change).validate()


def test_flags_override_the_preset_and_k_caps_its_lists():
    args = cli.build_parser().parse_args(["--preset=smoke", "--epochs=5", "--densities=0.5,0.25"])
    c = cli.config_from_args(args)
    assert c.epochs == 5 and c.densities == (0.5, 0.25) and c.dataset == "synthetic"
    c = cli.config_from_args(cli.build_parser().parse_args(["--k=3"]))
    assert c.k_values == (2, 3) and c.baseline_siblings == 2
    c.validate()
    c = cli.config_from_args(cli.build_parser().parse_args(["--train_subset=none", "--augment=false"]))
    assert c.train_subset is None and c.augment is False


@pytest.mark.parametrize("argv,needle", [
    (["--k=0"], "--k"), (["--k=abc"], "--k"), (["--densities=0.5,2"], "--densities"),
    (["--spawn_epochs=0,999"], "--spawn_epochs"), (["--k=4", "--k_values=2,8"], "--k_values"),
    (["--preset=fast"], "--preset"), (["--augment=maybe"], "--augment"),
])
def test_cli_rejects_bad_flags_in_one_line_with_status_2(argv, needle, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as e:  # argparse's own type errors
        status = e.code
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert needle in err and len(err.splitlines()) == 1, err


def test_options_are_declared_once():
    """Every field has its help text (the CLI is made from it), the run id's exclusions come
    from the fields, and the recipe is the config's fields of the same names."""
    import dataclasses

    from jaxlottery import cli

    for f in dataclasses.fields(Config):
        assert f.metadata["help"] and isinstance(f.metadata["hashed"], bool), f.name
    assert set(config.NOT_HASHED) == {"data_dir", "strategy", "steps_per_call", "shard",
                                      "checkpoint_every", "retrain_chunk", "eval_batch",
                                      "xla_options", "flat_update"}
    text = cli.build_parser().format_help()
    assert all(f"--{f.name}" in text for f in dataclasses.fields(Config))
    c = Config(lr=0.05, nesterov=True, lr_drop_factor=0.5, epochs=20, lr_drop_epochs=(10,))
    assert Recipe.from_config(c) == Recipe(lr=0.05, nesterov=True, lr_drop_factor=0.5, epochs=20,
                                           lr_drop_epochs=(10,))
    with pytest.raises(ConfigError, match="--lr_drop_factor"):
        Config(lr_drop_factor=0.0).validate()
    with pytest.raises(ConfigError, match="--lr_drop_factor"):
        Recipe(lr_drop_factor=2.0)  # the same rule, checked in one place


def test_the_configuration_imports_no_training_code():
    """config is a leaf below the training code: importing it loads no model, no training."""
    import subprocess
    import sys

    code = ("import sys, jaxlottery.config; bad = [m for m in ('jaxlottery.train', "
            "'jaxlottery.models', 'jaxlottery.siblings', 'jaxlottery.experiment', 'flax', "
            "'optax') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_config_written_before_a_setting_reads_back_at_its_introduced_value():
    """A run directory made before replicated masks holds a config.json without them: it reads
    back as the design that made it, which is not today's default, so resuming it under the
    default settings is refused rather than mixing two designs, and its own settings resume it."""
    old = {k: v for k, v in Config().to_dict().items()
           if k not in config.INTRODUCED_AS}
    back = Config.from_dict(old)
    assert (back.mask_replicates, back.positive_control) == (1, False)
    assert back != Config() and back.run_id() == "44136fa355b3"
    assert Config.from_dict(Config().to_dict()) == Config()
