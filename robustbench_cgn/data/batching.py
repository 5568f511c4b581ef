"""Batches straight from in-memory (or memory-mapped) tensors, without per-item Python work.

A DataLoader over a TensorDataset indexes and collates one item at a time; for small images
that overhead rivals the model's compute. :class:`IndexedTensors` gathers a whole batch with
one indexing operation per part, and keeps concatenated parts (the "O + CGN" mix) separate, so
a memory-mapped part is never copied into RAM as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import ConcatDataset, Dataset, TensorDataset


@dataclass
class IndexedTensors:
    """``(images, labels)`` parts addressed by one global index."""

    parts: list[tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> IndexedTensors:
        """Unwrap TensorDatasets (possibly inside a ConcatDataset); other datasets are read
        once, item by item, into tensors."""
        if isinstance(dataset, TensorDataset):
            images, labels = dataset.tensors[:2]
            return cls([(images, labels)])
        if isinstance(dataset, ConcatDataset):
            parts = []
            for part in dataset.datasets:
                parts.extend(cls.from_dataset(part).parts)
            return cls(parts)
        items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
        images = torch.stack([torch.as_tensor(item[0]) for item in items])
        labels = torch.as_tensor([int(item[1]) for item in items])
        return cls([(images, labels)])

    def __len__(self) -> int:
        return sum(len(labels) for _, labels in self.parts)

    def gather(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels at the global ``indices`` (in that order)."""
        if len(self.parts) == 1:
            images, labels = self.parts[0]
            return images[indices], labels[indices]
        bounds = torch.tensor([0] + [len(labels) for _, labels in self.parts]).cumsum(0)
        owner = torch.searchsorted(bounds, indices, right=True) - 1
        first_images, first_labels = self.parts[0]
        out_images = torch.empty((len(indices), *first_images.shape[1:]), dtype=first_images.dtype)
        out_labels = torch.empty(len(indices), dtype=torch.long)
        for part_index, (images, labels) in enumerate(self.parts):
            selected = (owner == part_index).nonzero().flatten()
            if len(selected):
                local = indices[selected] - bounds[part_index]
                out_images[selected] = images[local]
                out_labels[selected] = labels[local].long()
        return out_images, out_labels

    def batch_indices(self, batch_size: int, generator: torch.Generator | None = None):
        """Yield the global indices of shuffled (when ``generator`` is given) batches covering
        every item once (under DDP every rank draws the same ones and gathers its part,
        ``ctx.distributed.shard_batch``)."""
        order = (
            torch.randperm(len(self), generator=generator)
            if generator is not None
            else torch.arange(len(self))
        )
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """Yield shuffled (when ``generator`` is given) batches covering every item once."""
        for indices in self.batch_indices(batch_size, generator):
            yield self.gather(indices)
