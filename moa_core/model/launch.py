"""One entry point for training, in this process or under ``torchrun`` on several processes/GPUs.

    python -m moa_core.model.launch SPEC.json                              # one process
    torchrun --standalone --nproc_per_node 4 -m moa_core.model.launch SPEC.json  # DDP

A spec (:class:`TrainSpec`, JSON) names the image store, the training and validation
fields (parquet files with ``Metadata_Plate, Metadata_Well, Metadata_Site, label`` and,
for validation, ``group`` = the well), the classes, the config and the checkpoint path.
Under torchrun every rank initializes the process group from the environment
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...; NCCL on CUDA, gloo on CPU), trains its
share (:func:`moa_core.model.train.train_classifier`), and rank 0 alone writes the
checkpoint, the resume state and the result JSON (``<checkpoint>.result.json``).
Rank 0 prints one ``EPOCH {json}`` line per epoch, which :func:`launch_training`
forwards to its ``on_epoch`` callback (the Dagster asset's log).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from moa_core.model.config import TrainConfig

if TYPE_CHECKING:
    from moa_core.model.train import TrainResult

EPOCH_PREFIX = "EPOCH "
_EXC = re.compile(r"^(\[rank\d+\]:\s*)?[A-Za-z_.]*(Error|Exception): ")


@dataclass
class TrainSpec:
    store: str
    train_fields: str
    val_fields: str
    classes: list[str]
    config: dict
    checkpoint: str
    exclude_class: int | None = None
    channel_mean: list[float] | None = None
    channel_sd: list[float] | None = None
    source: str = "fields"  # "fields" (whole fields) or "cells" (DP-recipe single-cell crops)
    cell_crop: int = 96
    init_weights: str | None = None  # a user's pretrained state dict to start from (weights_only)

    def write(self, path: str | os.PathLike) -> Path:
        from moa_core.storage import write_json_atomic

        return write_json_atomic(dataclasses.asdict(self), path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> TrainSpec:
        return cls(**json.loads(Path(path).read_text()))

    @property
    def result_path(self) -> Path:
        return Path(self.checkpoint).with_suffix(".result.json")


def write_fields(df: pd.DataFrame, path: str | os.PathLike) -> str:
    from moa_core.storage import write_parquet_atomic

    return str(write_parquet_atomic(df.reset_index(drop=True), path))


def _config(d: dict) -> TrainConfig:
    return TrainConfig.from_dict(d)


def _source(spec: TrainSpec, fields: pd.DataFrame):
    from moa_core.model.loader import StoreFields

    if spec.source == "cells":
        from moa_core.model.dp_recipe import CellCrops

        return CellCrops(spec.store, fields, spec.cell_crop)
    return StoreFields(spec.store, fields)


def run_spec(spec: TrainSpec, on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train as ``spec`` says in this process (one rank of a torchrun job when its environment is set)."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from moa_core.model.train import train_classifier

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = _config(spec.config)
    own_group = False
    if world > 1 and not dist.is_initialized():
        from datetime import timedelta

        backend = "nccl" if cfg.resolved_device().type == "cuda" else "gloo"
        # rank 0 validates and saves while the others wait at a barrier: allow long validations
        dist.init_process_group(backend=backend, timeout=timedelta(hours=2))
        own_group = True
    try:
        tr, va = pd.read_parquet(spec.train_fields), pd.read_parquet(spec.val_fields)
        mean = None if spec.channel_mean is None else torch.tensor(spec.channel_mean)
        sd = None if spec.channel_sd is None else torch.tensor(spec.channel_sd)
        init = None
        if spec.init_weights:
            from moa_core.model.dp_recipe import load_pretrained_weights

            init = load_pretrained_weights(spec.init_weights, num_classes=len(spec.classes)).state_dict()
        res = train_classifier(
            _source(spec, tr),
            tr["label"].to_numpy(np.int64),
            _source(spec, va),
            va["label"].to_numpy(np.int64),
            spec.classes,
            cfg,
            spec.checkpoint,
            on_epoch=on_epoch,
            val_groups=va["group"].astype(str).to_numpy(),
            exclude_class=spec.exclude_class,
            channel_mean=mean,
            channel_sd=sd,
            extra={"cell_crop": spec.cell_crop} if spec.source == "cells" else None,
            init_state=init,
        )
        rank = dist.get_rank() if dist.is_initialized() else 0
        if rank == 0:
            from moa_core.storage import write_json_atomic

            out = dataclasses.asdict(res)
            out["checkpoint_path"] = str(res.checkpoint_path)
            write_json_atomic(out, spec.result_path)
        return res
    finally:
        if own_group:
            dist.destroy_process_group()


def read_result(path: str | os.PathLike) -> TrainResult:
    from moa_core.model.train import TrainResult

    d = json.loads(Path(path).read_text())
    d["checkpoint_path"] = Path(d["checkpoint_path"])
    return TrainResult(**d)


def launch_training(
    spec: TrainSpec,
    spec_path: str | os.PathLike,
    *,
    nproc: int = 1,
    on_epoch: Callable[[dict], None] | None = None,
    on_line: Callable[[str], None] | None = None,
    isolated: bool = False,
) -> TrainResult:
    """Train with ``nproc`` processes: in this process for 1, else ``torchrun --standalone`` on this entry point.

    ``isolated``: run under ``torchrun`` in a subprocess even with one process, for a caller that must not
    start worker processes itself (a Celery pool process: daemonic, it cannot start DataLoader workers or
    DDP ranks; the torchrun subprocess can).
    """
    spec.write(spec_path)
    nproc = max(1, int(nproc))
    if nproc == 1 and not isolated:
        return run_spec(spec, on_epoch)
    Path(spec.result_path).unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "moa_core.model.launch",
        str(spec_path),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,
    )
    tail: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(EPOCH_PREFIX):
                try:
                    rec = json.loads(line[len(EPOCH_PREFIX) :])
                except json.JSONDecodeError:  # interleaved with another process's output
                    rec = None
                if rec is not None:
                    if on_epoch:
                        on_epoch(rec)
                    continue
            tail.append(line)
            del tail[:-400]
            if on_line:
                on_line(line)
        proc.wait()
    finally:
        if proc.poll() is None:  # the caller failed or was interrupted: end the whole torchrun group
            import signal

            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(wait)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
    if proc.returncode != 0 or not Path(spec.result_path).is_file():
        causes = list(
            dict.fromkeys(ln.strip() for ln in tail if _EXC.match(ln.strip()) and "ChildFailedError" not in ln)
        )
        raise RuntimeError(
            f"torchrun with {nproc} processes failed (exit {proc.returncode}): "
            + (" | ".join(causes) or "no exception message")
            + "\n"
            + "\n".join(tail[-30:])
        )
    return read_result(spec.result_path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    spec = TrainSpec.read(args[0])
    rank = int(os.environ.get("RANK", "0"))

    def announce(rec: dict) -> None:
        if rank == 0:
            sys.stdout.write(EPOCH_PREFIX + json.dumps(rec) + "\n")  # one write: one line
            sys.stdout.flush()

    run_spec(spec, announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
