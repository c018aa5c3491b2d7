"""S3Transfer against a real S3 protocol server (moto) behind a fault-injecting proxy on loopback."""

import io
import os

import numpy as np
import pytest
import tifffile

from moa_core.data.sources.s3 import S3Transfer, SourceError, make_s3_client, parse_s3_uri
from tests.support.s3_server import FaultProxy, moto_server

BUCKET = "bench-bucket"


@pytest.fixture(scope="module")
def upstream():
    with moto_server() as url:
        c = make_s3_client(url, unsigned=False)
        c.create_bucket(Bucket=BUCKET)
        rng = np.random.default_rng(0)
        for i in range(6):
            c.put_object(Bucket=BUCKET, Key=f"data/obj{i}.bin", Body=rng.bytes(300_000 + i))
        yield url, c


@pytest.fixture
def proxy(upstream):
    with FaultProxy(upstream[0]) as p:
        yield p


def _tr(proxy, **kw):
    kw.setdefault("base_delay_s", 0.01)
    return S3Transfer(make_s3_client(proxy.url, unsigned=False), **kw)


def _gets(proxy, key):
    return [e for e in proxy.log if e[0] == "GET" and e[1].endswith(key)]


def test_concurrent_download_then_cached_rerun(upstream, proxy, tmp_path):
    _, c = upstream
    tr = _tr(proxy, max_workers=4)
    items = [(BUCKET, f"data/obj{i}.bin", tmp_path / f"obj{i}.bin") for i in range(6)]
    stats = tr.download_many(items)
    assert stats.objects == 6 and stats.cached == 0 and stats.bytes == sum(300_000 + i for i in range(6))
    for i in range(6):
        assert (tmp_path / f"obj{i}.bin").read_bytes() == c.get_object(Bucket=BUCKET, Key=f"data/obj{i}.bin")[
            "Body"
        ].read()
    n_get = len([e for e in proxy.log if e[0] == "GET" and "/data/" in e[1]])
    again = tr.download_many(items)
    assert again.cached == 6 and again.bytes == 0
    assert len([e for e in proxy.log if e[0] == "GET" and "/data/" in e[1]]) == n_get  # no GET on a rerun
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [f"obj{i}.bin" for i in range(6)]


def test_changed_object_is_downloaded_again(upstream, proxy, tmp_path):
    _, c = upstream
    tr = _tr(proxy)
    c.put_object(Bucket=BUCKET, Key="data/changing.bin", Body=b"v1" * 1000)
    assert tr.download(BUCKET, "data/changing.bin", tmp_path / "x") is True
    assert tr.download(BUCKET, "data/changing.bin", tmp_path / "x") is False
    c.put_object(Bucket=BUCKET, Key="data/changing.bin", Body=b"v2" * 1000)
    assert tr.download(BUCKET, "data/changing.bin", tmp_path / "x") is True
    assert (tmp_path / "x").read_bytes() == b"v2" * 1000


def test_interrupted_transfer_resumes_with_a_range_request(upstream, proxy, tmp_path):
    _, c = upstream
    full = c.get_object(Bucket=BUCKET, Key="data/obj1.bin")["Body"].read()
    tr = _tr(proxy, max_attempts=1)
    proxy.rules.truncate["obj1.bin"] = 1
    with pytest.raises(SourceError, match=r"s3://bench-bucket/data/obj1.bin"):
        tr.download(BUCKET, "data/obj1.bin", tmp_path / "obj1.bin")
    assert not (tmp_path / "obj1.bin").exists()  # never a half file at dest
    part = tmp_path / "obj1.bin.part"
    assert 0 < part.stat().st_size < len(full)
    have = part.stat().st_size
    proxy.log.clear()
    assert _tr(proxy).download(BUCKET, "data/obj1.bin", tmp_path / "obj1.bin") is True
    gets = _gets(proxy, "obj1.bin")
    assert len(gets) == 1 and gets[0][2] == f"bytes={have}-" and gets[0][4] == len(full) - have
    assert (tmp_path / "obj1.bin").read_bytes() == full and not part.exists()


def test_slowdown_is_retried_with_backoff(proxy, tmp_path):
    tr = _tr(proxy)
    proxy.rules.slowdown["obj2.bin"] = 2
    stats = tr.download_many([(BUCKET, "data/obj2.bin", tmp_path / "o")])
    assert stats.retries == 2 and (tmp_path / "o").stat().st_size == 300_002


def test_truncated_body_is_retried_and_a_persistent_one_fails_cleanly(proxy, tmp_path):
    proxy.rules.truncate["obj3.bin"] = 1
    assert _tr(proxy).read_bytes(BUCKET, "data/obj3.bin").__len__() == 300_003
    proxy.rules.truncate["obj3.bin"] = 99
    with pytest.raises(SourceError, match=r"s3://bench-bucket/data/obj3.bin: failed after 3 attempts"):
        _tr(proxy, max_attempts=3).download(BUCKET, "data/obj3.bin", tmp_path / "o3")
    assert not (tmp_path / "o3").exists()


def test_access_denied_and_missing_key_fail_at_once_and_leave_nothing(proxy, tmp_path):
    proxy.rules.deny.add("obj4.bin")
    tr = _tr(proxy)
    with pytest.raises(SourceError, match=r"s3://bench-bucket/data/obj4.bin: access denied"):
        tr.download(BUCKET, "data/obj4.bin", tmp_path / "o4")
    with pytest.raises(SourceError, match=r"s3://bench-bucket/data/nope.bin: not found"):
        tr.download(BUCKET, "data/nope.bin", tmp_path / "o5")
    with pytest.raises(SourceError, match=r"s3://bench-bucket/data/nope.bin: not found"):
        tr.download_many([(BUCKET, "data/obj5.bin", tmp_path / "ok"), (BUCKET, "data/nope.bin", tmp_path / "o6")])
    assert not [p for p in os.listdir(tmp_path) if p.startswith("o4") or p.startswith("o5") or p.startswith("o6")]
    assert tr.retries == 0


def test_real_lzw_tiff_read_from_memory(gallery):
    endpoint, _, seeded = gallery
    key = next(k for k in seeded["cpg0000"] if k.endswith("ch5sk1fk1fl1.tiff"))
    data = S3Transfer(make_s3_client(endpoint)).read_bytes("cellpainting-gallery", key)
    img = tifffile.imread(io.BytesIO(data))
    assert img.shape == (1080, 1080) and img.dtype == np.uint16


def test_list_prefixes_lists_batches_and_plates(gallery):
    endpoint, _, _ = gallery
    tr = S3Transfer(make_s3_client(endpoint))
    assert tr.list_prefixes("cellpainting-gallery", "cpg0016-jump/") == [
        "cpg0016-jump/source_13/",
        "cpg0016-jump/source_4/",
    ]
    plates = tr.list_prefixes(
        "cellpainting-gallery", "cpg0000-jump-pilot/source_4/workspace/load_data_csv/2020_11_04_CPJUMP1/"
    )
    assert [p.rstrip("/").rsplit("/", 1)[-1] for p in plates] == [
        "BR00117010",
        "BR00117011",
        "BR00117012",
        "BR00117013",
    ]


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("s3://cellpainting-gallery/a/b.tiff", ("cellpainting-gallery", "a/b.tiff")),
        (
            "https://cellpainting-gallery.s3.amazonaws.com/cpg0016/x.parquet",
            ("cellpainting-gallery", "cpg0016/x.parquet"),
        ),
        ("https://s3.amazonaws.com/cellpainting-gallery/k", ("cellpainting-gallery", "k")),
    ],
)
def test_parse_s3_uri(uri, expected):
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["s3:/bucket/key", "s3://bucket", "/local/path", "https://example.org/x"])
def test_parse_s3_uri_rejects(uri):
    with pytest.raises(SourceError, match="not an S3 object URI"):
        parse_s3_uri(uri)
