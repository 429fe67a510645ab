"""Two CPU processes (gloo) with the default strategy: training works and both ranks end identical."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO


@pytest.mark.parametrize(
    "model,loss,extra",
    [
        ("mlp", "bce", ()),
        ("dcgan_mnist", "bce", ()),
        ("mlp", "wgan-gp", ()),
        # R1/R2 double backward and augmentation under DDP, lazily every second D step
        ("mlp", "rpgan", ("--r1", "1", "--r2", "1", "--reg-every", "2", "--diffaug", "color,translation,cutout")),
    ],
)
def test_two_process_cpu_run_keeps_ranks_identical(tmp_path, fake_mnist_dir, model, loss, extra):
    cmd = [sys.executable, str(REPO / "tests" / "ddp_probe.py"), str(tmp_path), "--data-dir", str(fake_mnist_dir),
           "--no-download", "--model", model, "--batch-size", "16", "--latent-dim", "8", "--max-steps", "4",
           "--accelerator", "cpu", "--devices", "2", "--log-dir", str(tmp_path / "logs"), "--d-steps", "2",
           "--loss", loss, *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["iteration"] == 4 for r in ranks)
    assert ranks[0]["strategy"] == "DDPStrategy" and ranks[0]["find_unused"].get("find_unused_parameters")
    a, b = ranks[0]["params"], ranks[1]["params"]
    assert a.keys() == b.keys() and any(k.startswith("generator.") for k in a)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    # rank zero alone writes checkpoints and grids
    run_dir = tmp_path / "logs" / model / "version_0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "logs" / model / "version_1").exists()
    assert len(list((run_dir / "samples").iterdir())) == 1
