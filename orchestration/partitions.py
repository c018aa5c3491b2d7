"""Partitions: per dataset, and from training on, per (dataset, training-data fraction)."""

from __future__ import annotations

import dagster as dg

from moa_core.datasets import DATASETS, FRACTIONS

dataset_partitions = dg.StaticPartitionsDefinition(sorted(DATASETS))
fraction_partitions = dg.StaticPartitionsDefinition(list(FRACTIONS))
dataset_fraction_partitions = dg.MultiPartitionsDefinition(
    {"dataset": dataset_partitions, "fraction": fraction_partitions}
)


def dataset_key(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> str:
    return str(context.partition_key)


def dataset_fraction_keys(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[union-attr]
    return keys["dataset"], keys["fraction"]


def multi_key(dataset: str, fraction: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"dataset": dataset, "fraction": fraction})
