"""Data: datasets, splits, partitions, synthetic fundus set, arrays, augmentation."""
