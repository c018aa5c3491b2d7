"""A real S3 endpoint on loopback (moto's server mode), a fault/latency proxy in front of it,
and the Cell Painting Gallery fixture: the real files of ``../shared/data`` under the gallery's keys.

Used by the tests and by ``bench/bench_download.py``; nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

BUCKET = "cellpainting-gallery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    """Start moto's threaded S3 server on a free loopback port; returns ``(server, endpoint_url)``."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    server, url = start_moto()
    try:
        yield url
    finally:
        server.stop()


@dataclass
class FaultRules:
    """Faults injected by :class:`FaultProxy`, matched by a substring of the request path (the key)."""

    latency_s: float = 0.0
    slowdown: dict[str, int] = field(default_factory=dict)  # key substring -> remaining 503 SlowDown replies
    deny: set[str] = field(default_factory=set)  # key substrings answered 403 AccessDenied
    truncate: dict[str, int] = field(default_factory=dict)  # key substring -> remaining truncated bodies


_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{msg}</Message><Key>{key}</Key></Error>'
)


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint, injecting latency and faults.

    ``log`` records ``(method, key, range header, status, body bytes sent)`` per request.
    """

    def __init__(self, upstream: str, rules: FaultRules | None = None):
        self.upstream = urlparse(upstream)
        self.rules = rules or FaultRules()
        self.log: list[tuple[str, str, str | None, int, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _take(self, table: dict[str, int], key: str) -> bool:
                with proxy._lock:
                    for sub, n in table.items():
                        if sub in key and n > 0:
                            table[sub] = n - 1
                            return True
                return False

            def _reply_error(self, status: int, code: str, key: str) -> None:
                body = _ERROR_XML.format(code=code, msg=code, key=key).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                proxy._record(self.command, key, self.headers.get("Range"), status, len(body))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _forward(self) -> None:
                if proxy.rules.latency_s:
                    time.sleep(proxy.rules.latency_s)
                key = unquote(urlparse(self.path).path)
                if any(sub in key for sub in proxy.rules.deny):
                    return self._reply_error(403, "AccessDenied", key)
                if self._take(proxy.rules.slowdown, key):
                    return self._reply_error(503, "SlowDown", key)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                # one upstream keep-alive connection per client connection, as a real S3 front end keeps
                if getattr(self, "_up", None) is None:
                    self._up = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                try:
                    self._up.request(self.command, self.path, body=body, headers=headers)
                    resp = self._up.getresponse()
                except (http.client.HTTPException, OSError):
                    self._up.close()
                    self._up = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                    self._up.request(self.command, self.path, body=body, headers=headers)
                    resp = self._up.getresponse()
                data = resp.read()
                truncate = self.command == "GET" and resp.status in (200, 206) and self._take(proxy.rules.truncate, key)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # a HEAD reply has no body but the object's Content-Length
                length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                if truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                sent = data[: len(data) // 2] if truncate else data
                # logged before the reply goes out, so a client that has its answer sees the entry
                proxy._record(
                    self.command,
                    key,
                    self.headers.get("Range"),
                    resp.status,
                    0 if self.command == "HEAD" else len(sent),
                )
                if self.command != "HEAD":
                    self.wfile.write(sent)
                if truncate:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # socketserver's default backlog of 5 drops SYNs of concurrent clients

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, method: str, key: str, rng: str | None, status: int, n: int) -> None:
        with self._lock:
            self.log.append((method, key, rng, status, n))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- the gallery fixture -----------------------------------------------------------------
CPG0000 = "cpg0000-jump-pilot/source_4"
CPJUMP1_BATCH = "2020_11_04_CPJUMP1"
#: The shared/ fields do not say which of BR00117010-13 each came from, nor the acquisition
#: timestamp of the folder: this assignment and the timestamp are the fixture's own.
CPJUMP1_FIELDS = [  # (plate, compound folder, well, rRRcCC, load_data file name)
    ("BR00117010", "DMSO", "D14", "r04c14", "load_data.csv"),
    ("BR00117011", "AMG900", "N09", "r14c09", "load_data.csv.gz"),
    ("BR00117012", "FK-866", "D08", "r04c08", "load_data_with_illum.parquet"),
    ("BR00117013", "FK-866", "L09", "r12c09", "load_data_with_illum.csv"),
]
CPG0000_CHANNELS = {1: "Mito", 2: "AGP", 3: "RNA", 4: "ER", 5: "DNA"}
MANIFEST_KEY = "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/profile_index.json"


def illumination_function(shape: tuple[int, int] = (1080, 1080), seed: int = 0) -> np.ndarray:
    """A smooth CellProfiler-style illumination function (vignette), robust minimum 1, max ~1.6.

    Generated: the real ``_Illum*.npy`` files are not in shared/.
    """
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    rng = np.random.default_rng(seed)
    cy, cx = shape[0] * rng.uniform(0.4, 0.6), shape[1] * rng.uniform(0.4, 0.6)
    g = np.exp(-(((yy - cy) / shape[0]) ** 2 + ((xx - cx) / shape[1]) ** 2) * 2.0)
    g = (g - g.min()) / (g.max() - g.min())
    return (1.0 + 0.6 * g).astype(np.float32)


def _put(client, key: str, body: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=key, Body=body, ACL="public-read")  # the gallery is public


def _table_bytes(df: pd.DataFrame, name: str) -> bytes:
    buf = io.BytesIO()
    if name.endswith(".parquet"):
        df.to_parquet(buf, index=False)
    elif name.endswith(".csv.gz"):
        df.to_csv(buf, index=False, compression={"method": "gzip", "mtime": 0})
    else:
        buf.write(df.to_csv(index=False).encode())
    return buf.getvalue()


def seed_gallery(client, shared_dir: Path) -> dict:
    """Create the bucket and upload the real shared/ files under the gallery's real key layout."""
    data = Path(shared_dir) / "data"
    client.create_bucket(Bucket=BUCKET)
    seeded: dict[str, list[str]] = {"cpg0000": [], "cpg0004": [], "cpg0016": []}
    for plate, compound, well, rc, ld_name in CPJUMP1_FIELDS:
        folder = f"{CPG0000}/images/{CPJUMP1_BATCH}/images/{plate}__2020-11-05T00_00_00-Measurement1/Images/"
        row = {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": 5}
        for n, stain in CPG0000_CHANNELS.items():
            name = f"{rc}f05p01-ch{n}sk1fk1fl1.tiff"
            _put(client, folder + name, (data / "cpjump1" / "images" / compound / name).read_bytes())
            seeded["cpg0000"].append(folder + name)
            row[f"FileName_Orig{stain}"], row[f"PathName_Orig{stain}"] = name, f"s3://{BUCKET}/{folder}"
        if "illum" in ld_name:
            ill_folder = f"{CPG0000}/images/{CPJUMP1_BATCH}/illum/{plate}/"
            for i, stain in enumerate(CPG0000_CHANNELS.values()):
                buf = io.BytesIO()
                np.save(buf, illumination_function(seed=i), allow_pickle=False)
                _put(client, f"{ill_folder}{plate}_Illum{stain}.npy", buf.getvalue())
                row[f"FileName_Illum{stain}"] = f"{plate}_Illum{stain}.npy"
                row[f"PathName_Illum{stain}"] = f"s3://{BUCKET}/{ill_folder}"
        key = f"{CPG0000}/workspace/load_data_csv/{CPJUMP1_BATCH}/{plate}/{ld_name}"
        _put(client, key, _table_bytes(pd.DataFrame([row]), ld_name))
        seeded["cpg0000"].append(key)
    lincs = data / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"
    key = (
        "cpg0004-lincs/broad/workspace/profiles/2016_04_01_a549_48hr_batch1/SQ00015054/"
        "SQ00015054_normalized_feature_select.csv.gz"
    )
    _put(client, key, lincs.read_bytes())
    seeded["cpg0004"].append(key)
    per_plate = sorted((data / "cpg0016").glob("source_*/workspace/profiles/*/*/*.parquet"))
    for p in per_plate:
        key = "cpg0016-jump/" + p.relative_to(data / "cpg0016").as_posix()
        _put(client, key, p.read_bytes())
        seeded["cpg0016"].append(key)
    key = "cpg0016-jump/source_4/workspace/load_data_csv/2021_08_23_Batch12/BR00126114/load_data_with_illum.parquet"
    _put(client, key, (data / "cpg0016" / "BR00126114_load_data_with_illum.parquet").read_bytes())
    seeded["cpg0016"].append(key)  # its images are not in shared/: used for the missing-image error
    manifest = json.loads((data / "cpg0016" / "profile_index.json").read_text())
    _put(client, MANIFEST_KEY, (data / "cpg0016" / "profile_index.json").read_bytes())
    seeded["cpg0016"].append(MANIFEST_KEY)
    compound = next(e for e in manifest if e["subset"] == "compound")
    # the real assembled release is hundreds of MB: here, the two real per-plate files concatenated
    assembled = pd.concat([pd.read_parquet(p) for p in per_plate], ignore_index=True)
    key = compound["url"].split(".amazonaws.com/", 1)[1]
    _put(client, key, _table_bytes(assembled, key))
    seeded["cpg0016"].append(key)
    seeded["manifest"] = [MANIFEST_KEY]
    return seeded
