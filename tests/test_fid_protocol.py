"""evaluate.py on RGB data with the FID Inception: the protocol beside every score (stdout, evaluation.csv/json),
the reference statistics cache (reused; invalidated by other data or weights), and a wrong weights file."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image
from test_fid_parity import random_fid_weights
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.metrics import FIDInceptionFeatures, file_sha256
from gan_lightning.metrics.evaluator import Evaluator

from conftest import cpu_trainer

pytest.importorskip("torch_fidelity")
SIZE = 16
N_TRAIN = 7  # of the folder's 8 images; its default val_fraction (0.05) holds one out


def write_folder(root, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(torch.randint(0, 256, (n, SIZE, SIZE, 3), generator=g, dtype=torch.uint8)):
        Image.fromarray(image.numpy()).save(root / f"{i:03d}.png")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("rgb")
    weights, other_weights = base / "w.pth", base / "w2.pth"
    random_fid_weights(weights, seed=0)
    random_fid_weights(other_weights, seed=1)
    data = base / "images"
    write_folder(data, 8, seed=0)
    run = base / "run"
    gan = GAN("mlp", latent_dim=8, channels=3, image_size=SIZE)
    images = torch.rand(32, 3, SIZE, SIZE) * 2 - 1
    trainer = cpu_trainer(run, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, DataLoader(TensorDataset(images, torch.zeros(32, dtype=torch.long)), batch_size=16))
    (run / "checkpoints").mkdir(parents=True)
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    return {"weights": weights, "other_weights": other_weights, "data": data, "run": run, "gan": gan}


def test_evaluate_writes_the_protocol_beside_every_score(setup, capsys):
    run, weights = setup["run"], setup["weights"]
    flags = ["--dataset", "folder", "--data-dir", str(setup["data"]), "--fid-weights", str(weights),
             "--fid-weights-unchecked", "-n", "10", "--reference", "train", "--seed", "3"]  # fmt: skip
    assert evaluate_main([str(run), *flags]) == 0
    expected = {
        "num_generated": 10, "reference": "folder/train", "num_reference": N_TRAIN, "extractor": "inception_fid",
        "extractor_sha256": file_sha256(weights), "resize": FIDInceptionFeatures.resize, "seed": 3,
        "truncation": None, "truncation_threshold": None, "kid_prdc_reference": N_TRAIN, "kid_prdc_generated": 10,
        "kid_subsets": 50,
        "kid_subset_size": N_TRAIN,
    }  # fmt: skip
    [row] = json.loads((run / "evaluation.json").read_text())
    assert row["protocol"] == expected
    assert {"fid", "kid", "inception_score", "inception_score_std"} <= set(row)
    [line] = csv.DictReader(open(run / "evaluation.csv"))
    assert {k[len("protocol."):]: v for k, v in line.items() if k.startswith("protocol.")} == {
        k: "" if v is None else str(v) for k, v in expected.items()}  # fmt: skip
    capsys.readouterr()
    assert evaluate_main(["--ckpt", str(run / "checkpoints" / "last.ckpt"), *flags]) == 0
    [printed] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert printed["protocol"] == expected and printed["fid"] == round(row["fid"], 4)


def test_reference_statistics_are_cached_and_invalidated(setup, tmp_path):
    gan, data = setup["gan"], setup["data"]

    def evaluator(weights, root=data) -> Evaluator:
        return Evaluator(None, "folder", str(root), SIZE, fid_weights=weights, fid_weights_unchecked=True,
                         split="train", cache_dir=tmp_path)  # fmt: skip

    first = evaluator(setup["weights"])
    assert not first.cached and first.cache.is_file()
    again = evaluator(setup["weights"])
    assert again.cached and again.cache == first.cache  # reused: no feature extraction
    assert again(gan, 4, seed=0) == first(gan, 4, seed=0)  # and the scores are the same, exactly
    assert not evaluator(setup["other_weights"]).cached  # other weights: other statistics
    changed = tmp_path / "changed"
    write_folder(changed, 8, seed=0)
    Image.new("RGB", (SIZE, SIZE), (255, 0, 0)).save(changed / "000.png")  # one image differs
    other = evaluator(setup["weights"], changed)
    assert not other.cached and other.cache != first.cache
    assert len(list(tmp_path.glob("reference-*.pt"))) == 3


def test_a_wrong_weights_file_exits_2_in_one_line(setup, tmp_path, capsys):
    wrong = tmp_path / "not-inception.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, wrong)
    flags = ["--ckpt", str(setup["run"] / "checkpoints" / "last.ckpt"), "--dataset", "folder", "--data-dir",
             str(setup["data"]), "-n", "10"]  # fmt: skip
    capsys.readouterr()
    code = evaluate_main([*flags, "--fid-weights", str(wrong)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert ("holds unknown weights (1 entries), not Inception weights; expected the FID Inception, SHA-256 "
            "6726825d") in err  # fmt: skip
    # the random FID-layout file without --fid-weights-unchecked: right layout, not the published hash
    code = evaluate_main([*flags, "--fid-weights", str(setup["weights"])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--fid-weights-unchecked" in err
    code = evaluate_main(flags)
    assert code == 2 and "else --fid-weights PATH" in capsys.readouterr().err
