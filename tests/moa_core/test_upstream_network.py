"""MP (paper weights): the project's network computes what efficientnet_pytorch computes, on real CPJUMP1 fields.

efficientnet_pytorch (PyPI 0.7.1, the version upstream vendored) is a test dependency: a randomly
initialised 5-channel B0, saved exactly as upstream saves it (``torch.save(model.state_dict())``, with
and without DataParallel's ``module.`` prefix), is loaded by the project and compared with
efficientnet_pytorch's own forward on full 1080² fields.
"""

from __future__ import annotations

import glob
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")

from moa_core.errors import SchemaError  # noqa: E402
from moa_core.model.network import build_model, embed_and_logits  # noqa: E402
from moa_core.model.pretrained import (  # noqa: E402
    STUDY_CHANNEL_ORDER,
    CheckpointError,
    download_checkpoint,
    load_paper_model,
    paper_checkpoints,
    upstream_channel_stats,
    upstream_input,
    upstream_scale,
    verify_checkpoint,
)
from moa_core.model.upstream import convert_upstream_state_dict, static_same_padding  # noqa: E402
from tests.support.upstream_model import input_sensitive_upstream, pooled_spread  # noqa: E402

STAIN_CHANNEL = {"DNA": 5, "ER": 4, "RNA": 3, "AGP": 2, "Mito": 1}  # cpg0000 / source_4 file numbers
TOL = 1e-4


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def real_fields(shared_dir) -> torch.Tensor:
    """The 4 real CPJUMP1 fields (1080², uint16) as ``(4, 5, H, W)`` raw intensities in the project's order."""
    import tifffile

    fields = []
    for ch1 in sorted(glob.glob(str(shared_dir / "data/cpjump1/images/*/*-ch1*.tiff"))):
        fields.append(
            np.stack(
                [
                    tifffile.imread(ch1.replace("-ch1", f"-ch{STAIN_CHANNEL[s]}"))
                    for s in ("DNA", "ER", "RNA", "AGP", "Mito")
                ]
            )
        )
    assert len(fields) == 4 and fields[0].shape == (5, 1080, 1080) and fields[0].dtype == np.uint16
    return torch.from_numpy(np.stack(fields).astype(np.float32))


@pytest.fixture(scope="module")
def upstream_x(real_fields) -> torch.Tensor:
    return upstream_input(
        real_fields, STUDY_CHANNEL_ORDER["JUMP1"], [0.12, 0.09, 0.15, 0.1, 0.2], [0.1, 0.08, 0.12, 0.09, 0.15]
    )


@pytest.fixture(scope="module")
def upstream(upstream_x) -> torch.nn.Module:
    """efficientnet_pytorch's B0 as upstream builds it: random weights, batch norm calibrated on the real fields
    so that its pooled features depend on the field (see ``tests/support/upstream_model.py``)."""
    torch.set_num_threads(2)
    return input_sensitive_upstream(upstream_x)


@pytest.fixture(scope="module")
def reference(upstream, upstream_x):
    """Upstream's input for the real fields, and efficientnet_pytorch's pooled features and logits on it."""
    x = upstream_x
    with torch.no_grad():
        maps = upstream.extract_features(x)
        feats = upstream._avg_pooling(maps).flatten(1)
        logits = upstream(x)
    return x, maps.shape, feats, logits


@pytest.mark.parametrize("parallel", [False, True], ids=["plain", "module-prefix"])
def test_paper_checkpoint_gives_upstreams_features_on_real_fields(upstream, reference, tmp_path, parallel):
    x, _, feats, logits = reference
    state = (torch.nn.DataParallel(upstream) if parallel else upstream).state_dict()
    assert any(k.startswith("module.") for k in state) == parallel
    path = tmp_path / "model_best.dat"
    torch.save(state, path)  # exactly upstream's save (classification.py)

    model = load_paper_model(path, _sha(path))
    with torch.no_grad():
        ours, our_logits = embed_and_logits(model, x)
    assert ours.shape == (4, 1280)
    assert pooled_spread(upstream, x) > 1e-3  # the features depend on the field, so agreement means something
    assert float((ours - feats).abs().max()) <= TOL
    assert float((our_logits - logits).abs().max()) <= TOL


def test_torchvision_b0_with_the_same_weights_is_not_equivalent(upstream, reference):
    """The guard: a plain key mapping onto torchvision's symmetric padding computes something else."""
    x, up_maps, feats, _ = reference
    naive = build_model(11)
    naive.load_state_dict(convert_upstream_state_dict(upstream.state_dict(), naive))
    naive.eval()
    with torch.no_grad():
        maps = naive.features(x)
        pooled, _ = embed_and_logits(naive, x)
    assert tuple(up_maps[-2:]) == (33, 33) and tuple(maps.shape[-2:]) == (34, 34)  # the 135-px stage: 67 vs 68
    assert float((pooled - feats).abs().max()) > TOL


def test_static_same_padding_is_efficientnet_pytorchs():
    assert static_same_padding(224, 3, 2) == (0, 1)
    assert static_same_padding(56, 5, 2) == (1, 2)
    assert static_same_padding(112, 3, 1) == (1, 1)
    assert static_same_padding(14, 5, 1) == (2, 2)
    assert static_same_padding(135, 3, 2) == (1, 1)  # what a dynamic padding would do at 1080 px
    assert static_same_padding(7, 1, 1) == (0, 0)


def test_upstream_scaling_and_channel_statistics_definitions():
    raw = torch.tensor([[[[10.0, 20.0], [30.0, 50.0]]]]).repeat(1, 5, 1, 1)
    raw[0, 4] *= 2
    y = upstream_scale(raw)
    assert torch.allclose(y[0, 0], torch.tensor([[0.0, 10.0], [20.0, 40.0]]) / (50 + 1e-6))
    # reordering: JUMP1 checkpoints read Mito first (the project's last channel)
    x = upstream_input(raw, STUDY_CHANNEL_ORDER["JUMP1"], [0.0] * 5, [1.0] * 5)
    assert torch.allclose(x[0, 0], upstream_scale(raw[:, 4:5])[0, 0])
    mean, sd = upstream_channel_stats([raw[0], raw[0]], STUDY_CHANNEL_ORDER["lincs"])
    twice = (y[0, 0] / (y[0, 0].max() + 1e-6)).double()  # upstream scaled the scaled fields once more
    assert mean[0] == pytest.approx(float(twice.mean()), rel=1e-6)
    assert sd[0] == pytest.approx(float(twice.std(unbiased=False)), rel=1e-6)


def test_catalogue_knows_the_published_checkpoints():
    known = paper_checkpoints()
    ck = known["jump1_moa"]
    assert ck.sha256 == "cc0eedc785f582db16550f74d6049830ea6963915c04595ca80f830efe7c9474"
    assert ck.size == 17_235_249 and ck.run == "Jun-22-2022-08:49:11"
    assert ck.channel_order == ("Mito", "AGP", "RNA", "ER", "DNA")
    assert known["lincs_moa"].channel_order == ("DNA", "ER", "RNA", "AGP", "Mito")
    assert all(c.url.startswith("https://media.githubusercontent.com/media/pfizer-opensource/") for c in known.values())


def test_bad_checkpoint_files_are_named(upstream, tmp_path):
    pointer = tmp_path / "pointer.dat"
    pointer.write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:cc0eedc785f582db16550f74d6049830ea6963915c04595ca80f830efe7c9474\nsize 17235249\n"
    )
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        verify_checkpoint(pointer, "cc0eedc785f582db16550f74d6049830ea6963915c04595ca80f830efe7c9474")
    good = tmp_path / "model_best.dat"
    torch.save(upstream.state_dict(), good)
    with pytest.raises(CheckpointError, match="bytes, expected 1 "):
        verify_checkpoint(good, _sha(good), size=1)
    with pytest.raises(CheckpointError, match="not that checkpoint"):
        verify_checkpoint(good, "0" * 64)
    with pytest.raises(CheckpointError, match="does not exist"):
        verify_checkpoint(tmp_path / "missing.dat", "0" * 64)
    trunc = tmp_path / "truncated.dat"
    trunc.write_bytes(good.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_paper_model(trunc, _sha(trunc))
    other = tmp_path / "torchvision.dat"
    torch.save(build_model(3).state_dict(), other)
    with pytest.raises(SchemaError, match="not an efficientnet_pytorch"):
        load_paper_model(other, _sha(other))


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.dat"
    torch.save({"_fc.weight": torch.zeros(1), "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_paper_model(path, _sha(path))


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``; ``/short/<name>`` promises more bytes than it sends."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.startswith("/short/"):
                data = (root / self.path.removeprefix("/short/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.close()
                return
            super().do_GET()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_is_verified_and_atomic(upstream, http_server, tmp_path):
    root, base = http_server
    torch.save(upstream.state_dict(), root / "model_best.dat")
    sha, size = _sha(root / "model_best.dat"), (root / "model_best.dat").stat().st_size
    dest = tmp_path / "weights" / "model_best.dat"

    with pytest.raises(CheckpointError, match="expected 0000"):
        download_checkpoint(f"{base}/model_best.dat", dest, "0" * 64, size)
    with pytest.raises(CheckpointError, match="download of .* failed|bytes, expected"):
        download_checkpoint(f"{base}/short/model_best.dat", dest, sha, size)
    with pytest.raises(CheckpointError, match="failed"):
        download_checkpoint(f"{base}/absent.dat", dest, sha, size)
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # nothing half-written

    assert download_checkpoint(f"{base}/model_best.dat", dest, sha, size) == dest
    assert _sha(dest) == sha
    (root / "model_best.dat").unlink()  # a verified file is not downloaded again
    assert download_checkpoint(f"{base}/model_best.dat", dest, sha, size) == dest
