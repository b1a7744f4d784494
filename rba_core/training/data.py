"""Training data: the dataset readers of ``rba_core.data``, a sample-counter dataset, a sampler.

Sample ``n`` of a run (n = iteration * batch + position) maps to a fixed image (a per-epoch
permutation seeded by ``seed``) and a fixed augmentation RNG seeded by (seed, n). Resuming at
iteration ``i`` therefore continues with exactly the samples the interrupted run would have used,
and with DDP every rank takes its own slice of each batch.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import RbaError
from .config import DataSpec


def open_training_set(spec: DataSpec):
    """The evaluation readers (``rba_core.data``) for a training/validation data spec."""
    from ..data.datasets import open_dataset

    label_map = ",".join(f"{k}:{v}" for k, v in spec.label_map.items()) or None
    ds = open_dataset(spec.kind, spec.root, split=spec.split, label_map=label_map,
                      task="closed" if spec.kind == "folder" else None)
    return ds.subset(spec.limit) if spec.limit else ds


class ConcatSets:
    """Several training sets read as one, in order (detectron2 concatenates DATASETS.TRAIN)."""

    def __init__(self, sets: list):
        self.sets = sets
        self.offsets = np.cumsum([0] + [len(s) for s in sets])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int):
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.sets[k][i - int(self.offsets[k])]


class CounterDataset(Dataset):
    """``dataset[n]`` = augmented sample number ``n`` of the run (see module docstring)."""

    def __init__(self, dataset, transform, seed: int, mix=None):
        self.dataset, self.transform, self.seed, self.mix = dataset, transform, seed, mix
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def image_index(self, n: int) -> int:
        epoch, pos = divmod(n, len(self.dataset))
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
            self._perms = {epoch: perm}
        return int(perm[pos])

    def __getitem__(self, n: int):
        _, image, label = self.dataset[self.image_index(n)]
        rng = np.random.default_rng([self.seed, 1, n])
        if self.mix is not None:
            image, label = self.mix(image, label, rng)
        image, label = self.transform(image, label, rng)
        return (torch.from_numpy(image.transpose(2, 0, 1).copy()),
                torch.from_numpy(label.astype(np.int64)))


class CounterSampler(Sampler):
    """Yields this rank's sample counters for iterations ``start``..``stop``-1."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise RbaError(f"batch_size {batch_size} is not divisible by {world} processes")
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch_size, rank, world

    def __iter__(self):
        per = self.batch // self.world
        for it in range(self.start, self.stop):
            base = it * self.batch + self.rank * per
            yield from range(base, base + per)

    def __len__(self) -> int:
        return (self.stop - self.start) * (self.batch // self.world)
