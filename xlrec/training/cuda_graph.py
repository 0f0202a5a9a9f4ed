"""Replay the whole training step as one CUDA graph.

Small models are launch-bound on a GPU: an ML-100K xLSTM step issues a few hundred small
kernels (embedding, mLSTM Triton kernels, fused cross-entropy, backward, clipping, Adam); a
captured graph replays all of them with one launch (docs/results/speed.md "What the GPU step is
made of").

Written by hand, following PyTorch's "whole-network capture" recipe
(https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture), because the
step mixes third-party Triton kernels (mlstm_kernels), our own autograd Function and the
optimizer; `torch.cuda.make_graphed_callables` covers forward/backward only, and
torch.compile would have to trace all of it. The rules it relies on, each kept by the
trainer: fixed shapes (batches are padded to full size with all-padding windows, whose
targets the loss ignores), no host synchronisation inside the step (counts and sums stay
on the device), Adam with `capturable=True` and a tensor learning rate (so the scheduler's
per-epoch update reaches the graph), dropout drawing from a CUDA generator state of the run's
own (graph-safe; `own_generator_state`), and accumulators that live at fixed addresses.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import torch

StepFn = Callable[[torch.Tensor, torch.Tensor], None]

# A padding row: flat end 0 before user start 1 gathers an all-padding window, whose targets
# training_pairs marks -1 and the loss ignores (tests/test_training.py checks it changes nothing).
PAD_END, PAD_START = 0, 1


class _CaptureGate:
    """Runs that share a process (one thread and CUDA stream each) replay their graphs side by
    side, but a capture (with its eager warm-up) runs alone: the default CUDA generator, which
    every graph draws dropout from, refuses a replay's offset increment while any graph of the
    process is being captured ("Offset increment outside graph capture encountered unexpectedly"),
    and torch.cuda.graph empties the allocator's cache on entry. A readers-writer lock, written
    here because the standard library has none."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._replaying = 0
        self._capturing = False

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._capturing)
            self._replaying += 1
        try:
            yield
        finally:
            with self._cond:
                self._replaying -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._capturing and not self._replaying)
            self._capturing = True
        try:
            yield
        finally:
            with self._cond:
                self._capturing = False
                self._cond.notify_all()


_GATE = _CaptureGate()


@contextlib.contextmanager
def own_generator_state(device: torch.device, seed: int) -> Iterator[None]:
    """Capture with a generator state of the run's own, seeded by the run's seed, in place of the
    default CUDA generator's: the graph registers the state it captured with and draws its dropout
    from it at every replay.

    A replay writes its generator state's seed and offset into that state's device buffers, which
    the graph's kernels read when they run. Graphs of one process replaying on their own streams
    (xlrec.sweeps.trial_group) from the one default state could read each other's offset and draw
    the same dropout masks; each with its own state they cannot, and a run's masks depend on its
    seed alone. Only the capture swaps the state (inside the gate's exclusive `capturing`); eager
    draws keep the default generator."""
    default = torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    own = torch.Generator(device=device)
    own.manual_seed(seed)
    saved = default.graphsafe_get_state()
    default.graphsafe_set_state(own.graphsafe_get_state())
    try:
        yield
    finally:
        default.graphsafe_set_state(saved)


class GraphedStep:
    """Calls `step(ends, starts)` on fixed-size device buffers: eagerly for the first
    `warmup` calls (on a side stream, as capture requires; they are real training steps),
    then captures it once and replays the graph for every later call."""

    def __init__(self, step: StepFn, batch_size: int, device: torch.device, warmup: int = 3, seed: int = 0):
        self.step, self.batch_size, self.warmup, self.seed = step, batch_size, warmup, seed
        self.ends = torch.full((batch_size,), PAD_END, dtype=torch.long, device=device)
        self.starts = torch.full((batch_size,), PAD_START, dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_calls = 0

    def __call__(self, ends: torch.Tensor, starts: torch.Tensor) -> None:
        n = ends.shape[0]
        self.ends[:n].copy_(ends)
        self.starts[:n].copy_(starts)
        if n < self.batch_size:  # the epoch's last, short batch
            self.ends[n:].fill_(PAD_END)
            self.starts[n:].fill_(PAD_START)
        if self.graph is not None:
            with _GATE.replaying():
                self.graph.replay()  # on this thread's current stream
            return
        with _GATE.capturing():
            if self.eager_calls < self.warmup:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    self.step(self.ends, self.starts)
                torch.cuda.current_stream().wait_stream(side)
                self.eager_calls += 1
                return
            graph = torch.cuda.CUDAGraph()
            # a capture stream of its own (torch.cuda.graph's default one is shared by every graph of
            # the process), and "thread_local": another thread's allocations during this capture are
            # its own business, not an error of this capture
            capture = torch.cuda.Stream()
            capture.wait_stream(torch.cuda.current_stream())
            # records without running ...
            with own_generator_state(self.ends.device, self.seed):
                with torch.cuda.graph(graph, stream=capture, capture_error_mode="thread_local"):
                    self.step(self.ends, self.starts)
            torch.cuda.current_stream().wait_stream(capture)
            self.graph = graph
            graph.replay()  # ... so run this batch now
