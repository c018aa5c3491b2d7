"""Partitions: per dataset (dynamic: the catalogue's entries), and per (dataset, data fraction).

The ``dataset`` dimension is a :class:`dagster.DynamicPartitionsDefinition`: its keys are
the names of the catalogue's entries (``moa_core/catalogue.toml``, the user's own TOML,
and releases registered by the JUMP release sensor). :func:`sync_dataset_partitions` adds
every catalogue entry to the instance; the ``catalogue_sensor`` does that on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from moa_core.datasets import FRACTION_KEYS, validate_name

DATASET_PARTITIONS_NAME = "dataset"

dataset_partitions = dg.DynamicPartitionsDefinition(name=DATASET_PARTITIONS_NAME)
fraction_partitions = dg.StaticPartitionsDefinition(FRACTION_KEYS)
dataset_fraction_partitions = dg.MultiPartitionsDefinition(
    {"dataset": dataset_partitions, "fraction": fraction_partitions}
)


def sync_dataset_partitions(instance: dg.DagsterInstance, names: Iterable[str]) -> list[str]:
    """Add the dataset keys ``names`` that the instance does not have yet; returns those added."""
    have = set(instance.get_dynamic_partitions(DATASET_PARTITIONS_NAME))
    new = sorted({validate_name(n) for n in names} - have)
    if new:
        instance.add_dynamic_partitions(DATASET_PARTITIONS_NAME, new)
    return new


def dataset_key(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext | dg.OpExecutionContext) -> str:
    return str(context.partition_key)


def dataset_fraction_keys(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[union-attr]
    return keys["dataset"], keys["fraction"]


def multi_key(dataset: str, fraction: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"dataset": dataset, "fraction": fraction})
