"""New JUMP releases: the release manifest (``profile_index.json``) and new source/batch prefixes.

A *release candidate* is a published-profile dataset the catalogue does not know yet,
with a *version* (the manifest entry's ETag, or the prefix itself) that says when it
changed. The release sensor registers candidates as catalogue entries and dataset
partitions and requests one run per (dataset, version); this module holds the logic
and no Dagster.

Manifest entries look like ``{"subset": "compound", "url": "https://cellpainting-gallery.
s3.amazonaws.com/cpg0016-jump-assembled/source_all/workspace/profiles_assembled/COMPOUND/
v1.0/profiles_var_mad_int_featselect_harmony.parquet", "etag": "c937..."}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from moa_core.data.sources.s3 import S3Transfer, SourceError, parse_s3_uri
from moa_core.errors import SchemaError

DEFAULT_MANIFEST = (
    "s3://cellpainting-gallery/cpg0016-jump-assembled/source_all/workspace/profiles_assembled/profile_index.json"
)
DEFAULT_PROJECT = "cpg0016-jump"


@dataclass(frozen=True)
class ReleaseCandidate:
    name: str  # dataset (partition) key
    version: str  # changes when the data changes (ETag, or the prefix)
    entry: dict  # raw catalogue entry (moa_core.datasets.entry_from_dict)


def _key_part(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_.-")


def read_manifest(transfer: S3Transfer, uri: str = DEFAULT_MANIFEST) -> tuple[str, list[dict]]:
    """(ETag of the manifest, its entries); a malformed manifest is a :class:`SchemaError` naming the URI."""
    bucket, key = parse_s3_uri(uri)
    etag = transfer.head(bucket, key).etag
    try:
        entries = json.loads(transfer.read_bytes(bucket, key))
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{uri}: release manifest is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise SchemaError(f"{uri}: release manifest must be a list of entries")
    for i, e in enumerate(entries):
        missing = [k for k in ("subset", "url", "etag") if not isinstance(e, dict) or not str(e.get(k) or "").strip()]
        if missing:
            raise SchemaError(f"{uri}: entry {i} lacks {missing}")
    return etag, entries


def manifest_candidates(entries: list[dict]) -> list[ReleaseCandidate]:
    """One profile dataset per manifest entry: ``cpg0016_<subset>_<version folder>``."""
    out = []
    for e in entries:
        bucket, key = parse_s3_uri(e["url"])
        parts = key.split("/")
        version = parts[-2] if len(parts) >= 2 else "latest"
        name = _key_part(f"cpg0016_{e['subset']}_{version}")
        out.append(
            ReleaseCandidate(
                name,
                str(e["etag"]),
                {
                    "kind": "profiles",
                    "source": "gallery",
                    "layout": "cpg0016",
                    "bucket": bucket,
                    "project": parts[0],
                    "source_name": parts[1] if len(parts) > 1 else "source_all",
                    "batch": version,
                    "release": f"s3://{bucket}/{key}",
                    "etag": str(e["etag"]),
                    "annotations": "cpg0016",
                    "description": f"JUMP assembled release {e['subset']} {version} ({parts[-1]})",
                },
            )
        )
    return out


def batch_candidates(
    transfer: S3Transfer, bucket: str = "cellpainting-gallery", project: str = DEFAULT_PROJECT
) -> list[ReleaseCandidate]:
    """One profile dataset per ``<project>/<source>/workspace/profiles/<batch>/`` prefix."""
    out = []
    for src in transfer.list_prefixes(bucket, f"{project}/"):
        source = src.rstrip("/").rsplit("/", 1)[-1]
        for b in transfer.list_prefixes(bucket, f"{project}/{source}/workspace/profiles/"):
            batch = b.rstrip("/").rsplit("/", 1)[-1]
            name = _key_part(f"{project.split('-')[0]}_{source}_{batch}")
            out.append(
                ReleaseCandidate(
                    name,
                    b,
                    {
                        "kind": "profiles",
                        "source": "gallery",
                        "layout": "cpg0016",
                        "bucket": bucket,
                        "project": project,
                        "source_name": source,
                        "batch": batch,
                        "annotations": "cpg0016",
                        "description": f"JUMP {project} {source} {batch} per-plate CellProfiler profiles",
                    },
                )
            )
    return out


def new_candidates(candidates: list[ReleaseCandidate], seen: Mapping[str, str]) -> list[ReleaseCandidate]:
    """Candidates whose name is new or whose version changed since ``seen`` (name -> version)."""
    names = [c.name for c in candidates]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(f"two releases map to the same dataset name(s) {dup}")
    return [c for c in candidates if seen.get(c.name) != c.version]
