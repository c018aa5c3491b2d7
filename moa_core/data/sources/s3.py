"""Robust reads from S3 (the public Cell Painting Gallery, or any S3-compatible endpoint).

:class:`S3Transfer` wraps a boto3 S3 client (a plain one from :func:`make_s3_client`, or
dagster-aws ``S3Resource(use_unsigned_session=True).get_client()``) with what a
gallery download needs and boto3's ``download_file`` does not give in one place:

- **retries** with exponential backoff and full jitter on throttling (``SlowDown``,
  ``503``, ``429``...), server errors (5xx), dropped connections and truncated bodies;
  missing keys (404) and access denied (403) fail at once with the ``s3://bucket/key``;
- **atomic, resumable downloads**: bytes stream into ``<dest>.part``; an interrupted
  transfer resumes with a ``Range`` request conditioned on the same ETag (``IfMatch``);
  the file appears at ``dest`` only complete, by rename;
- **a cache keyed by key + size + ETag**: a sidecar ``.<name>.s3meta.json`` records what
  ``dest`` holds, so a rerun downloads nothing and a changed object is fetched again;
- **concurrency**: :meth:`S3Transfer.download_many` runs transfers on a thread pool and
  reports objects, bytes and MB/s.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from moa_core.errors import MoaInputError
from moa_core.storage import write_json_atomic

RETRY_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
    "429",
    "RequestTimeTooSkewed",
}
NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}
DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled"}
CHUNK = 1 << 20


class SourceError(MoaInputError):
    """An object cannot be listed or read: the message names ``s3://bucket/key`` and why."""


class TruncatedObjectError(SourceError):
    """Fewer bytes arrived than the object's Content-Length (retried)."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://b/k``, ``https://b.s3.amazonaws.com/k`` or ``https://s3.amazonaws.com/b/k``."""
    u = urlparse(str(uri))
    if u.scheme == "s3" and u.netloc and u.path.strip("/"):
        return u.netloc, u.path.lstrip("/")
    if u.scheme in ("http", "https") and u.netloc:
        host, path = u.netloc.split(":")[0], u.path.lstrip("/")
        if ".s3." in host or host.endswith(".s3.amazonaws.com"):
            bucket = host.split(".s3.")[0]
            if bucket and path:
                return bucket, path
        if host.startswith("s3.") or host == "s3.amazonaws.com":
            bucket, _, key = path.partition("/")
            if bucket and key:
                return bucket, key
    raise SourceError(f"not an S3 object URI: {uri!r} (expected s3://bucket/key)")


def make_s3_client(
    endpoint_url: str | None = None, *, unsigned: bool = True, region: str = "us-east-1", max_pool_connections: int = 32
):
    """A boto3 S3 client for notebooks: anonymous by default (the gallery is public).

    botocore's own retries are limited to one attempt: :class:`S3Transfer` retries.
    """
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    cfg = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=60,
        **({"signature_version": UNSIGNED} if unsigned else {}),
    )
    kw = (
        {}
        if unsigned
        else {
            "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        }
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=cfg, **kw)


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class TransferStats:
    """What a batch of downloads did."""

    objects: int = 0
    bytes: int = 0
    seconds: float = 0.0
    cached: int = 0
    retries: int = 0
    failed: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_metadata(self) -> dict:
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
            "MB_per_s": round(self.mb_per_s, 2),
            "cached_objects": self.cached,
            "retries": self.retries,
            "failed": self.failed,
        }


def _code(exc: Exception) -> str:
    resp = getattr(exc, "response", None) or {}
    err = resp.get("Error", {}) if isinstance(resp, dict) else {}
    code = str(err.get("Code", ""))
    status = str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", "")) if isinstance(resp, dict) else ""
    return code or status


def _strip(etag: str | None) -> str:
    return (etag or "").strip('"')


@dataclass
class S3Transfer:
    """Listing, reading and downloading S3 objects robustly (see the module docstring)."""

    client: object
    max_workers: int = 16
    max_attempts: int = 6
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    retries: int = field(default=0, init=False)

    # ---- retry policy ---------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], object]):
        """Run ``fn`` with retries on transient errors; SourceError naming ``what`` otherwise."""
        from botocore.exceptions import BotoCoreError, ClientError

        last: Exception | None = None
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except ClientError as exc:
                code = _code(exc)
                if code in NOT_FOUND:
                    raise SourceError(f"{what}: not found ({code})") from None
                if code in DENIED:
                    raise SourceError(f"{what}: access denied ({code})") from None
                if code not in RETRY_CODES and not code.startswith("5"):
                    raise SourceError(f"{what}: {code}: {exc}") from None
                last = exc
            except (BotoCoreError, TruncatedObjectError, ConnectionError, OSError) as exc:
                last = exc
            if attempt + 1 < self.max_attempts:
                with self._lock:
                    self.retries += 1
                time.sleep(random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt)))
        raise SourceError(f"{what}: failed after {self.max_attempts} attempts: {type(last).__name__}: {last}")

    # ---- metadata -------------------------------------------------------------------
    def head(self, bucket: str, key: str) -> ObjectInfo:
        r = self._call(f"s3://{bucket}/{key}", lambda: self.client.head_object(Bucket=bucket, Key=key))
        return ObjectInfo(bucket, key, int(r["ContentLength"]), _strip(r.get("ETag")))

    def list_objects(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        token = None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            r = self._call(f"s3://{bucket}/{prefix} (list)", lambda kw=kw: self.client.list_objects_v2(**kw))
            out += [ObjectInfo(bucket, o["Key"], int(o["Size"]), _strip(o.get("ETag"))) for o in r.get("Contents", [])]
            if not r.get("IsTruncated"):
                return out
            token = r["NextContinuationToken"]

    def list_prefixes(self, bucket: str, prefix: str) -> list[str]:
        """The "folders" one level below ``prefix`` (``Delimiter="/"``), full prefixes ending in ``/``."""
        out: list[str] = []
        token = None
        while True:
            kw = {
                "Bucket": bucket,
                "Prefix": prefix,
                "Delimiter": "/",
                **({"ContinuationToken": token} if token else {}),
            }
            r = self._call(f"s3://{bucket}/{prefix} (list)", lambda kw=kw: self.client.list_objects_v2(**kw))
            out += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
            if not r.get("IsTruncated"):
                return sorted(out)
            token = r["NextContinuationToken"]

    # ---- reads ----------------------------------------------------------------------
    def _get_stream(
        self, bucket: str, key: str, sink, *, start: int = 0, etag: str | None = None, learn: dict | None = None
    ) -> int:
        """One GET (from byte ``start``) streamed into ``sink.write``; returns bytes written; checks length.

        ``learn`` receives the object's ``etag`` and total ``size`` from the response headers
        before the body is read (a fresh download needs no HEAD).
        """
        kw = {"Bucket": bucket, "Key": key}
        if start:
            kw["Range"] = f"bytes={start}-"
        if etag:
            kw["IfMatch"] = etag
        r = self.client.get_object(**kw)
        expected = int(r["ContentLength"])
        if learn is not None:
            total = str(r.get("ContentRange", "")).rpartition("/")[2]
            learn["etag"] = _strip(r.get("ETag"))
            learn["size"] = int(total) if total.isdigit() else start + expected
        n = 0
        body = r["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK):
                sink.write(chunk)
                n += len(chunk)
        finally:
            body.close()
        if n != expected:
            raise TruncatedObjectError(f"s3://{bucket}/{key}: got {n} of {expected} bytes")
        return n

    def read_bytes(self, bucket: str, key: str) -> bytes:
        """The whole object in memory (no local copy), verified against its Content-Length."""
        import io

        def once() -> bytes:
            buf = io.BytesIO()
            self._get_stream(bucket, key, buf)
            return buf.getvalue()

        return self._call(f"s3://{bucket}/{key}", once)

    # ---- downloads ------------------------------------------------------------------
    @staticmethod
    def _sidecar(dest: Path) -> Path:
        return dest.with_name(f".{dest.name}.s3meta.json")

    @staticmethod
    def _part(dest: Path) -> tuple[Path, Path]:
        return dest.with_name(dest.name + ".part"), dest.with_name(f".{dest.name}.part.json")

    def is_cached(self, dest: Path, info: ObjectInfo) -> bool:
        """``dest`` holds exactly ``info``'s object (size and ETag recorded by a completed download)."""
        side = self._sidecar(dest)
        if not dest.is_file() or not side.is_file() or dest.stat().st_size != info.size:
            return False
        try:
            rec = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return rec.get("etag") == info.etag and rec.get("key") == info.key and rec.get("bucket") == info.bucket

    def download(self, bucket: str, key: str, dest: str | os.PathLike, *, info: ObjectInfo | None = None) -> bool:
        """Download one object to ``dest``; True if bytes were transferred, False on a cache hit."""
        return self._download(bucket, key, Path(dest), info)[0]

    def _download(self, bucket: str, key: str, dest: Path, info: ObjectInfo | None) -> tuple[bool, int]:
        part, part_meta = self._part(dest)
        if info is None and (dest.exists() or part.exists()):
            info = self.head(bucket, key)  # something local to validate or resume: ask for the ETag first
        if info is not None and self.is_cached(dest, info):
            return False, 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        known = {"etag": info.etag, "size": info.size} if info is not None else {}
        if info is not None:
            try:
                resume_ok = part.is_file() and json.loads(part_meta.read_text()).get("etag") == info.etag
            except (OSError, json.JSONDecodeError):
                resume_ok = False
            if not resume_ok or part.stat().st_size > info.size:
                part.unlink(missing_ok=True)
                write_json_atomic({"bucket": bucket, "key": key, "etag": info.etag}, part_meta)
        else:
            part.unlink(missing_ok=True)

        def once() -> int:
            start = part.stat().st_size if part.is_file() else 0
            if known and start >= known["size"]:
                return 0
            learn: dict = {}
            with open(part, "ab") as fh:
                try:
                    return self._get_stream(bucket, key, fh, start=start, etag=known.get("etag") or None, learn=learn)
                finally:
                    fh.flush()
                    if not known and learn:  # a fresh download learns the ETag from its first response
                        known.update(learn)
                        write_json_atomic({"bucket": bucket, "key": key, "etag": learn["etag"]}, part_meta)

        try:
            moved = self._call(f"s3://{bucket}/{key}", once)
            if not part.exists():
                part.touch()
            if part.stat().st_size != known["size"]:
                raise TruncatedObjectError(f"s3://{bucket}/{key}: {part.stat().st_size} of {known['size']} bytes")
            os.replace(part, dest)
            write_json_atomic(
                {"bucket": bucket, "key": key, "size": known["size"], "etag": known["etag"]}, self._sidecar(dest)
            )
        except SourceError as exc:
            # a missing or forbidden object leaves nothing behind; an exhausted retry keeps
            # the .part (never at dest) so the next attempt resumes where this one stopped
            if ": not found" in str(exc) or ": access denied" in str(exc):
                part.unlink(missing_ok=True)
                part_meta.unlink(missing_ok=True)
            raise
        part_meta.unlink(missing_ok=True)
        return True, moved

    def download_many(
        self,
        items: Sequence[tuple[str, str, str | os.PathLike]],
        *,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> TransferStats:
        """Download ``(bucket, key, dest)`` items concurrently; the first failure is re-raised (named)."""
        stats = TransferStats()
        t0 = time.monotonic()
        r0 = self.retries
        done = 0
        lock = threading.Lock()

        def one(item: tuple[str, str, str | os.PathLike]) -> None:
            nonlocal done
            b, k, d = item
            moved, n = self._download(b, k, Path(d), None)
            with lock:
                done += 1
                stats.objects += 1
                stats.bytes += n
                stats.cached += 0 if moved else 1
                if progress:
                    progress(done, len(items), stats.bytes)

        if items:
            with ThreadPoolExecutor(max(1, min(self.max_workers, len(items)))) as pool:
                futs = [pool.submit(one, it) for it in items]
                finished, _ = wait(futs, return_when=FIRST_EXCEPTION)
                errors = [f.exception() for f in futs if f.done() and f.exception() is not None]
                if errors:
                    for f in futs:
                        f.cancel()
                    stats.failed = len(errors)
                    raise errors[0]
        stats.seconds = time.monotonic() - t0
        stats.retries = self.retries - r0
        return stats
