"""Datasets by name, preprocessing, the evaluation splits and Table-1 statistics."""

from xlrec.data_prep.dataset import PreparedDataset, UserFile, data_shape, prepare, prepare_config
from xlrec.data_prep.split import Split, leave_two_out, make_split, shuffled_training_items
from xlrec.data_prep.stats import format_stats, table1_stats

__all__ = [
    "PreparedDataset",
    "UserFile",
    "data_shape",
    "prepare",
    "prepare_config",
    "Split",
    "leave_two_out",
    "make_split",
    "shuffled_training_items",
    "format_stats",
    "table1_stats",
]
