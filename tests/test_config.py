"""Configuration: paper defaults, presets, run ids that survive new options, CLI flags."""

import dataclasses

import pytest

from jaxlottery import cli, config
from jaxlottery.config import Config, ConfigError
from jaxlottery.train import Recipe


def test_paper_defaults_follow_the_protocol():
    c = Config()
    r = Recipe.from_config(c)
    assert (r.lr, r.momentum, r.weight_decay, r.batch_size, r.epochs) == (0.1, 0.9, 1e-4, 128, 160)
    assert r.lr_drop_epochs == (80, 120) and not r.nesterov and r.augment
    assert (c.dataset, c.model_depth, c.model_width, c.k) == ("cifar10", 20, 16, 10)
    assert c.spawn_epochs == (0, 1, 2, 5) and c.k_values == (2, 3, 5, 10)
    assert [round(100 * d, 1) for d in c.densities] == [51.2, 32.8, 21.0, 16.8, 10.7, 6.9, 4.4,
                                                        2.8, 1.8]


def test_paper_preset_cost_is_within_budget():
    cost = Config().network_epochs()
    # retraining: 3 spawn points x (28 masks + the dense control) x (160 - t) epochs, one order
    assert cost == {"shared": 5, "siblings": 6320, "independent": 480, "retrain": 16695}
    assert sum(cost.values()) <= 25_000
    two = Config(retrain_seeds=2).network_epochs()
    assert two["retrain"] == 2 * cost["retrain"]  # what measuring retraining noise costs


def test_run_ids_are_pinned_and_ignore_defaults_and_execution_fields():
    # Pinned: changing how ids are computed would orphan every existing run directory.
    assert Config().run_id() == "44136fa355b3"  # sha256("{}"): nothing differs from default
    assert Config(k=5).run_id() == "7b88004a9ffe"
    assert config.preset("smoke").run_id() == "0d2d60bc61e1"
    # Explicitly passing a default, or changing where/how fast, keeps the id.
    assert Config(k=10, seed=0).run_id() == Config().run_id()
    assert Config(strategy="vmap", data_dir="/data", retrain_chunk=4).run_id() == Config().run_id()
    assert Config(seed=1).run_id() != Config().run_id()


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
    (dict(k=3), "--k_values"), (dict(model_depth=19), "--model_depth"),
    (dict(retrain_spawn_epochs=(3,)), "--retrain_spawn_epochs"), (dict(compose=("xor",)), "--compose"),
    (dict(independent_inits=1), "--independent_inits"), (dict(strategy="pmap"), "--strategy"),
    (dict(lr_drop_epochs=(200,)), "--lr_drop_epochs"), (dict(train_subset=0), "--train_subset"),
    (dict(checkpoint_every=0), "--checkpoint_every"),
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
                                      "checkpoint_every", "retrain_chunk", "eval_batch"}
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
