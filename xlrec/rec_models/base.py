"""The common interface of every recommender, and parameter accounting.

A model maps a left-padded batch of item ids (B, L) (0 = padding, the latest item in
the last column) to hidden states (B, L, D) with `encode`, and scores every item
(ids 0..N, column 0 is padding) with its untied output layer. The trainer asks a model
for `training_pairs` (hidden states at target positions and the targets); the loss and
the evaluator are shared, so every model is trained and ranked the same way.

A model is built from its family's settings (a `ModelSettings` dataclass declared next to it,
e.g. `SASRecSettings`), the run's max_len and the kernel choice, never from the run config.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from xlrec.settings import ModelSettings, check


class SequentialRecommender(nn.Module):
    """Base class: item embedding -> backbone (`encode`) -> untied output layer.

    A model (built-in or a plugin's, docs/your-own-model.md) declares its `name`, its
    `settings_class` and implements `encode`; everything else (training, evaluation, tracking,
    the registry, serving, sweeps and reports) is shared.
    """

    #: the name runs, registered models and `--model` use (a plugin's entry-point name must match)
    name: ClassVar[str] = "base"
    #: the family's settings dataclass (a subclass of xlrec.settings.ModelSettings)
    settings_class: ClassVar[type[ModelSettings]] = ModelSettings
    #: a YAML file beside the model's module: per dataset, the settings it starts from
    #: (`ml-1m: {embedding_dim: 128, lr: 0.001, chosen_by: ...}`); None: the dataclass defaults
    defaults_file: ClassVar[str | None] = None
    #: what `xlrec tune` searches for this family: Optuna distributions by setting, as a sweep spec's
    #: `space` writes them (`{"dropout": {"float": [0.1, 0.6]}}`; `head_dim` samples embedding_dim
    #: as heads x per-head width); the learning rate is searched for every family. None: the sweeps'
    #: built-in space (xlrec.sweeps.space), less the settings this family does not have
    search_space: ClassVar[dict[str, dict[str, Any]] | None] = None
    #: trains all next-item targets of a window in one pass (causal models)
    causal: bool = True
    #: has parameters to train (False for `pop`)
    trainable: bool = True
    #: its training step (with `training_pairs(..., fixed_shape=True)`) has fixed shapes, draws
    #: random numbers only from the default CUDA generator and was captured and checked as a
    #: CUDA graph on a GPU (xlrec.device.use_cuda_graph)
    graph_capturable: bool = False
    #: its encoder compiles with torch.compile under a GPU's autocast (xlrec.device.use_compile)
    compilable: bool = True
    #: its training pairs run under torch.func.vmap, K seeds as one model (xlrec.training.stacked),
    #: in a copy that `use_vmap_kernels` has prepared
    stackable: bool = True

    #: the untied output layer (families that tie it to the embedding override `output_weight`)
    output: nn.Linear

    def __init__(self, num_items: int, settings: ModelSettings, max_len: int, kernel: str = "native"):
        super().__init__()
        self.num_items = num_items
        self.max_len = max_len
        self._compiled_encode: Callable[[torch.Tensor], torch.Tensor] | None = None

    def compile_training(self) -> None:
        """Train through `torch.compile(encode)` (xlrec.device.use_compile decides): the step's
        shapes are fixed, so it compiles once; evaluation, serving and saved models keep `encode`."""
        self._compiled_encode = torch.compile(self.encode)

    @property
    def training_compiled(self) -> bool:
        return self._compiled_encode is not None

    def training_encode(self, ids: torch.Tensor) -> torch.Tensor:
        """`encode` as the training step calls it: compiled where compile_training asked for it."""
        return (self._compiled_encode or self.encode)(ids)

    @property
    def passes_per_epoch(self) -> int:
        """How often an epoch visits each training window (more for models that train a random
        subset of a window's positions per visit)."""
        return 1

    # --- to implement -------------------------------------------------------------
    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item ids -> (B, L, D) hidden states; output at t sees items <= t."""
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------
    @property
    def output_weight(self) -> torch.Tensor:
        return self.output.weight

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(hidden)

    def use_vmap_kernels(self) -> None:
        """Make this model (the stacked step's copy, never a seed's own) run kernels that vmap can
        batch, in place. Families built from torch operators need nothing."""

    def output_operands(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden', weight) with hidden' @ weight.T = the logits of `score`: the fused loss
        (xlrec.training.losses) never forms all logits, so it takes the layer as one matrix."""
        return hidden, self.output_weight

    def scoring_ids(self, history: torch.Tensor) -> torch.Tensor:
        """What `encode` reads to predict the item after each (B, L) left-padded history."""
        return history

    def next_item_scores(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded histories -> (B, N+1) scores for the next item."""
        return self.score(self.encode(self.scoring_ids(history))[:, -1])

    def case_scores(self, history: torch.Tensor, users: torch.Tensor | None) -> torch.Tensor:
        """Scores for evaluation cases of known users (index per row): the history's scores; only a
        fallback that looks its users up (the demographic one, rec_models.pop) reads `users`."""
        return self.next_item_scores(history)

    def training_pairs(
        self,
        window: torch.Tensor,
        num_targets: int,
        generator: torch.Generator | None = None,
        fixed_shape: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states at target positions and their targets for a (B, L+1) window batch
        (`generator` and `fixed_shape` are for models that draw their targets: BERT4Rec).

        Causal models: input = window[:, :-1], target = window[:, 1:]; the last
        `num_targets` positions are targets, earlier ones are context only (1 = the
        paper's prefix scheme). Positions whose input is padding get target -1, which the
        loss ignores: the shapes stay fixed, so no device-to-host sync is needed to count
        the targets (a boolean-mask selection would stall the GPU pipeline every step).
        """
        inputs, targets = window[:, :-1], window[:, 1:]
        hidden = self.training_encode(inputs)
        if num_targets == 1:
            return hidden[:, -1], targets[:, -1]
        k = min(num_targets, inputs.shape[1])
        tgt = targets[:, -k:].masked_fill(inputs[:, -k:] == 0, -1)
        return hidden[:, -k:].reshape(-1, hidden.shape[-1]), tgt.reshape(-1)


def backbone_checks(embedding_dim: int, num_blocks: int, dropout: float, num_heads: int | None = None) -> None:
    """The checks every embedding -> blocks -> output family shares (num_heads where it has heads)."""
    heads = (
        []
        if num_heads is None
        else [
            (
                num_heads > 0 and embedding_dim % num_heads == 0,
                f"embedding_dim ({embedding_dim}) must be divisible by num_heads ({num_heads})",
            )
        ]
    )
    check(
        [
            (embedding_dim > 0, f"embedding_dim must be positive, got {embedding_dim}"),
            (num_blocks > 0, f"num_blocks must be positive, got {num_blocks}"),
            *heads,
            (0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}"),
        ]
    )


def component_of(param_name: str) -> str:
    """Group a parameter name into a Table-6 component (embedding, block_i, norms, output)."""
    parts = param_name.split(".")
    if "blocks" in parts:
        i = parts.index("blocks")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return f"block_{parts[i + 1]}"
    for part in parts:
        if part in ("item_embedding", "position_embedding"):
            return "embedding" if part == "item_embedding" else "position_embedding"
        if part in ("output", "output_bias"):
            return "output"
        if "norm" in part:
            return "final_norm"
        if part in ("rnn",):
            return "backbone"
    return parts[0]


def parameter_breakdown(model: nn.Module) -> OrderedDict[str, int]:
    """Trainable parameters per component, plus 'total' (the paper's Table 6)."""
    counts: OrderedDict[str, int] = OrderedDict()
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = component_of(name)
            counts[key] = counts.get(key, 0) + p.numel()
    # input side first, output last, whatever order the module registered them in
    rank = {"embedding": 0, "position_embedding": 1, "output": 3}
    counts = OrderedDict(sorted(counts.items(), key=lambda kv: rank.get(kv[0], 2)))
    counts["total"] = sum(counts.values())
    return counts


def parameter_table(model: nn.Module) -> list[tuple[str, str, int]]:
    """(component, parameter name, count) rows for every trainable tensor."""
    return [(component_of(n), n, p.numel()) for n, p in model.named_parameters() if p.requires_grad]


def right_align(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move left padding to the right; returns (aligned ids, gather index to undo it).

    Causal recurrent models (GRU, LSTM, sLSTM) are not invariant to leading pads (biases
    change the state), but trailing pads never influence earlier outputs, so running on
    right-aligned sequences makes their results independent of the padding.
    """
    L = ids.shape[1]
    pads = (ids == 0).sum(dim=1, keepdim=True)
    ar = torch.arange(L, device=ids.device).unsqueeze(0)
    fwd = (ar + pads) % L
    back = (ar - pads) % L
    return ids.gather(1, fwd), back


def undo_right_align(hidden: torch.Tensor, back: torch.Tensor) -> torch.Tensor:
    return hidden.gather(1, back.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
