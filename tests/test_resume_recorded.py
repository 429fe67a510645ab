"""Resuming takes the run's recorded flags from its config.yaml; explicit flags override them; runs are named after
their preset."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import yaml

from gan_lightning.commands.train import main


def first_run(log_dir, data_dir, *extra: str) -> None:
    argv = ["--preset", "cs231n_lsgan", "--data-dir", str(data_dir), "--no-download", "--batch-size", "32",
            "--latent-dim", "16", "--accelerator", "cpu", "--seed", "0", "--log-dir", str(log_dir),
            "--max-steps", "2", "--sample-every", "1000", *extra]  # fmt: skip
    assert main(argv) == 0


def checkpoint(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def resume(*argv: str) -> list[str]:
    """Run the train command; the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(list(argv)) == 0
    return [str(w.message) for w in caught]


def test_a_run_is_named_after_its_preset(tmp_path, fake_mnist_dir):
    first_run(tmp_path / "logs", fake_mnist_dir)
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["cs231n_lsgan"]


def test_ckpt_path_last_reuses_data_dir_and_every_recorded_flag(tmp_path, fake_mnist_dir, monkeypatch):
    logs = tmp_path / "logs"
    first_run(logs, fake_mnist_dir)
    monkeypatch.chdir(tmp_path)  # the default --data-dir (./data here) holds no MNIST: only the recorded one works
    caught = resume("--log-dir", str(logs), "--preset", "cs231n_lsgan", "--ckpt-path", "last", "--max-steps", "4")
    assert not any("changed training flags" in m for m in caught), caught
    run = logs / "cs231n_lsgan" / "version_0"
    ckpt = checkpoint(run)
    assert ckpt["global_step"] == 4 * 2  # one D and one G step per iteration
    assert ckpt["hyper_parameters"]["loss"] == "lsgan"
    assert ckpt["hyper_parameters"]["latent_dim"] == 16
    assert not (run / "config_changes.yaml").exists()
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]


def test_resume_from_a_path_without_the_preset_keeps_the_runs_loss(tmp_path, fake_mnist_dir, monkeypatch):
    logs = tmp_path / "logs"
    first_run(logs, fake_mnist_dir)
    run = logs / "cs231n_lsgan" / "version_0"
    monkeypatch.chdir(tmp_path)
    # neither --preset, --data-dir, --log-dir nor --latent-dim: all come from the run's config.yaml
    caught = resume("--ckpt-path", str(run / "checkpoints" / "last.ckpt"), "--max-steps", "3")
    assert not any("changed training flags" in m for m in caught), caught
    ckpt = checkpoint(run)
    assert ckpt["global_step"] == 3 * 2
    assert ckpt["hyper_parameters"]["loss"] == "lsgan"  # not the default bce
    assert not (tmp_path / "lightning_logs").exists()  # it continued in its own run directory


def test_explicit_flags_override_the_recorded_ones(tmp_path, fake_mnist_dir):
    logs = tmp_path / "logs"
    first_run(logs, fake_mnist_dir)
    caught = resume("--log-dir", str(logs), "--name", "cs231n_lsgan", "--ckpt-path", "last", "--max-steps", "3",
                    "--lr", "0.0005")  # fmt: skip
    assert any("--lr 0.001 -> 0.0005" in m for m in caught), caught
    run = logs / "cs231n_lsgan" / "version_0"
    changes = yaml.safe_load((run / "config_changes.yaml").read_text())
    assert changes[0]["changes"] == {"lr": {"old": 0.001, "new": 0.0005}}
    assert yaml.safe_load((run / "config.yaml").read_text())["args"]["loss"] == "lsgan"


def test_a_run_named_after_its_model_is_still_found(tmp_path, fake_mnist_dir):
    logs = tmp_path / "logs"
    # where runs of a preset were written before they were named after it: the preset's model, not the default's
    first_run(logs, fake_mnist_dir, "--preset", "cs231n_dcgan", "--name", "dcgan_mnist")
    resume("--log-dir", str(logs), "--preset", "cs231n_dcgan", "--ckpt-path", "last", "--max-steps", "3")
    assert checkpoint(logs / "dcgan_mnist" / "version_0")["global_step"] == 3 * 2
    assert not (logs / "cs231n_dcgan").exists()


def test_another_recipes_run_is_never_taken_for_this_one(tmp_path, fake_mnist_dir):
    logs = tmp_path / "logs"
    first_run(logs, fake_mnist_dir, "--name", "mlp")  # cs231n_lsgan's run, under the model's name
    # another preset of the same model: `auto` starts its own run, `last` finds none of its own
    first_run(logs, fake_mnist_dir, "--preset", "cs231n_gan", "--ckpt-path", "auto")
    assert (logs / "cs231n_gan" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert checkpoint(logs / "mlp" / "version_0")["global_step"] == 2 * 2  # untouched
    assert yaml.safe_load((logs / "cs231n_gan" / "version_0" / "config.yaml").read_text())["args"]["loss"] == "bce"
    assert main(["--log-dir", str(logs), "--preset", "cs231n_lsgan", "--ckpt-path", "last", "--max-steps", "3"]) == 0
    assert checkpoint(logs / "mlp" / "version_0")["global_step"] == 3 * 2  # its own preset's old-style run


def test_a_run_started_with_relative_paths_resumes_from_anywhere(tmp_path, fake_mnist_dir, monkeypatch):
    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    started.mkdir(), elsewhere.mkdir()
    (started / "data").symlink_to(fake_mnist_dir)
    monkeypatch.chdir(started)  # relative --data-dir and the default, relative, --log-dir
    argv = ["--preset", "cs231n_lsgan", "--data-dir", "data", "--no-download", "--batch-size", "32", "--latent-dim",
            "16", "--accelerator", "cpu", "--max-steps", "2", "--sample-every", "1000"]  # fmt: skip
    assert main(argv) == 0
    run = started / "lightning_logs" / "cs231n_lsgan" / "version_0"
    monkeypatch.chdir(elsewhere)
    resume("--ckpt-path", str(run / "checkpoints" / "last.ckpt"), "--max-steps", "3")
    assert checkpoint(run)["global_step"] == 3 * 2 and not list(elsewhere.iterdir())


def test_a_damaged_recorded_config_is_one_line(tmp_path, fake_mnist_dir, capsys):
    logs = tmp_path / "logs"
    first_run(logs, fake_mnist_dir)
    run = logs / "cs231n_lsgan" / "version_0"
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text[: len(text) // 2] + "\n  : [")
    before = sorted(p.relative_to(logs) for p in logs.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--log-dir", str(logs), "--preset", "cs231n_lsgan", "--ckpt-path", "last", "--max-steps", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.yaml is not readable YAML" in err and "--ckpt-path" in err, err
    assert sorted(p.relative_to(logs) for p in logs.rglob("*")) == before


def test_recorded_switches_and_values_are_switched_off_explicitly(tmp_path, fake_mnist_dir):
    logs = tmp_path / "logs"
    first_run(logs, fake_mnist_dir, "--mirror", "--ema-decay", "0.9")
    caught = resume("--log-dir", str(logs), "--preset", "cs231n_lsgan", "--ckpt-path", "last", "--max-steps", "3",
                    "--no-mirror", "--ema-decay", "none")  # fmt: skip
    [changed] = [m for m in caught if "changed training flags" in m]
    assert "--mirror True -> False" in changed and "--ema-decay 0.9 -> None" in changed
    args = yaml.safe_load((logs / "cs231n_lsgan" / "version_0" / "config.yaml").read_text())["args"]
    assert args["mirror"] is False and args.get("ema_decay") is None and args["loss"] == "lsgan"
    assert any("this run has no EMA" in m for m in caught), caught
    assert not any(k.startswith("ema.") for k in checkpoint(logs / "cs231n_lsgan" / "version_0")["state_dict"])


def test_none_resets_an_option_a_preset_sets(tmp_path, fake_mnist_dir):
    logs = tmp_path / "logs"
    argv = ["--preset", "modern_mnist", "--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size", "32",
            "--accelerator", "cpu", "--log-dir", str(logs), "--max-steps", "1", "--ema-decay", "none"]  # fmt: skip
    assert main(argv) == 0
    args = yaml.safe_load((logs / "modern_mnist" / "version_0" / "config.yaml").read_text())["args"]
    assert args.get("ema_decay") is None and args["loss"] == "rpgan"  # the rest of the preset still applies
    assert not any(k.startswith("ema.") for k in checkpoint(logs / "modern_mnist" / "version_0")["state_dict"])


def test_an_ema_switched_on_at_a_resume_starts_from_the_checkpoints_generator(tmp_path, fake_mnist_dir):
    logs = tmp_path / "logs"
    first_run(logs, fake_mnist_dir)
    run = logs / "cs231n_lsgan" / "version_0"
    before = checkpoint(run)["state_dict"]
    caught = resume("--log-dir", str(logs), "--preset", "cs231n_lsgan", "--ckpt-path", "last", "--max-steps", "3",
                    "--ema-decay", "0.9", "--ema-rampup", "0")  # fmt: skip
    assert any("this run's EMA starts from its generator's weights" in m for m in caught), caught
    after = checkpoint(run)["state_dict"]
    for key in (k for k in before if k.startswith("generator.")):
        # one update after one more G step: 0.9 x the checkpoint's G + 0.1 x the new G
        expected = 0.9 * before[key] + 0.1 * after[key]
        torch.testing.assert_close(after["ema.module." + key[len("generator.") :]], expected)


def test_ckpt_path_auto_starts_then_resumes_the_same_run_exactly(tmp_path, fake_mnist_dir):
    def job(logs, max_steps: int) -> None:  # what a requeued job runs, unchanged, every time
        first_run(logs, fake_mnist_dir, "--ckpt-path", "auto", "--max-steps", str(max_steps), "--d-steps", "2")

    logs = tmp_path / "logs"
    job(logs, 2)  # the first start: nothing to resume
    run = logs / "cs231n_lsgan" / "version_0"
    assert "resumes" not in yaml.safe_load((run / "config.yaml").read_text())
    job(logs, 4)
    job(logs, 6)
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # one run directory across restarts
    resumes = yaml.safe_load((run / "config.yaml").read_text())["resumes"]
    assert [r["iteration"] for r in resumes] == [2, 4]
    assert all(r["checkpoint"] == str((run / "checkpoints" / "last.ckpt").resolve()) for r in resumes)
    first_run(tmp_path / "straight", fake_mnist_dir, "--max-steps", "6", "--d-steps", "2")
    restarted = checkpoint(run)["state_dict"]
    straight = checkpoint(tmp_path / "straight" / "cs231n_lsgan" / "version_0")["state_dict"]
    assert restarted.keys() == straight.keys() and all(torch.equal(restarted[k], straight[k]) for k in straight)


def test_auto_inside_a_slurm_job_resumes_only_that_jobs_run(tmp_path, fake_mnist_dir, monkeypatch):
    # Jobs under one --name (array tasks, or two submissions): a requeued job continues its own run, and a job's
    # first start never takes over another job's (possibly live) run directory
    logs = tmp_path / "logs"
    run = logs / "cs231n_lsgan"
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)

    def job(job_id: str | None, max_steps: int, restart: int = 0) -> list[str]:
        for key, value in (("SLURM_JOB_ID", job_id), ("SLURM_RESTART_COUNT", str(restart) if job_id else None)):
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        return resume("--preset", "cs231n_lsgan", "--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size",
                      "32", "--latent-dim", "16", "--accelerator", "cpu", "--log-dir", str(logs), "--max-steps",
                      str(max_steps), "--sample-every", "1000", "--ckpt-path", "auto")  # fmt: skip

    def recorded(version: int) -> dict:
        return yaml.safe_load((run / f"version_{version}" / "config.yaml").read_text())

    def iterations(version: int) -> int:
        return checkpoint(run / f"version_{version}")["global_step"] // 2

    job(None, 2)  # a run started outside Slurm: version_0, no job recorded
    assert "slurm_job" not in recorded(0)
    notices = job("111", 2)  # a job's first start: a run of its own, never the one without a job
    assert recorded(1)["slurm_job"] == "111" and "resumed_from" not in recorded(1)
    assert any("version_0 there is a run started outside Slurm" in n for n in notices)
    notices = job("222", 2)  # another job's first start: its own run too, and a notice naming the other one
    assert recorded(2)["slurm_job"] == "222" and "resumed_from" not in recorded(2)
    assert any("version_1 there is job 111's" in n and "version_1/checkpoints/last.ckpt" in n for n in notices)
    job("111", 3, restart=1)  # job 111 requeued: its own run, not the newer version_2
    assert (iterations(0), iterations(1), iterations(2)) == (2, 3, 2) and recorded(1)["resumed_from"]
    job("333", 3, restart=1)  # a restart with no run of its own starts one: never the run that records no job
    assert (iterations(0), iterations(3), recorded(3)["slurm_job"]) == (2, 3, "333") and "slurm_job" not in recorded(0)
    job(None, 4)  # outside Slurm: the newest run of --name, as ever, and it stays job 333's
    assert (iterations(3), recorded(3)["slurm_job"]) == (4, "333")
    assert sorted(p.name for p in run.iterdir()) == ["version_0", "version_1", "version_2", "version_3"]


def test_a_resume_with_an_upgraded_plugin_says_so_and_records_each_resumes_plugins(tmp_path, capsys):
    from gan_lightning.commands.train.resume import Resume
    from gan_lightning.commands.train.runner import record_config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record_config(str(run_dir), {"seed": 0}, Resume(), 2, {"myplug": "0.3.0"})
    resume = Resume(checkpoint=str(tmp_path / "last.ckpt"), global_step=8)
    record_config(str(run_dir), {"seed": 0}, resume, 2, {"myplug": "0.3.1"})
    assert "note: the plugin myplug is 0.3.1 now; this run was last written with 0.3.0" in capsys.readouterr().err
    doc = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert doc["plugins"] == {"myplug": "0.3.1"} and doc["resumes"][-1]["plugins"] == {"myplug": "0.3.1"}
    assert doc["resumes"][-1]["iteration"] == 4
