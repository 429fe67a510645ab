"""The module's cheap per-iteration paths: the direct optimizer step (same weights and step count as Lightning's
hooked path, which still runs whenever a hook is overridden), per-phase freezing, the step counter, batch transfer
and scalars written straight to the loggers."""

from __future__ import annotations

import math
import os

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins import MixedPrecision
from test_callbacks import read_events
from test_module import image_loader, snapshot

from gan_lightning import GAN, strategy
from gan_lightning.strategy import DirectUpdate

from conftest import cpu_trainer


class Watch(Callback):
    """Records, each iteration, which step path the module took and its iteration next to Lightning's global_step."""

    def __init__(self) -> None:
        self.paths: set[bool] = set()
        self.counts: list[tuple[int, int]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.paths.add(isinstance(pl_module._direct, DirectUpdate))
        self.counts.append((pl_module.iteration, trainer.global_step))


class CountsBackward(Watch):
    """Overrides a step hook, so Lightning's own path must run (and call it once per optimizer step)."""

    calls = 0

    def on_after_backward(self, trainer, pl_module) -> None:
        CountsBackward.calls += 1


def _train(tmp_path, watch: Watch, precision: str = "32-true", **kwargs) -> GAN:
    torch.manual_seed(0)
    gan = GAN("dcgan_mnist", latent_dim=8, d_steps=2, **kwargs)
    trainer = cpu_trainer(tmp_path, precision=precision, callbacks=[watch], max_steps=gan.optimizer_steps(3))
    trainer.fit(gan, image_loader(n=48, batch_size=16))
    return gan


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_direct_step_trains_exactly_as_lightnings_hooked_path(tmp_path, precision):
    direct, hooked = Watch(), CountsBackward()
    CountsBackward.calls = 0
    a = _train(tmp_path, direct, precision)
    b = _train(tmp_path, hooked, precision)
    assert direct.paths == {True} and hooked.paths == {False}
    assert CountsBackward.calls == 3 * 3  # the overridden hook ran on every optimizer step
    assert direct.counts == hooked.counts == [(i, 3 * i) for i in (1, 2, 3)]  # global_step counts optimizer steps
    for net in ("generator", "discriminator"):
        for k, v in snapshot(getattr(a, net)).items():
            assert torch.equal(v, snapshot(getattr(b, net))[k]), f"{net}.{k}"
    assert a._steps is None  # after training, `iteration` reads global_step again
    assert a.iteration == 3


def test_lightnings_path_counts_fp16_skips_too(tmp_path):
    # the fallback path (a hook is overridden) with a scaler whose scale overflows fp16: every step is skipped
    gan = GAN("dcgan_mnist", latent_dim=8)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    watch = CountsBackward()
    trainer = cpu_trainer(tmp_path, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)], callbacks=[watch],
                          max_steps=gan.optimizer_steps(2))  # fmt: skip
    trainer.fit(gan, image_loader())
    assert watch.paths == {False}
    assert int(gan.amp.skipped) == round(math.log2(2.0**40 / scaler.get_scale())) == 4


def test_each_phase_freezes_the_other_network_and_keeps_user_frozen_parameters(tmp_path):
    seen = []

    class Spy(GAN):
        def _update(self, optimizer, loss):
            seen.append((all(p.requires_grad for p in self.discriminator.parameters()),
                         [p.requires_grad for p in self.generator.parameters()]))  # fmt: skip
            super()._update(optimizer, loss)

    gan = Spy("mlp", latent_dim=8, d_steps=2)
    user_frozen = next(gan.generator.parameters())
    user_frozen.requires_grad_(False)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2)).fit(gan, image_loader(n=32, batch_size=16))
    n = len(list(gan.generator.parameters()))
    d_phase, g_phase = (True, [False] * n), (False, [False] + [True] * (n - 1))
    assert seen == [d_phase, d_phase, g_phase] * 2
    assert not user_frozen.requires_grad  # frozen before training, frozen after
    assert all(p.requires_grad for p in gan.discriminator.parameters())


def test_batches_move_tensor_by_tensor_and_other_types_take_lightnings_walk():
    gan = GAN("mlp", latent_dim=8)
    images, labels = torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    moved = gan.transfer_batch_to_device((images, labels), torch.device("cpu"), 0)
    assert type(moved) is tuple and moved[0] is images and moved[1] is labels  # .to(same device) is a no-op
    assert type(gan.transfer_batch_to_device([images], torch.device("cpu"), 0)) is list
    nested = gan.transfer_batch_to_device({"x": images, "meta": ["a"]}, torch.device("cpu"), 0)
    assert nested["x"] is images and nested["meta"] == ["a"]


def test_scalars_go_to_the_loggers_on_the_iteration_axis_and_to_callback_metrics(tmp_path):
    gan = GAN("mlp", latent_dim=8)
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = cpu_trainer(tmp_path, logger=logger, log_every_n_steps=2, max_steps=gan.optimizer_steps(5))
    trainer.fit(gan, image_loader())
    ea = read_events(logger.log_dir)
    for tag in ("d_loss", "g_loss", "p_real", "p_fake", "grad_norm_d", "grad_norm_g"):
        tag = f"train/{tag}"
        assert [e.step for e in ea.Scalars(tag)] == [2, 4], tag  # the steps sample grids and val/ metrics use
    assert ea.Scalars("train/d_loss")[-1].value == pytest.approx(trainer.callback_metrics["train/d_loss"].item())
    assert 0 < trainer.callback_metrics["train/p_real"] < 1



class CountingDataModule:
    """Builds LightningDataModules over `image_loader` whose `on_after_batch_transfer` counts its calls."""

    calls = 0

    @classmethod
    def build(cls, instance_hook: bool = False):
        import lightning.pytorch as pl

        def count(batch, dataloader_idx):
            cls.calls += 1
            return batch

        class Overriding(pl.LightningDataModule):
            def train_dataloader(self):
                return image_loader(n=32, batch_size=8)

            def on_after_batch_transfer(self, batch, dataloader_idx):
                return count(batch, dataloader_idx)

        class Plain(pl.LightningDataModule):
            def train_dataloader(self):
                return image_loader(n=32, batch_size=8)

        if not instance_hook:
            return Overriding()
        dm = Plain()
        dm.on_after_batch_transfer = count  # set on the instance, as a patch or wrapper would: Lightning honours it
        return dm


@pytest.mark.parametrize("instance_hook", [False, True], ids=["class-hook", "instance-hook"])
def test_batches_skip_lightnings_transfer_dispatch_unless_a_transfer_hook_is_overridden(
    tmp_path, monkeypatch, instance_hook
):
    from lightning.pytorch import LightningModule

    dispatched = []
    original = LightningModule._call_batch_hook

    def spy(self, hook_name, *args):
        dispatched.append(hook_name)
        return original(self, hook_name, *args)

    monkeypatch.setattr(LightningModule, "_call_batch_hook", spy)

    class Failing(Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            raise RuntimeError("stop")  # the fit ends without on_train_end

    gan = GAN("mlp", latent_dim=8)
    with pytest.raises(RuntimeError, match="stop"):
        cpu_trainer(tmp_path, callbacks=[Failing()], max_steps=gan.optimizer_steps(3)).fit(gan, image_loader())
    assert dispatched == [] and gan._direct_transfer  # the direct path, left in place by the failed fit

    CountingDataModule.calls = 0
    datamodule = CountingDataModule.build(instance_hook)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(3)).fit(gan, datamodule=datamodule)
    # the next entry point re-decides: the DataModule's hook runs on every batch, through Lightning's dispatch
    assert CountingDataModule.calls == 3 and not gan._direct_transfer
    assert dispatched.count("on_after_batch_transfer") == 3 and dispatched.count("transfer_batch_to_device") == 3


@pytest.mark.parametrize("loadable", [False, True], ids=["no-nvml", "nvml"])
def test_the_nvml_check_is_dropped_only_where_nvml_cannot_be_loaded(monkeypatch, loadable):
    import ctypes

    def cdll(name):
        if not loadable:
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setenv(strategy.NVML_CHECK, "1")  # as importing Lightning leaves it
    assert strategy.drop_unloadable_nvml_check() is (not loadable)
    assert os.environ.get(strategy.NVML_CHECK) == (None if not loadable else "1")
    monkeypatch.delenv(strategy.NVML_CHECK, raising=False)
    assert strategy.drop_unloadable_nvml_check() is False  # nothing to drop


def test_importing_the_package_dropped_the_nvml_check_on_this_machine_iff_nvml_is_missing():
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        missing = False
    except OSError:
        missing = True
    assert strategy.NVML_CHECK_DROPPED is missing
    if missing:
        assert strategy.NVML_CHECK not in os.environ
        assert torch.cuda.is_available() is False  # the same answer, from the CUDA runtime
