"""CUDA-graph behaviour that needs a GPU: skipped on the CPU machines that run CI, run on a lent GPU
host with `python3 tests/test_cuda_graphs_gpu.py` (which has no pytest)."""

from __future__ import annotations

import threading

import pytest
import torch

from xlrec.device import thread_stream
from xlrec.training.cuda_graph import GraphedStep

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
WIDTH, STEPS = 1 << 16, 40


def _masks(seed: int, start: threading.Barrier | None = None) -> list[torch.Tensor]:
    """The dropout masks of a graphed step's replays, on this thread's own stream."""
    dev = torch.device("cuda")
    out = torch.zeros(WIDTH, device=dev)
    ones = torch.ones(WIDTH, device=dev)

    def step(ends: torch.Tensor, starts: torch.Tensor) -> None:
        out.copy_(torch.nn.functional.dropout(ones, 0.5))

    graphed = GraphedStep(step, 2, dev, warmup=1, seed=seed)
    ends = torch.zeros(2, dtype=torch.long, device=dev)
    masks = []
    with thread_stream(dev):
        graphed(ends, ends)  # eager warm-up
        graphed(ends, ends)  # capture and first replay
        if start is not None:
            start.wait()
        for _ in range(STEPS):
            graphed(ends, ends)
            masks.append(out.clone())
        torch.cuda.current_stream().synchronize()
    return masks


def _side_by_side(seeds: list[int]) -> list[list[torch.Tensor]]:
    results: list[list[torch.Tensor]] = [[] for _ in seeds]
    start = threading.Barrier(len(seeds))

    def run(i: int) -> None:
        results[i] = _masks(seeds[i], start)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(seeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_graphed_steps_dropout_depends_on_its_seed_alone_whatever_replays_beside_it():
    """Each graph draws from a generator state of its own (own_generator_state): replayed side by
    side with other runs' graphs, a run draws the masks it draws alone, and no two seeds share a
    step's mask (one shared default state let concurrent replays read each other's offset)."""
    alone = _masks(7)
    assert len({m.sum().item() for m in alone}) > STEPS // 2  # the masks change from step to step
    beside = _side_by_side([7, 8, 9, 10])
    for a, b in zip(alone, beside[0]):
        assert torch.equal(a, b)
    for step in range(STEPS):
        for i in range(4):
            for j in range(i + 1, 4):
                assert not torch.equal(beside[i][step], beside[j][step]), (step, i, j)
    again = _side_by_side([7, 7])
    for a, b, c in zip(alone, *again):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_capturing_leaves_the_default_generator_to_eager_draws():
    """The capture borrows the default generator only while it records: afterwards eager draws
    continue the default's own sequence (seed and offset) as if no graph had been captured."""
    torch.manual_seed(3)
    torch.nn.functional.dropout(torch.ones(WIDTH, device="cuda"), 0.5)  # what the eager warm-up draws
    expected = torch.rand(8, device="cuda")
    torch.manual_seed(3)
    _masks(11)
    assert torch.cuda.initial_seed() == 3
    assert torch.equal(torch.rand(8, device="cuda"), expected)


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("passed", name, flush=True)
