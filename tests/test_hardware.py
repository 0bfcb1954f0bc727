"""A GPU or TPU machine whose JAX computes on the CPU stops before any work, naming the fix."""

import os

import pytest

from jaxlottery import cli, hardware


@pytest.fixture
def gpu_box(monkeypatch):
    """This CPU machine, made to look like an NVIDIA box whose jaxlib has no CUDA."""
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(hardware.glob, "glob",
                        lambda pattern: ["/dev/nvidia0"] if "nvidia" in pattern else [])
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)


def test_a_gpu_box_on_the_cpu_stops_with_one_line_naming_the_extra(gpu_box, tmp_path, capsys):
    status = cli.main(["--preset=smoke", f"--workdir={tmp_path}/runs", "--no_progress"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "has a GPU (NVIDIA device /dev/nvidia0)" in err and '".[cuda]"' in err
    assert "--allow_cpu" in err and not os.path.exists(tmp_path / "runs")  # before any work


def test_allow_cpu_or_jax_platforms_cpu_goes_on(gpu_box, tmp_path, capsys, monkeypatch):
    from jaxlottery import estimate

    monkeypatch.setattr(estimate, "measure_throughput", lambda ctx: 1000.0)  # not what's tested
    args = ["--preset=smoke", f"--workdir={tmp_path}/runs", "--dry_run"]
    assert cli.main(args + ["--allow_cpu"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("backend cpu: 1 x cpu (jax ")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert cli.main(args) == 0


def test_what_the_operating_system_shows(monkeypatch):
    files = {"/dev/nvidia[0-9]*": [], "/dev/accel[0-9]*": [], "/dev/vfio/[0-9]*": []}
    monkeypatch.setattr(hardware.glob, "glob", lambda p: files[p])
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    monkeypatch.delenv("TPU_ACCELERATOR_TYPE", raising=False)
    assert hardware.visible_accelerators() == {}
    monkeypatch.setattr(hardware.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    assert hardware.visible_accelerators() == {"gpu": "nvidia-smi on the PATH"}
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    files["/dev/accel[0-9]*"] = ["/dev/accel0", "/dev/accel1"]
    assert hardware.visible_accelerators() == {"tpu": "TPU device /dev/accel0"}
    files["/dev/accel[0-9]*"], files["/dev/vfio/[0-9]*"] = [], ["/dev/vfio/0"]
    assert hardware.visible_accelerators() == {}  # VFIO alone is not a TPU
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v5litepod-8")
    assert hardware.visible_accelerators() == {"tpu": "a TPU VM's VFIO devices"}
    with pytest.raises(hardware.AcceleratorUnused, match=r'\.\[tpu\]'):
        monkeypatch.delenv("JAX_PLATFORMS", raising=False)
        hardware.check()
    hardware.check(seen={})  # nothing visible: the CPU is all there is


def test_host_available_memory_reads_meminfo_then_sysconf(monkeypatch):
    with open("/proc/meminfo") as f:
        meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    available = hardware.host_available_bytes()
    assert 0 < available <= meminfo["MemTotal"]

    def no_proc(path, *args, **kwargs):
        raise FileNotFoundError(path)

    monkeypatch.setattr("builtins.open", no_proc)  # a host without /proc (macOS)
    assert 0 < hardware.host_available_bytes() <= meminfo["MemTotal"]
    monkeypatch.setattr(os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert hardware.host_available_bytes() is None
