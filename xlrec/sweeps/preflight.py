"""Every sweep setting checked and every dataset prepared once, in the driver, before any
server or Ray starts."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from xlrec.errors import ConfigError
from xlrec.sweeps.spec import SweepSpec


def _absolute(location: str | None) -> str | None:
    """A local path made absolute (URLs unchanged): trials run in their own working directories."""
    if not location or "://" in location:
        return location
    return str(Path(location).expanduser().resolve())


def prepare_data(spec: SweepSpec) -> None:
    """Check the settings and prepare every dataset once.

    Every sweep argument, and the config of every grid cell (or the search's base config)
    with the --set values, is checked first; a wrong one then fails the sweep at once with
    one clear error (instead of failing every trial, or being ignored), and trials find the
    processed data in the cache. Data that the metrics cannot score (too few items, no warm
    user) is refused here too. Data locations become absolute: `XLREC_DATA_MIRROR=../shared/data`
    means the driver's directory, not each trial's.
    """
    from xlrec.config import resolve_config
    from xlrec.config.defaults import load_tuned, tuned_dir
    from xlrec.data_prep import make_split, prepare_config
    from xlrec.settings import TrainConfig
    from xlrec.sweeps.checks import check_spec
    from xlrec.sweeps.spec_file import cell_text
    from xlrec.training.evaluate import check_evaluable
    from xlrec.training.footprint import check_fits

    check_spec(spec)
    spec.source = _absolute(spec.source)
    if spec.nested_in is None:  # `xlrec tune` hands its sweeps what they start from
        spec.tuned = load_tuned(tuned_dir(spec.defaults_dir))
    for var in ("XLREC_DATA_MIRROR", "XLREC_DATA_DIR"):
        if os.environ.get(var):
            os.environ[var] = _absolute(os.environ[var]) or os.environ[var]
    # one check per dataset and protocol (a spec may sweep the split)
    configs: dict[tuple, TrainConfig] = {}
    for cell in spec.grid_cells():  # the fixed settings and each cell's axes, checked together
        cell = dict(cell)
        model, dataset = cell.pop("model"), cell.pop("dataset")
        try:
            cfg = resolve_config(
                model, dataset, overrides={**spec.fixed_for(model), **cell, "source": spec.source}, tuned=spec.tuned
            )
        except ConfigError as exc:
            where = f"sweep spec {spec.spec_file}" if spec.spec_file else "the sweep"
            reason = str(exc).replace(" Fix the flag or the --config file and run again.", "")
            raise ConfigError(
                f"In {where}, the trial {cell_text({'model': model, 'dataset': dataset, **cell})} cannot run: "
                f"{reason} Fix the spec or the flags and run again; nothing was started."
            ) from None
        protocol = (cfg.split, cfg.temporal_val_quantile, cfg.temporal_test_quantile, cfg.temporal_targets)
        configs.setdefault((cfg.dataset, cfg.cold_start_threshold, cfg.exclude_seen, *protocol), cfg)
    for cfg in configs.values():
        check_fits(cfg, torch.device("cpu"), data_only=True, what=f"Preparing {cfg.dataset} for the sweep")
        data = prepare_config(cfg)
        check_evaluable(
            cfg.dataset,
            data.seqs,
            make_split(data.seqs, cfg),
            cfg.cold_start_threshold,
            cfg.exclude_seen,
        )
