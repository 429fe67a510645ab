"""One scoring path: training-time metrics (`SampleQuality`) and `evaluate.py` (`Evaluator`) give the same numbers
for the same generator, seed and sample count."""

from __future__ import annotations

import pytest
import torch

from gan_lightning import GAN
from gan_lightning.data import MNISTDataModule
from gan_lightning.metrics import SampleQuality, load_extractor
from gan_lightning.metrics.evaluator import Evaluator

from conftest import cpu_trainer


@pytest.mark.filterwarnings("ignore:The number of training batches")
def test_training_metrics_and_evaluate_agree_exactly(tmp_path, fake_mnist_dir, fake_classifier):
    torch.manual_seed(0)
    gan = GAN("mlp", latent_dim=8)
    dm = MNISTDataModule(str(fake_mnist_dir), batch_size=32, download=False)
    quality = SampleQuality(load_extractor("mnist_classifier", fake_classifier["path"]), every_n_steps=2,
                            num_samples=120, seed=5)  # fmt: skip
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2), callbacks=[quality]).fit(gan, dm)
    assert quality.last  # it scored at iteration 2, the weights the evaluator now sees
    offline = Evaluator(fake_classifier["path"], "mnist", str(fake_mnist_dir), 28)(gan, num_samples=120, seed=5)
    assert {k: offline[k] for k in quality.last} == quality.last
    different = Evaluator(fake_classifier["path"], "mnist", str(fake_mnist_dir), 28)(gan, num_samples=120, seed=6)
    assert different["fid"] != quality.last["fid"]  # the seed matters, so the agreement above is no accident
