"""A DataLoader that Lightning can checkpoint mid-epoch, and the rank-aware sampler behind it.

Lightning restores a training loader's position only when the loader itself implements
`state_dict`/`load_state_dict`; a plain DataLoader restarts its epoch from the first batch on resume, which
replays data and breaks bit-exact resumption. `ResumableDataLoader` records which epoch it is in and how
many batches it has handed out, and on restore skips exactly those batches of the same permutation.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gan_lightning.core.errors import DataError


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float images in [-1, 1], the range of the generator's Tanh."""
    return images.to(torch.float32, copy=True).div_(127.5).sub_(1.0)


def move_tensors(batch: Any, device: torch.device) -> Any | None:
    """A tuple or list of tensors moved tensor by tensor (None for any other batch)."""
    if type(batch) in (tuple, list) and all(isinstance(t, torch.Tensor) for t in batch):
        # Lightning's generic walk costs more Python per batch than this; as Lightning, no non-blocking copies to
        # the CPU or MPS
        non_blocking = device.type not in ("cpu", "mps")
        return type(batch)([t.to(device, non_blocking=non_blocking) for t in batch])
    return None


def resume_position(state: dict[str, int], batch_size: int, num_batches: int) -> tuple[int, int]:
    """(epoch, batches to skip) for a loader of `batch_size` resuming from `state`.

    A state saved with another batch size keeps the images already seen: the epoch continues in the same
    permutation from the first whole new-size batch after them (a few images of that epoch may go unseen).
    """
    epoch, batches = int(state["epoch"]), int(state["batches"])
    old = int(state.get("batch_size", batch_size))
    if old != batch_size:
        batches = -(-batches * old // batch_size)
    if batches >= num_batches:  # saved at the very end of an epoch: the next pass starts a new one
        epoch, batches = epoch + 1, 0
    return epoch, batches


class ResumableSampler(DistributedSampler):
    """Shuffles with `seed + epoch`, shards across ranks, and can start part-way into an epoch.

    It subclasses DistributedSampler so that Lightning, seeing a distributed sampler already in place, keeps
    it instead of rebuilding the loader; it is equally correct with a single process (rank 0 of 1).
    """

    def __init__(
        self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0
    ) -> None:
        # drop_last=True: every rank sees the same number of samples, so DDP ranks never wait on each other.
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start = self.start, 0  # a skip applies to one pass only
        return iter(indices[start:])

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `ResumableSampler` whose position survives a checkpoint.

    `state_dict()` is `{"epoch", "batches"}`: the sampler epoch and the batches yielded in it so far. Lightning
    loads it before creating the epoch's iterator, which then resumes with the next unseen batch.
    """

    def __init__(self, dataset: Dataset, *, sampler: ResumableSampler, batch_size: int, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, batch_size=batch_size, drop_last=True, **kwargs)
        self._batches = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing runs until the first batch is requested, which is after Lightning has called
        # `sampler.set_epoch` for the epoch, so the permutation is the right one.
        skip, self._skip = self._skip, 0
        self.sampler.start = skip * self.batch_size
        self._batches = skip
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Position in the data stream: the sampler epoch, the batches already yielded in it, their size."""
        return {"epoch": self.sampler.epoch, "batches": self._batches, "batch_size": self.batch_size}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume after the images recorded in `state_dict` (see `resume_position`)."""
        epoch, batches = resume_position(state_dict, self.batch_size, len(self))
        self.sampler.set_epoch(epoch)
        self._skip = batches


# What Ctrl-C and a cluster (Slurm's time-limit warning, preemption, scancel) send to every process of a job step
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


def worker_init(worker_id: int, rank: int = 0) -> None:
    """A loader worker's start: ignore the stop signals, then seed as Lightning's `pl_worker_init_function` does.

    The signals reach the workers too (a terminal's process group, Slurm's job step). The main process handles them
    by finishing the iteration and saving; a worker that died of one (torch's worker handler exits on SIGTERM) would
    crash the main process at its next batch first, with no checkpoint. A worker ends when the main process ends it
    or exits."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    pl_worker_init_function(worker_id, rank=rank)


def loader_worker_init(num_workers: int, rank: int = 0) -> Callable[[int], None] | None:
    """The `worker_init_fn` of this package's loaders: `worker_init` for `rank` when there are workers."""
    return partial(worker_init, rank=rank) if num_workers > 0 else None


def require_one_batch(n: int, batch_size: int, num_replicas: int = 1) -> None:
    """Raise DataError unless each of `num_replicas` processes gets at least one whole batch of `n` images."""
    per_rank = n // num_replicas
    if per_rank < batch_size:
        each = f" ({per_rank} per process of {num_replicas})" if num_replicas > 1 else ""
        raise DataError(f"the training set has {n} images{each}, fewer than one batch of {batch_size} (--batch-size "
                        "times the D steps per iteration); lower --batch-size or add images")  # fmt: skip


def make_train_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    shuffle: bool = True,
    collate_fn: Callable[[Any], Any] | None = None,
) -> ResumableDataLoader:
    """A shuffled, rank-sharded, resumable training loader with sensible worker settings."""
    require_one_batch(len(dataset), batch_size, num_replicas)
    sampler = ResumableSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
    return ResumableDataLoader(
        dataset,
        sampler=sampler,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        worker_init_fn=loader_worker_init(num_workers, rank),
        # Re-forking workers every epoch costs seconds on image folders; keeping them is free.
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def split_lengths(n: int, val_fraction: float) -> tuple[int, int]:
    """Sizes of the (train, val) split of `n` items; at least one validation item when the fraction is positive."""
    n_val = min(n - 1, max(1, math.floor(n * val_fraction))) if val_fraction > 0 and n > 1 else 0
    return n - n_val, n_val


def seeded_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random (train, val) index split of `n` items, the same on every rank and every run."""
    n_train, _ = split_lengths(n, val_fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n_train].sort().values, perm[n_train:].sort().values


class MirroredDataset(Dataset):
    """`dataset` followed by its images mirrored left-right, as StyleGAN2-ADA's `--mirror` (`xflip`): item i < n is
    the dataset's item i, item n + i its item i with the image flipped along the width, same label."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.n = dataset, len(dataset)
        collate = getattr(dataset, "collate_fn", None)
        if collate is not None:  # a dataset that batches itself (`__getitems__`) keeps its collate
            self.collate_fn = collate

    def __len__(self) -> int:
        return 2 * self.n

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index % self.n]
        if index < self.n:
            return item
        if isinstance(item, torch.Tensor):
            return item.flip(-1)
        image, *rest = item
        return (image.flip(-1), *rest)


class MirroredBatchDataset(MirroredDataset):
    """A `MirroredDataset` over a dataset with `__getitems__`: one batched read, then the mirrored items flipped."""

    def __getitems__(self, indices: list[int]) -> Any:
        index = torch.as_tensor(indices)
        flip = index >= self.n
        images, *rest = self.dataset.__getitems__((index % self.n).tolist())
        return (torch.where(flip.view(-1, *[1] * (images.ndim - 1)), images.flip(-1), images), *rest)


def mirrored(dataset: Dataset) -> MirroredDataset:
    """`dataset` doubled with left-right mirrored copies (`MirroredDataset`), batched when `dataset` batches."""
    return MirroredBatchDataset(dataset) if hasattr(dataset, "__getitems__") else MirroredDataset(dataset)


class DeviceTensorLoader:
    """Batches gathered by indexing uint8 tensors that live on the accelerator: no DataLoader, no host copies.

    For datasets that fit in device memory (MNIST is 47 MB as uint8). Each epoch is a permutation drawn from
    `seed + epoch`, sharded across ranks like `ResumableSampler`; `state_dict`/`load_state_dict` record and
    restore the position mid-epoch, so resumption stays exact. Yields `(images in [-1, 1], labels)`. With `mirror`
    the epoch permutes 2N items, item N + i being image i mirrored left-right (`MirroredDataset`).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device | str,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        mirror: bool = False,
    ) -> None:
        self.size = len(images) * (2 if mirror else 1)  # items per epoch
        require_one_batch(self.size, batch_size, num_replicas)
        self.images = images.to(device)  # (N, C, H, W) uint8
        self.labels = labels.to(device)
        self.mirror = mirror
        self.batch_size, self.seed = batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self._batches, self._skip = 0, 0, 0
        # Lightning calls `set_epoch` on a loader's `sampler` each epoch; this loader is its own sampler.
        self.sampler = self

    def __len__(self) -> int:
        return self.size // self.num_replicas // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next pass uses (Lightning calls this each epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        skip, self._skip = self._skip, 0
        rng = torch.Generator().manual_seed(self.seed + self.epoch)  # on the CPU: identical on every device
        order = torch.randperm(self.size, generator=rng)[self.rank :: self.num_replicas]
        order = order.to(self.images.device)
        n = len(self.images)
        self._batches = skip
        for b in range(skip, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            self._batches = b + 1
            if not self.mirror:
                yield to_signed(self.images[idx]), self.labels[idx]
                continue
            images = to_signed(self.images[idx % n])  # (B, C, H, W)
            flip = (idx >= n).view(-1, 1, 1, 1)
            yield torch.where(flip, images.flip(-1), images), self.labels[idx % n]

    def state_dict(self) -> dict[str, int]:
        """Position in the data stream: the epoch, the batches already yielded in it, their size."""
        return {"epoch": self.epoch, "batches": self._batches, "batch_size": self.batch_size}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume after the images recorded in `state_dict` (see `resume_position`)."""
        self.epoch, self._skip = resume_position(state_dict, self.batch_size, len(self))
