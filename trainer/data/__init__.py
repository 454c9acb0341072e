"""Data: data sets on disk, splits by patient, hospital partitions, arrays, synthetic fundus set.

`augment` (torch) is not imported here so that loading data does not import torch.
"""
from trainer.data.arrays import load_arrays
from trainer.data.datasets import (
    DatasetError,
    FundusDataset,
    Sample,
    group_by_patient,
    load_dataset,
    one_per_patient,
    read_split_file,
    split_dataset,
)
from trainer.data.partition import partition, partition_summary
from trainer.data.synth import generate_dataset, render_fundus

__all__ = [
    "DatasetError", "FundusDataset", "Sample", "generate_dataset", "group_by_patient", "load_arrays",
    "load_dataset", "one_per_patient", "partition", "partition_summary", "read_split_file",
    "render_fundus", "split_dataset",
]
