"""The ways to start the study: experiments/run.py, `python -m jaxlottery`, the `jaxlottery`
console script, `--dry_run` (creates nothing) and `--config` (a finished run's settings)."""

import json
import os
import subprocess
import sys

import pytest

from jaxlottery import cli, config
from jaxlottery.config import ConfigError

from conftest import ENV, REPO


def test_python_dash_m_and_the_console_script_are_the_cli():
    proc = subprocess.run([sys.executable, "-m", "jaxlottery", "--help"], env=ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--dry_run" in proc.stdout and "--config" in proc.stdout
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    module, _, name = scripts["jaxlottery"].partition(":")
    assert module == "jaxlottery.cli" and callable(getattr(cli, name))


def test_config_flag_reruns_a_runs_exact_settings(tmp_path):
    earlier = config.preset("smoke", k=4, seed=7)
    (tmp_path / "config.json").write_text(json.dumps({"config": earlier.to_dict()}))
    args = cli.build_parser().parse_args([f"--config={tmp_path / 'config.json'}"])
    assert cli.config_from_args(args) == earlier
    args = cli.build_parser().parse_args([f"--config={tmp_path}", "--seed=8"])  # the folder too
    assert cli.config_from_args(args) == config.preset("smoke", k=4, seed=8)
    for argv, match in (([f"--config={tmp_path}", "--preset=quick"], "give one"),
                        ([f"--config={tmp_path / 'none.json'}"], "cannot read")):
        with pytest.raises(ConfigError, match=match):
            cli.config_from_args(cli.build_parser().parse_args(argv))
    (tmp_path / "bad.json").write_text("null")
    with pytest.raises(ConfigError, match="not a run's config.json"):
        cli.config_from_args(cli.build_parser().parse_args([f"--config={tmp_path / 'bad.json'}"]))


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path, capsys):
    assert cli.main(["--preset=smoke", f"--workdir={tmp_path / 'runs'}", "--dry_run"]) == 0
    out = capsys.readouterr().out
    run_id = config.preset("smoke").run_id()
    assert f"run directory: {tmp_path / 'runs' / run_id} (new)" in out
    retrain = config.preset("smoke").network_epochs()["retrain"]
    assert f"[8/10] retrain: retraining, {retrain:,.0f} network-epochs" in out
    assert "replicates" not in out  # one init: nothing to repeat
    assert "network-epochs, about" in out and "nothing was written" in out
    assert "imprint: the final weights keep 1.00 of their initial values" in out
    assert "cannot test claim 1" in out
    assert not (tmp_path / "runs").exists()
    # a spawn point after the first learning-rate drop (smoke drops at epoch 2) is flagged
    assert cli.main(["--preset=smoke", f"--workdir={tmp_path / 'runs'}", "--dry_run",
                     "--spawn_epochs=0,2", "--retrain_spawn_epochs=2"]) == 0
    assert "WARNING: spawn point(s) 2 lie at or after the first learning-rate drop (epoch 2)" in \
        capsys.readouterr().out


def test_the_imprint_sweep_refuses_bad_input_in_one_line(tmp_path, capsys):
    from jaxlottery import imprint_sweep

    for argv, needle in ((["--weight_decays=1e-4,lots"], "--weight_decays: expected comma-"),
                         (["--weight_decays=1e-4,1e-4"], "give distinct values"),
                         (["--weight_decays=-1"], "--weight_decay: must be >= 0"),
                         (["--spawn_epochs=1"], "include 0"), (["--inits=0"], "--inits")):
        assert imprint_sweep.main([f"--workdir={tmp_path / 'runs'}", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_the_compilation_cache_is_on_during_a_run_and_left_as_found(tmp_path):
    """A run stores its programs in WORKDIR/compilation_cache (or --compilation_cache), keeps a
    cache the caller set (the test suite's own), is off with "none", and afterwards the process
    is as it was."""
    import jax

    from jaxlottery import cli

    def args(*extra):
        return cli.build_parser().parse_args([f"--workdir={tmp_path}", *extra])

    suite = jax.config.jax_compilation_cache_dir
    with cli.compilation_cache(args()) as path:  # the caller's (conftest's) cache wins
        assert path == suite == jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        with cli.compilation_cache(args()):
            assert jax.config.jax_compilation_cache_dir == os.path.abspath(tmp_path / "compilation_cache")
            jax.jit(lambda x: x + 1.25)(1.0).block_until_ready()
        assert jax.config.jax_compilation_cache_dir is None
        assert os.listdir(tmp_path / "compilation_cache")  # the program was stored
        with cli.compilation_cache(args(f"--compilation_cache={tmp_path / 'elsewhere'}")):
            assert jax.config.jax_compilation_cache_dir.endswith("elsewhere")
        with cli.compilation_cache(args("--compilation_cache=none")) as path:
            assert path is None and jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", suite)
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()


def test_version_and_commit_are_recorded(tmp_path, capsys):
    from jaxlottery import provenance, results

    here = provenance.source()
    git = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
    if git.returncode != 0:  # CI from an export without .git: nothing to record, no error
        assert here["commit"] is None and provenance.describe() == "jaxlottery 0.1.0"
        return
    assert here["version"] == "0.1.0" and here["commit"] == git.stdout.strip()
    assert isinstance(here["modified"], bool)
    assert provenance.source(str(tmp_path)) == {"version": "0.1.0", "commit": None,
                                                "modified": None}  # not a git checkout
    env = results.environment()
    assert env["commit"] == here["commit"] and env["modified"] == here["modified"]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == provenance.describe()
    assert provenance.describe().startswith(f"jaxlottery 0.1.0 (commit {here['commit'][:7]}")
