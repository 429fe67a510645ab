"""Damaged files that evaluation reads, through the real commands: a cached reference-statistics file and a cached
classifier are computed again after one notice line; a damaged --classifier is refused in one line, exit 2, with
nothing written."""

from __future__ import annotations

import json

import pytest
import torch

from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.commands.train import main as train_main


@pytest.fixture(scope="module")
def tiny_run(fake_mnist_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    argv = ["--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size", "32", "--latent-dim", "8",
            "--accelerator", "cpu", "--log-dir", str(logs), "--name", "run", "--max-steps", "2",
            "--sample-every", "1000"]  # fmt: skip
    assert train_main(argv) == 0
    return logs / "run" / "version_0" / "checkpoints" / "last.ckpt"


def cut_short(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path):
    path.write_bytes(b"\x00not a torch file\xff" * 50)


def emptied(path):
    torch.save({}, path)


def reshaped(path):  # a readable file whose statistics no longer fit together
    state = torch.load(path, weights_only=True)
    torch.save({k: v[..., :-1] if k == "fid_sum" else v for k, v in state.items()}, path)


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def evaluate(capsys, *argv: str) -> tuple[int, dict | None, list[str]]:
    """Exit status, the printed scores and the stderr lines of `evaluate.py`."""
    capsys.readouterr()
    code = evaluate_main(list(argv))
    out, err = capsys.readouterr()
    scores = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return code, (scores[0] if scores else None), [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("damage", [cut_short, garbage, emptied, reshaped])
def test_damaged_reference_statistics_are_computed_again(tmp_path, monkeypatch, capsys, tiny_run, fake_mnist_dir,
                                                         fake_classifier, damage):  # fmt: skip
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["--ckpt", str(tiny_run), "--classifier", str(fake_classifier["path"]), "--data-dir",
            str(fake_mnist_dir), "-n", "40", "--seed", "0"]  # fmt: skip
    code, first, _ = evaluate(capsys, *argv)
    [cache] = (tmp_path / "cache").glob("reference-*.pt")
    good = torch.load(cache, weights_only=True)
    damage(cache)
    code, again, err = evaluate(capsys, *argv)
    assert code == 0 and again is not None
    assert len(err) == 1 and f"the cached reference statistics {cache} are damaged" in err[0], err
    assert err[0].endswith("computing them again")
    assert {k: v for k, v in again.items() if k != "protocol"} == {k: v for k, v in first.items() if k != "protocol"}
    healed = torch.load(cache, weights_only=True)  # replaced by the recomputed statistics
    assert healed.keys() == good.keys() and all(torch.equal(healed[k], good[k]) for k in good)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.name]  # nothing partial beside it


@pytest.mark.parametrize("damage", [cut_short, garbage, emptied])
def test_a_damaged_classifier_is_refused_in_one_line(tmp_path, capsys, tiny_run, fake_mnist_dir, fake_classifier,
                                                     damage):  # fmt: skip
    classifier = tmp_path / "classifier.pt"
    classifier.write_bytes(fake_classifier["path"].read_bytes())
    damage(classifier)
    before = tree(tmp_path), tree(tiny_run.parents[1])
    code, scores, err = evaluate(capsys, "--ckpt", str(tiny_run), "--classifier", str(classifier), "--data-dir",
                                 str(fake_mnist_dir), "-n", "40")  # fmt: skip
    assert code == 2 and scores is None
    assert len(err) == 1 and str(classifier) in err[0] and "Traceback" not in err[0], err
    assert "train_classifier.py" in err[0]  # says how to get a good one
    assert (tree(tmp_path), tree(tiny_run.parents[1])) == before


def test_a_damaged_cached_classifier_is_trained_again(tmp_path, monkeypatch, capsys, tiny_run, fake_mnist_dir):
    from gan_lightning.metrics.classifier import cached_classifier

    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    path = cached_classifier(fake_mnist_dir, epochs=1, progress=False)
    cut_short(path)
    code, scores, err = evaluate(capsys, "--ckpt", str(tiny_run), "--data-dir", str(fake_mnist_dir), "-n", "40")
    assert code == 0 and scores is not None and "fid" in scores
    [notice] = [line for line in err if "damaged" in line]
    assert notice.startswith(f"the cached MNIST classifier {path} is damaged") and notice.endswith("training it again")
    assert not any("Traceback" in line for line in err)
    assert torch.load(path, weights_only=True)["meta"]["num_classes"] == 10  # a whole classifier again


def test_a_reference_of_image_files_is_keyed_by_what_it_decodes_from(tmp_path):
    # finding a cached reference must not decode the split again (162k CelebA images per evaluation): the key is the
    # files' paths, sizes and modification times and the decoding, and it changes when any of them does
    import os

    from test_data_images import write_image
    from weights_files import torchscript_file

    from gan_lightning.data import ImageFileDataset
    from gan_lightning.metrics.evaluator import reference_cache
    from gan_lightning.metrics.extractors import load_extractor

    def refuse(path, mode):
        raise AssertionError(f"decoded {path}")

    files = [write_image(tmp_path / "photos" / f"{i}.png", (12, 10), seed=i) for i in range(4)]
    torchscript_file(tmp_path / "net.pt")
    extractor = load_extractor("torchscript", tmp_path / "net.pt")

    def key(dataset, limit=4):
        return reference_cache(extractor, dataset, limit, "folder/val", tmp_path / "cache")

    first = key(ImageFileDataset(files, image_size=8, decode=refuse))
    assert key(ImageFileDataset(files, image_size=8, decode=refuse)) == first
    assert key(ImageFileDataset(files, image_size=8, decode=refuse), limit=3) != first
    assert key(ImageFileDataset(files, image_size=16, decode=refuse)) != first
    assert key(ImageFileDataset(files, image_size=8)) != first  # another decoder
    stat = os.stat(files[2])
    os.utime(files[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the file was rewritten
    assert key(ImageFileDataset(files, image_size=8, decode=refuse)) != first
