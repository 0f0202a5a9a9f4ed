"""The ground floor: settings types, declared once as typed dataclass fields.

`TrainConfig` (a run), `PrepConfig` (preprocessing), `ModelSettings` (the base of a model
family's own settings), `setting` (a field with its help text) and `coerce` (a value checked
against a field's type). Nothing here imports torch, MLflow or any other xlrec floor.
"""

from xlrec.settings.fields import SettingInfo, flag_name, hints_of, setting, settings_of
from xlrec.settings.metrics import (
    BEST_VAL_SELECTION_KEY,
    SELECTION_METRIC,
    SELECTION_METRIC_LABEL,
    VAL_SELECTION_KEY,
    metric_key,
)
from xlrec.settings.run import PREP_HINTS, RUN_HINTS, ModelSettings, PrepConfig, TrainConfig, check
from xlrec.settings.types import coerce, show

__all__ = [
    "BEST_VAL_SELECTION_KEY",
    "VAL_SELECTION_KEY",
    "PREP_HINTS",
    "RUN_HINTS",
    "SELECTION_METRIC",
    "SELECTION_METRIC_LABEL",
    "ModelSettings",
    "PrepConfig",
    "SettingInfo",
    "TrainConfig",
    "check",
    "coerce",
    "flag_name",
    "hints_of",
    "metric_key",
    "setting",
    "settings_of",
    "show",
]
