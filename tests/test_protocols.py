"""Named evaluation protocols: each expands as documented, is printed and recorded with every score, a plugin adds
its own, and an explicit flag that contradicts one is refused in one line before anything is computed."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest
from test_fid_protocol import setup  # noqa: F401  (the RGB folder, random Inception weights and a checkpoint)

from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.metrics import EXTRACTORS
from gan_lightning.metrics.evaluator import REFERENCE_SPLITS
from gan_lightning.metrics.extractors.resizers import RESIZES
from gan_lightning.metrics.protocols import PROTOCOLS

from conftest import REPO

DOCUMENTED = {  # docs/evaluation.md's table
    "fid50k_full": {"num": 50_000, "split": "train", "extractor": "inception_fid", "num_reference": None,
                    "max_features": 10_000, "kid_subsets": 50, "kid_subset_size": 1000, "resize": "tf_bilinear"},
    "fid10k_test": {"num": 10_000, "split": "val", "num_reference": None, "extractor": "inception_fid",
                    "max_features": 10_000, "kid_subsets": 50, "kid_subset_size": 1000, "resize": "tf_bilinear"},
    "kid50k_full": {"num": 50_000, "split": "train", "num_reference": None, "extractor": "inception_fid",
                    "max_features": 50_000, "kid_subsets": 100, "kid_subset_size": 1000, "resize": "tf_bilinear"},
    "pr50k3_full": {"num": 50_000, "split": "train", "num_reference": 200_000, "extractor": "vgg16",
                    "max_features": 200_000, "kid_subsets": 50, "kid_subset_size": 1000, "resize": None},
    "fd_dinov2_50k": {"num": 50_000, "split": "train", "num_reference": None, "extractor": "dinov2",
                      "max_features": 10_000, "kid_subsets": 50, "kid_subset_size": 1000, "resize": "pil_bicubic"},
}  # fmt: skip


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_every_protocol_is_well_formed(name):
    protocol = PROTOCOLS.get(name)
    assert protocol.name == name and protocol.description.strip()
    assert protocol.num >= 10 and protocol.split in REFERENCE_SPLITS and protocol.extractor in EXTRACTORS
    assert protocol.kid_subset_size <= protocol.max_features and protocol.kid_subsets >= 1
    assert protocol.num_reference is None or protocol.num_reference >= 2
    assert protocol.resize is None or protocol.resize in RESIZES
    if protocol.resize is not None:  # only an extractor that takes a resize can be given one
        assert "resize" in inspect.signature(EXTRACTORS.get(protocol.extractor)).parameters


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_the_papers_protocols_expand_as_documented(name):
    fields = PROTOCOLS.get(name).fields()
    assert fields.pop("protocol_name") == name and fields.pop("description")
    assert fields == DOCUMENTED[name]


@pytest.mark.parametrize("flags, message", [
    (["-n", "10"], "--protocol fid50k_full scores with -n 50000, not 10: drop -n"),
    (["--reference", "val"], "--protocol fid50k_full scores with --reference train, not val: drop --reference"),
    (["--num-reference", "100"], "--protocol fid50k_full scores with --num-reference all, not 100"),
    (["--extractor", "mnist_classifier"], "scores in inception_fid's features, not mnist_classifier's"),
    ([], "--protocol fid50k_full scores with the FID Inception: pass --fid-weights PATH"),
])  # fmt: skip
def test_a_contradicting_flag_is_one_line(flags, message, tmp_path, capsys):
    ckpt = tmp_path / "none.ckpt"  # never read: the protocol is checked first
    assert evaluate_main(["--ckpt", str(ckpt), "--protocol", "fid50k_full", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_plugins_protocol_is_printed_and_recorded_with_every_score(setup):  # noqa: F811
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests" / "plugin")}
    run, weights = setup["run"], setup["weights"]
    argv = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--plugins", "gan_plugin_example", str(run),
            "--protocol", "fid10_train_example", "--dataset", "folder", "--data-dir", str(setup["data"]),
            "--fid-weights", str(weights), "--fid-weights-unchecked"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("protocol fid10_train_example: FID of 10 generated images against the training "
                                  "split, FID Inception; num 10, split train, extractor inception_fid, "
                                  "num_reference None, max_features 10000, kid_subsets 5, "
                                  "kid_subset_size 1000, resize None\n")  # fmt: skip
    [row] = json.loads((run / "evaluation.json").read_text())
    protocol = row["protocol"]
    assert protocol["protocol_name"] == "fid10_train_example"
    assert protocol["num_generated"] == 10 and protocol["reference"] == "folder/train"
    assert protocol["extractor"] == "inception_fid" and protocol["kid_subsets"] == 5
