"""The `gan-prepare` / `scripts/prepare_data.py` command: decode, crop and pack an image folder or CelebA once, so
training reads it with `--prepared DIR` instead of decoding every image every epoch (see `data/prepared.py`).

    gan-prepare --dataset celeba --data-dir DIR [--image-size 64] [--out OUT]
    gan-train --preset dcgan_celeba --data-dir DIR --prepared OUT

Rerunning it is always safe: an up-to-date dataset is left alone, an interrupted one is continued, one whose source
folder changed since (files added, removed or modified) or that was damaged is rebuilt, each said in one line. A run
that is refused (a bad image or option, an --out it cannot write or that holds files it did not write, another run
writing the same --out: exit 2) or whose disk fills up (exit 4) leaves no file of its own behind and a finished
dataset already there intact.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gan_lightning.commands.base import Parser, run_command
from gan_lightning.core import notes
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.files import check_writable_dir
from gan_lightning.data import DATASETS
from gan_lightning.data.images import default_num_workers
from gan_lightning.data.prepared import default_prepared_dir, prepare_images
from gan_lightning.data.prepared_files import check_rebuildable

# The train command's own declarations of these options: the same flags, help and checks here.
SHARED_OPTIONS = ("dataset", "data_dir", "image_size", "channels", "conditional", "skip_bad_images", "num_workers")


def preparable() -> list[str]:
    """The datasets that can be prepared: those whose DataModule reads a prepared directory."""
    return [name for name in DATASETS.names() if DATASETS.get(name).accepts("prepared")]


def build_parser() -> Parser:
    """The prepare command's argument parser."""
    from gan_lightning.commands.train import train_options

    p = Parser(prog="prepare_data.py", description="Decode, crop and resize an image folder or CelebA once into a "
               "packed uint8 dataset that training reads with --prepared DIR (no per-image decoding).")  # fmt: skip
    options = train_options()
    for name in SHARED_OPTIONS:
        option = options[name]
        if name == "image_size":  # there is no model here to pick a size it builds
            option = dataclasses.replace(option, default_text="the dataset's native size (64 for folders)")
        if name == "dataset":  # training's default, mnist, is in memory already: nothing to prepare
            option = dataclasses.replace(option, default_text=f"none; {' or '.join(preparable())} can be prepared")
        option.add_to(p)
    p.add_argument("--out", default=None, metavar="DIR", help="where to write it (default: beside the image folder, "
                   "IMAGE_DIR.prepared-<size>px-<channels>ch)")  # fmt: skip
    return p


def run(cfg: argparse.Namespace) -> None:
    """Prepare the dataset as configured, showing progress; print the flag training needs."""
    from gan_lightning.commands.train import train_options

    if cfg.dataset is None:  # the train command's default, mnist, is not an image-file dataset
        raise ConfigError(f"give --dataset {' or '.join(preparable())}: only image-file datasets are prepared "
                          "(MNIST, the train command's default, is read into memory already)")  # fmt: skip
    if cfg.dataset not in preparable():
        raise ConfigError(f"--dataset {cfg.dataset}: give --dataset {' or '.join(preparable())}; only "
                          "image-file datasets are prepared (MNIST is read into memory already)")  # fmt: skip
    options = train_options()
    for name in SHARED_OPTIONS:  # every given value, before its default is filled in or anything is read or written
        options[name].validate(getattr(cfg, name))
    spec = DATASETS.get(cfg.dataset)
    image_size = cfg.image_size if cfg.image_size is not None else spec.native_size or 64
    channels = spec.channels_for(cfg.data_dir, cfg.channels, "preparing")
    options["channels"].validate(channels)
    if cfg.conditional and not spec.accepts("conditional"):
        raise ConfigError(f"--conditional does not apply to --dataset {cfg.dataset}; drop it")
    dm = spec(cfg.data_dir, image_size=image_size, channels=channels, conditional=cfg.conditional,
              skip_bad_images=cfg.skip_bad_images, num_workers=0)  # fmt: skip
    dm.prepare_data()  # the dataset's own one line when its folder is missing
    out = Path(cfg.out) if cfg.out else default_prepared_dir(dm.image_dir, image_size, channels)
    check_writable_dir(out, "--out")  # before listing 200k files, and long before decoding them
    check_rebuildable(out)
    files = dm.source_files()
    labels = dm.file_labels(files)
    workers = default_num_workers() if cfg.num_workers is None else cfg.num_workers
    began = time.monotonic()
    tty = sys.stderr.isatty()
    start = "\r" if tty else ""  # a terminal shows one line that updates, a log one line per chunk

    def show(done: int, total: int) -> None:
        notes.release()  # the first chunk is on disk: the input was good enough to start
        rate = done / max(time.monotonic() - began, 1e-9)
        print(
            f"{start}prepare: {done}/{total} images ({done / total:.0%}), {rate:.0f}/s",
            end="" if tty and done < total else "\n",
            file=sys.stderr,
            flush=True,
        )

    how = prepare_images(dm.image_dir, files, out, image_size=image_size, channels=channels, labels=labels,
                         classes=dm.class_names, skip_bad_images=bool(cfg.skip_bad_images), num_workers=workers,
                         on_chunk=show)  # fmt: skip
    # every flag the prepared array was made for, so the printed command runs as printed
    flags = f"--dataset {cfg.dataset} --data-dir {cfg.data_dir or dm.data_dir} --prepared {out} --image-size "
    flags += f"{image_size} --channels {channels}" + (" --conditional" if cfg.conditional else "")
    print(f"{out}: {how}, {len(files)} images at {image_size}px, {channels} channel(s); train with {flags}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/prepare_data.py` and `gan-prepare`."""
    return run_command(build_parser, run, argv)
