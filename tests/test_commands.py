"""One convention for every command: a thin script calling `main(argv)`, and bad input is one line on stderr."""

from __future__ import annotations

import ast

import pytest

from gan_lightning.bench import data as data_benchmark
from gan_lightning.bench import fid as fid_benchmark
from gan_lightning.bench import trainer as benchmark
from gan_lightning.commands import evaluate as evaluation
from gan_lightning.commands import export_mnist as export
from gan_lightning.commands import prepare
from gan_lightning.commands import sample as sampling
from gan_lightning.commands import train as cli
from gan_lightning.commands import train_classifier as classifier
from gan_lightning.commands.base import Parser

from conftest import REPO

SCRIPTS = sorted((REPO / "scripts").glob("*.py"))
COMMANDS = {"train": cli, "sample": sampling, "evaluate": evaluation, "train_classifier": classifier,
            "benchmark": benchmark, "export_mnist": export, "prepare_data": prepare,
            "benchmark_data": data_benchmark, "benchmark_fid": fid_benchmark}  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_only_calls_main(script):
    source = script.read_text()
    tree = ast.parse(source)
    assert ast.get_docstring(tree)
    assert len([line for line in source.splitlines() if line.strip()]) <= 8
    doc, imp, guard = tree.body  # the docstring, `from gan_lightning.<module> import main`, the __main__ guard
    assert isinstance(imp, ast.ImportFrom) and imp.module.startswith("gan_lightning.")
    assert [alias.name for alias in imp.names] == ["main"]
    assert ast.unparse(guard) == "if __name__ == '__main__':\n    raise SystemExit(main())"


def test_every_command_has_a_script_and_the_same_shape():
    assert {p.stem for p in SCRIPTS} >= set(COMMANDS)
    for module in COMMANDS.values():
        assert isinstance(module.build_parser(), Parser)
        assert callable(module.run) and callable(module.main)


def _bad_input(name, tmp):
    missing = str(tmp / "none.ckpt")
    return {
        "train": (["--batch-size", "0", "--log-dir", str(tmp / "logs")], "--batch-size must be positive"),
        "sample": (["--ckpt", missing, "--out", str(tmp / "grid.png")], f"no checkpoint at {missing}"),
        "evaluate": (["--ckpt", missing, "--classifier", str(tmp / "clf.pt"), "--data-dir", str(tmp)],
                     f"no checkpoint at {missing}"),
        "train_classifier": (["--data-dir", str(tmp), "--out", str(tmp / "clf.pt")], str(tmp / "MNIST" / "raw")),
        "benchmark": (["--iters", "0"], "--iters must be positive"),
        "export_mnist": (["--out", str(tmp / "png"), "--num", "0"], "--num must be positive"),
        "prepare_data": (["--dataset", "mnist", "--data-dir", str(tmp)], "give --dataset celeba or folder"),
        "benchmark_data": (["--data-dir", str(tmp), "--num-images", "0"], "--num-images must be positive"),
        "benchmark_fid": (["--fid-weights", missing], f"no FID Inception weights at {missing}"),
    }[name]  # fmt: skip


@pytest.mark.parametrize("name", COMMANDS)
def test_bad_input_is_status_2_and_one_stderr_line(tmp_path, capsys, name):
    argv, message = _bad_input(name, tmp_path)
    assert COMMANDS[name].main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert err.startswith(f"{name}.py: error: ")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("name", COMMANDS)
def test_usage_errors_are_one_line_too(capsys, name):
    with pytest.raises(SystemExit) as exit_:
        COMMANDS[name].main(["--no-such-flag"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{name}.py: error: ") and err.endswith("(see --help)\n")


@pytest.mark.parametrize("name", COMMANDS)
def test_help_speaks_of_a_model_only_where_there_is_one(name):
    # options shared with the train command must not describe defaults in terms of a --model this command lacks
    text = " ".join(COMMANDS[name].build_parser().format_help().split())
    if "--model" not in text:
        assert "the model" not in text and "model builds" not in text


@pytest.mark.parametrize("name", ["train_classifier", "export_mnist"])
def test_an_out_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys, name):
    # a path under a regular file: refused up front, not after minutes of training or a partial export
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["--data-dir", str(tmp_path), "--out", str(blocker / ("c.pt" if name == "train_classifier" else "png"))]
    assert COMMANDS[name].main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {blocker}" in err and "is a file" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_prepare_help_gives_no_default_it_refuses():
    # the train command's --dataset defaults to mnist, which prepare_data.py refuses: its help must not claim it
    text = " ".join(prepare.build_parser().format_help().split())
    assert "(default mnist)" not in text and "celeba or folder can be prepared" in text


@pytest.mark.parametrize("name", COMMANDS)
def test_every_seed_flag_takes_only_seeds_torch_and_numpy_accept(capsys, name):
    if "--seed" not in COMMANDS[name].build_parser().format_help():
        pytest.skip(f"{name} has no --seed")
    for bad, words in [
        ("-1", "-1 is out of range: seeds go from 0 to 4294967295"),
        (str(2**32), f"{2**32} is out of range: seeds go from 0 to 4294967295"),
        ("1.5", "'1.5'"),
    ]:  # "1.5": argparse's int or our seed type, each names the value
        try:
            status = COMMANDS[name].main(["--seed", bad])
        except SystemExit as exit_:  # argparse's own refusal
            status = exit_.code
        assert status == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
