"""gan_lightning.bench.trainer (run by scripts/benchmark.py): a tiny interleaved run prints a well-formed overhead ratio
last (speed is not asserted), and its plain PyTorch loop trains exactly as the Lightning module does."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan_lightning.bench import trainer as overhead
from gan_lightning.bench.plain_loop import PlainLoop, snapshot

from conftest import REPO, cpu_trainer

BENCH = [sys.executable, str(REPO / "scripts" / "benchmark.py")]
TINY = ["--iters", "3", "--rounds", "2", "--warmup", "2", "--synthetic", "--accelerator", "cpu"]


def _report(proc: subprocess.CompletedProcess, out_json) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"overhead_ratio=\d+\.\d{3}", last), last
    assert math.isfinite(float(last.split("=", 1)[1])) and float(last.split("=", 1)[1]) > 0
    assert re.search(r"^images/s: lightning \d+, plain \d+ \(lightning/plain \d+\.\d{3}\)", proc.stdout, re.M)
    return json.loads(out_json.read_text())


def _in_process(argv: list[str], capsys) -> subprocess.CompletedProcess:
    """The benchmark's main(argv) here, as the script runs it, without a second interpreter's start-up."""
    capsys.readouterr()
    code = overhead.main(argv)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def test_benchmark_prints_overhead_ratio_last(tmp_path):
    out_json = tmp_path / "bench.json"
    argv = ["--model", "mlp", "--batch-size", "8", "--accumulate", "2", *TINY, "--json", str(out_json)]
    # from another directory: the installed package, not the working directory, provides the command
    proc = subprocess.run(BENCH + argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    report = _report(proc, out_json)
    assert report["overhead_ratio"] > 0
    for loop in ("lightning", "plain"):
        assert len(report[loop]["iteration_ms"]) == 2  # rounds
        assert all(len(block) == 3 for block in report[loop]["iteration_ms"])  # iters per block
        assert report[loop]["images_per_s"] > 0 and report[loop]["median_block_mean_ms"] > 0
    # Same initial weights, batch and seed: one plain iteration lands on the module's weights after one iteration
    # inside the real `scripts/train.py` run (fp32 on CPU: bit for bit), in 2 micro-batches per update in both.
    assert report["first_iteration_check"]["max_abs_diff"] == 0.0 and report["config"]["accumulate"] == 2


def test_gpu_command_runs_on_cpu_at_tiny_sizes(tmp_path, capsys):
    """The GPU measurement's flags (dcgan, bf16-mixed, channels-last, data on the device), shrunk to run here; its
    time budget is spent by the end of the warm-up, which leaves one block of one iteration per loop."""
    out_json = tmp_path / "bench.json"
    argv = ["--model", "dcgan", "--image-size", "32", "--ngf", "8", "--ndf", "8", "--precision", "bf16-mixed",
            "--batch-size", "8", "--channels-last", "--data-on-device", *TINY, "--budget-s", "0.01",
            "--json", str(out_json)]  # fmt: skip
    report = _report(_in_process(argv, capsys), out_json)
    config = report["config"]
    assert (config["model"], config["image_size"], config["precision"]) == ("dcgan", 32, "bf16-mixed")
    assert config["channels_last"] and config["data_on_device"] and not config["compile"]
    assert report["first_iteration_check"]["max_abs_diff"] is not None
    assert (config["iters"], config["rounds"], config["planned_iters_rounds"]) == (1, 1, [3, 2])
    assert [[len(block) for block in report[loop]["iteration_ms"]] for loop in ("lightning", "plain")] == [[1], [1]]
    assert config["device"] == "cpu"


@pytest.mark.slow
def test_compiled_benchmark_runs_on_cpu(tmp_path):
    out_json = tmp_path / "bench.json"
    argv = ["--model", "mlp", "--batch-size", "8", "--compile", *TINY, "--json", str(out_json)]
    report = _report(subprocess.run(BENCH + argv, capture_output=True, text=True, timeout=1800), out_json)
    assert report["config"]["compile"]


def test_a_cifar10_preset_runs_on_generated_cifar10(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    argv = ["--preset", "dcgan_cifar10", "--ngf", "8", "--ndf", "8", "--batch-size", "8", *TINY, "--json",
            str(out_json)]  # fmt: skip
    report = _report(_in_process(argv, capsys), out_json)
    config = report["config"]
    assert (config["preset"], config["model"], config["image_size"], config["channels"]) == ("dcgan_cifar10", "dcgan",
                                                                                              32, 3)  # fmt: skip
    assert config["data"].startswith("synthetic CIFAR-10") and config["batch_size"] == 8


GPU_MEASURE = [sys.executable, str(REPO / "scripts" / "gpu_measure.py")]


def test_gpu_measurement_covers_every_cifar10_preset_and_refuses_bad_input(tmp_path, capsys):
    from gan_lightning.bench import gpu
    from gan_lightning.commands.train.presets import PRESETS

    cifar = {name for name, values in PRESETS.items() if values.get("dataset") == "cifar10"}
    configs = gpu.configurations()
    assert cifar and set(configs) == {"dcgan_64", *cifar}
    # 512 images with R1 and R2 on every D step do not fit one card: micro-batches of 64
    assert configs["r3gan_cifar10"]["accumulate"] == 8 and PRESETS["r3gan_cifar10"]["batch_size"] == 512
    out = tmp_path / "gpu.json"
    refusals = {"--configs nope: choose from dcgan_64": ["--configs", "nope"],
                "--iters must be positive": ["--accelerator", "cpu", "--iters", "0"]}  # fmt: skip
    if not torch.cuda.is_available():
        refusals["no CUDA device here"] = []
    # too few images for the loader's untimed batches and 2 timed ones
    refusals["--loader-images 1000: with --workers 4 the loader needs 22 training batches"] = [
        "--accelerator", "cpu", "--loader-images", "1000"]  # fmt: skip
    for message, argv in refusals.items():  # the command's main, in this process (scripts/gpu_measure.py calls it)
        assert gpu.main(["--out", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.slow
def test_gpu_measurement_writes_one_json_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    argv = ["--out", str(out), "--accelerator", "cpu", "--precision", "32-true", "--configs", "dcgan_cifar10",
            "--variants", "loader", "data_on_device", "--iters", "2", "--rounds", "2", "--warmup", "1",
            "--fid-batch-size", "2", "--loader-images", "512", "--workers", "0"]  # fmt: skip
    proc = subprocess.run([*GPU_MEASURE, *argv], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    # the cheap measurements first, then training breadth-first
    assert result["order"] == ["fid_inception", "prepared_loader", "training/dcgan_cifar10/loader",
                               "training/dcgan_cifar10/data_on_device"]  # fmt: skip
    assert result["environment"]["torch"] == torch.__version__ and "training" in result["data"]
    rows = result["training"]["dcgan_cifar10"]
    assert set(rows) == {"loader", "data_on_device"}
    for row in rows.values():
        assert row["batch_size"] == 128 and row["lightning"]["images_per_s"] > 0 and row["plain"]["images_per_s"] > 0
        assert row["first_iteration_max_abs_diff"] == 0.0 and row["data"].startswith("synthetic CIFAR-10")
    assert result["fid_inception"]["images_per_s"] > 0 and result["prepared_loader"]["images_per_s"] > 0
    assert result["prepared_loader"]["batches_timed"] >= 2 and "summary:" in proc.stdout


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue
        if int(ppid) == pid and state != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")
@pytest.mark.slow  # two measurement processes and a cap to wait out: run with `pytest -m slow` before a GPU session
def test_gpu_measurement_kills_a_measurement_at_its_cap_and_stops_on_sigterm(tmp_path):
    """Each measurement runs in its own process: one past --cap-s is killed and recorded, and SIGTERM (which a
    training run would catch to save a checkpoint and go on) kills the running one, writes the JSON and exits."""
    out = tmp_path / "gpu.json"
    argv = ["--out", str(out), "--accelerator", "cpu", "--precision", "32-true", "--configs", "dcgan_cifar10",
            "--variants", "loader", "data_on_device", "--skip", "fid", "loader", "--warmup", "50",
            "--cap-s", "11"]  # fmt: skip
    proc = subprocess.Popen([*GPU_MEASURE, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline, kids = time.monotonic() + 240, []
        while time.monotonic() < deadline and proc.poll() is None:  # until the second measurement's process runs
            result = json.loads(out.read_text()) if out.is_file() else {}
            if result.get("order", [])[1:] and "running" in result["training"]["dcgan_cifar10"]["data_on_device"]:
                kids = _children(proc.pid)
                if kids:
                    break
            time.sleep(0.2)
        assert kids, f"no second measurement: {proc.poll()}"
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stdout
    assert not any(_alive(kid) for kid in kids)
    result = json.loads(out.read_text())
    rows = result["training"]["dcgan_cifar10"]
    assert rows["loader"]["error"] == "killed at its time limit, 11 s (--cap-s)"
    assert rows["data_on_device"] == {"error": "stopped by SIGTERM"} and result["stopped"].startswith("SIGTERM")
    assert "stopped by SIGTERM" in stdout


def test_device_script_fails_fast_without_a_gpu(tmp_path):
    """scripts/gpu_measure_device.sh, the device tool's one command: valid bash that stops at its GPU check."""
    script = REPO / "scripts" / "gpu_measure_device.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script would measure")
    (tmp_path / "scripts").mkdir()
    shutil.copy(script, tmp_path / "scripts")  # a copy: no carried wheels there to install
    (tmp_path / "bin").mkdir()
    python3 = tmp_path / "bin" / "python3"  # this interpreter, its environment's packages included
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python3.chmod(0o755)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "gpu_measure_device.sh")], capture_output=True,
                          text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode != 0 and "gpu_measure.py exit status" not in proc.stdout, proc.stdout
    assert "Error" in proc.stderr.splitlines()[-1] and "ModuleNotFoundError" not in proc.stderr, proc.stderr
    assert list((tmp_path / "out").iterdir()) == []  # neither the JSON nor the log: it stopped before measuring


def test_plain_loop_synchronizes_only_at_block_boundaries():
    """The plain loop reads its (device-synchronizing) clock before its first and after its last iteration only:
    one synchronization per iteration would remove the overlap of host and device that training has."""
    from gan_lightning import GAN
    from gan_lightning.data.base import TensorImageDataset
    from gan_lightning.data.loading import make_train_loader
    from gan_lightning.models.mlp import MLPDiscriminator, MLPGenerator

    shape = (1, 8, 8)
    module = GAN(generator=MLPGenerator(16, shape, hidden=8), discriminator=MLPDiscriminator(shape, hidden=8),
                 latent_dim=16)  # fmt: skip
    dataset = TensorImageDataset(torch.randint(0, 256, (16, *shape), dtype=torch.uint8), torch.zeros(16).long())
    loader = make_train_loader(dataset, batch_size=4, collate_fn=dataset.collate_fn)
    plain = PlainLoop(module, module.configure_optimizers(), loader)
    readings = []

    def clock() -> float:
        readings.append(time.perf_counter())
        return readings[-1]

    times = plain.run(5, clock)
    assert len(readings) == 2 and len(times) == 5
    assert sum(times) == pytest.approx(readings[1] - readings[0])


def test_bad_input_is_status_2_and_one_line(tmp_path, capsys):
    assert overhead.main(["--iters", "0"]) == 2
    assert overhead.main(["--data-dir", str(tmp_path)]) == 2  # no MNIST there
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.startswith("benchmark.py: error: --iters must be positive")
    assert "no MNIST under" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "bce"},
        {"loss": "wgan-gp", "conditional": True},  # the gradient penalty draws from the rng; projection head
        {"loss": "lsgan", "infogan": True},  # the Q head; codes in the latents
        {"loss": "bce", "precision": "bf16-mixed"},  # autocast as Lightning's (no cast cache: weights change in place)
        # lazy R1/R2 on every second D step (the step index), augmentation drawing from the rng
        {"loss": "rpgan", "r1": 1.0, "r2": 1.0, "reg_every": 2, "diffaug": "color,translation,cutout"},
    ],
    ids=["bce", "wgan-gp-conditional", "lsgan-infogan", "bce-bf16", "rpgan-r1-r2-diffaug"],
)
def test_plain_loop_trains_exactly_as_the_module(tmp_path, options):
    """The check that the plain loop cannot drift from the module: same start, same batches, same iterations ->
    the same G and D (heads included), bit for bit (on CPU: the same kernels on the same values in the same order;
    only Lightning's bookkeeping around them differs)."""
    from gan_lightning import GAN, LatentSpace
    from gan_lightning.data.base import TensorImageDataset
    from gan_lightning.data.loading import make_train_loader
    from gan_lightning.models.mlp import MLPDiscriminator, MLPGenerator

    torch.manual_seed(0)
    options = dict(options)
    precision = options.pop("precision", "32-true")
    cond, info = options.get("conditional", False), options.get("infogan", False)
    shape = (1, 8, 8)  # the cs231n MLPs, narrow and on small images: the same code paths, a fraction of the time
    inputs = LatentSpace(16, num_classes=10 * cond, n_cat=10 * info, n_cont=2 * info).input_dim
    module = GAN(generator=MLPGenerator(inputs, shape, hidden=32), discriminator=MLPDiscriminator(shape, hidden=32),
                 latent_dim=16, d_steps=3, n_cont=2, seed=3, **options)  # fmt: skip
    dataset = TensorImageDataset(torch.randint(0, 256, (20, *shape), dtype=torch.uint8), torch.randint(0, 10, (20,)))

    # 10 images into d_steps=3: tensor_split gives chunks of 4, 3, 3 (chunk() would give 4, 4, 2), the G phase
    # takes the last; 2 batches per epoch
    def loader():
        return make_train_loader(dataset, batch_size=10, seed=1, collate_fn=dataset.collate_fn)

    # copies of the networks before any update
    plain = PlainLoop(module, module.configure_optimizers(), loader(), precision=precision)
    before = snapshot(module.generator, module.discriminator)
    iterations = 3  # into a second epoch: both loops reshuffle with the sampler's seed + epoch
    trainer = cpu_trainer(tmp_path, precision=precision, max_steps=module.optimizer_steps(iterations))
    trainer.fit(module, train_dataloaders=loader())
    assert module.iteration == iterations
    for _ in range(iterations):
        plain.step(plain.next_batch())

    lightning = snapshot(module.generator, module.discriminator)
    ours = snapshot(plain.G, plain.D)
    assert lightning.keys() == ours.keys()
    if cond or info:
        assert any(".projection." in k or ".q_head." in k for k in ours)  # the heads are compared too
    # every tensor trained, so equality is no accident (but D's output bias: losses of logit differences cancel it)
    assert [k for k in ours if torch.equal(before[k], ours[k])] == ["D.net.head.bias"] * (
        options["loss"] in ("wgan-gp", "rpgan")
    )
    differing = [k for k in ours if not torch.equal(ours[k], lightning[k])]
    assert not differing, {k: (ours[k] - lightning[k]).abs().max().item() for k in differing}


@pytest.mark.slow  # a process per count, each importing torch: about a minute on 2 busy cores
def test_memory_benchmark_measures_each_count_in_its_own_process():
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark_memory.py"), "--counts", "30", "60", "--num-reference",
           "40", "--image-size", "4", "--features", "16", "--threads", "1", "--protocol", "kid50k_full"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    *rows, summary = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["count"] for r in rows] == [30, 60] and [r["kid_prdc_generated"] for r in rows] == [30, 60]
    assert all(r["peak_rss_gb"] > 0 and r["ratio"] > 0 and math.isfinite(r["fid"]) for r in rows)
    assert summary == {"peak_rss_gb": {"30": rows[0]["peak_rss_gb"], "60": rows[1]["peak_rss_gb"]},
                       "min_ratio": min(r["ratio"] for r in rows)}  # fmt: skip
