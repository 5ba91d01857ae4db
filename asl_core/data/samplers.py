"""The order of training samples in an epoch: plain shuffling, or class-balanced batches.

Class-balanced batches (in the spirit of pytorch-metric-learning's MPerClassSampler) draw each
batch's labels uniformly over the classes and take that many images of each class, cycling
through a shuffled list per class, so a tail class with 10 images still has same-class pairs
in most batches -- which ASLoss's aggregation term needs. Written here because torch's
WeightedRandomSampler balances only in expectation and repeats images at random.
"""

from __future__ import annotations

import torch

SAMPLERS = ("random", "balanced")


def epoch_batches(labels: torch.Tensor, batch_size: int, generator: torch.Generator, sampler: str = "random",
                  num_classes: int | None = None) -> list[torch.Tensor]:
    """Index batches for one epoch over ``labels`` [N] (as many batches as plain shuffling gives)."""
    n = len(labels)
    if sampler == "random":
        perm = torch.randperm(n, generator=generator)
        return [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if sampler != "balanced":
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    c = int(num_classes or int(labels.max()) + 1)
    pools = [torch.nonzero(labels == k).flatten() for k in range(c)]
    present = [k for k in range(c) if len(pools[k])]
    orders = {k: pools[k][torch.randperm(len(pools[k]), generator=generator)] for k in present}
    cursor = dict.fromkeys(present, 0)
    batches = []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        picks = torch.tensor(present)[torch.randint(len(present), (size,), generator=generator)]
        idx = []
        for k in picks.tolist():
            if cursor[k] == len(orders[k]):  # a class is used up: reshuffle it
                orders[k] = pools[k][torch.randperm(len(pools[k]), generator=generator)]
                cursor[k] = 0
            idx.append(int(orders[k][cursor[k]]))
            cursor[k] += 1
        batches.append(torch.tensor(idx, dtype=torch.long))
    return batches


def same_class_pairs(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Ordered same-class pairs ``i != j`` per class in one batch: ``n_k (n_k - 1)``, [C]."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes)[:num_classes]
    return counts * (counts - 1)
