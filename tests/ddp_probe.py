"""Run by test_ddp.py on each rank: train.py's `run` (or `--custom-networks` / `--plain-module`, a tiny Trainer
run), plus a callback that saves the rank's final parameters and counts the gradient bytes DDP all-reduces."""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.commands.train import build_parser, resolve, run
from gan_lightning.training.strategy import ddp_wrappers


def counting_allreduce(
    state: dict[str, int], bucket: torch.distributed.GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """A DDP comm hook: count the bucket's bytes, then all-reduce and average it as DDP does by default."""
    state["bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
    state["buckets"] += 1
    return default_hooks.allreduce_hook(None, bucket)


class DumpParameters(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.comm = {"bytes": 0, "buckets": 0}

    def on_train_start(self, trainer, pl_module) -> None:
        self.wrappers = ddp_wrappers(trainer.strategy)
        for wrapper in self.wrappers:  # before the first backward
            wrapper.register_comm_hook(self.comm, counting_allreduce)

    def on_train_end(self, trainer, pl_module) -> None:
        record = {
            "params": {k: v.detach().cpu() for k, v in pl_module.named_parameters()},
            "buffers": {k: v.detach().cpu() for k, v in pl_module.named_buffers()},
            "state_dict_keys": sorted(pl_module.state_dict()),
            "world_size": trainer.world_size,
            "iteration": getattr(pl_module, "iteration", trainer.global_step),
            "strategy": type(trainer.strategy).__name__,
            # per wrapper: whether DDP searches the graph for unused parameters after every backward
            "find_unused": [w.find_unused_parameters for w in self.wrappers],
            # per wrapper: the trainable parameters it all-reduces (numel)
            "wrapped": [sum(p.numel() for p in w.module.parameters() if p.requires_grad) for w in self.wrappers],
            "allreduce_bytes": self.comm["bytes"],
            "allreduce_buckets": self.comm["buckets"],
        }
        torch.save(record, self.out / f"rank{trainer.global_rank}.pt")


class Regression(pl.LightningModule):
    """Not a GAN: no `ddp_networks()`, so `ddp_per_network` falls back to one wrapper around the module."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x).squeeze(1), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def tiny_run(out: Path, what: str, strategy: str) -> None:
    """Two CPU ranks, 4 steps: custom G and D injected into the GAN, or a plain LightningModule."""
    from test_module import TinyD, TinyG

    pl.seed_everything(0, workers=True, verbose=False)
    if what == "--custom-networks":
        module = GAN(generator=TinyG(), discriminator=TinyD(), latent_dim=4)
        data, steps = TensorDataset(torch.randn(64, 2)), module.optimizer_steps(4)
    else:
        module = Regression()
        data, steps = TensorDataset(torch.randn(64, 4), torch.randn(64)), 4
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=steps, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[DumpParameters(out)])  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=8))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    if sys.argv[2] in ("--custom-networks", "--plain-module"):
        tiny_run(out, sys.argv[2], sys.argv[3])
    else:
        cfg = resolve(build_parser().parse_args(sys.argv[2:]))
        run(cfg, callbacks=[DumpParameters(out)])
