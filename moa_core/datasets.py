"""The dataset catalogue: datasets as data, not code (the pipeline's dataset partitions).

Each entry is one key of the pipeline's dynamic ``dataset`` partition dimension. Entries
come from three places, later ones overriding earlier ones of the same name:

1. ``moa_core/catalogue.toml``, shipped with the project (the embedded synthetic
   datasets and the Cell Painting Gallery datasets of the two papers);
2. the user's own TOML files of the same shape (``$MOA_CATALOGUE``, ``:``-separated, or
   ``<data dir>/catalogue.toml``);
3. JSON entries under ``<data dir>/catalogue.d/`` written by :func:`register_entry`
   (the release sensor registers new JUMP releases there).

Schema of an entry (TOML table ``[datasets.<name>]``)::

    kind          "synthetic" | "images" | "profiles" | "synthetic_profiles" (Pheno-CA's embedded profiles)
    source        "gallery" (s3://cellpainting-gallery) | "local" (a folder) — images/profiles
    layout        "cpg0000" | "cpg0004" | "cpg0016" | "local": key layout and channel map
    description   free text
    project, source_name, batch     gallery prefix <project>/<source_name>/.../<batch>/
    bucket        default "cellpainting-gallery"
    path          local folder (source = "local"); relative to the TOML file's folder
    load_data     local: load_data file(s) relative to ``path`` (csv, csv.gz, parquet)
    plates, wells, sites            subsets (empty = everything)
    channel_map   {"1" = "Mito", ...}: channel number -> stain; defaults per layout
    annotations   "cpjump1" | "lincs" | "cpg0016" | a path to a per-well table
    profile_suffix  published profile processing level (cpg0000/cpg0004 file suffix)
    release, etag   the release a registered profile dataset came from (sensor)
    dose_uM       keep this dose only (LINCS: 10 uM, the paper's selection)
    synthetic / train / features    keyword overrides of SyntheticSpec / TrainConfig / FeatureConfig
    split_seed    seed of the well and compound splits
    store_resolution  side (px) of the fields in the preprocessed image store; omitted: native
    holdout_train keyword overrides of ``train`` for the compound-holdout model (default: ``train``)
    dp_train      keyword overrides of the DP recipe's TrainConfig (defaults: moa_core.model.config.dp_recipe_config)
    dp_cell_crop  side (px, store resolution) of the DP recipe's single-cell crops
    profile_spec  synthetic_profiles: keyword overrides of moa_core.phenoca.config.SyntheticProfileSpec
    release_spec  profiles: generate a JUMP-shaped synthetic release (moa_core.phenoca.config.JumpReleaseSpec
                  overrides, e.g. ``{ scale = 0.01 }``) into ``<data dir>/datasets/<name>`` and read it as a
                  local cpg0016 release (implies ``out_of_core``)
    out_of_core   profiles with layout cpg0016: load the per-plate files into DuckDB plate by plate and
                  normalize plate by plate (moa_core.profiles.release), for releases that do not fit in memory
    metadata      the folder of JUMP's well.csv.gz, compound.csv.gz, crispr.csv.gz, perturbation_control.csv
                  (default: the release's own ``metadata/``, else ``$MOA_JUMP_METADATA``)
    phenoca       keyword overrides of the Pheno-CA study (moa_core.phenoca.config.StudyConfig)
    phenoca_representation  image datasets: the method (moa_core.methods) whose well table a Pheno-CA study
                  reads (default "CP"; a method trained on MoA labels, e.g. "MP", is refused at run time)
    controls      which wells are negative controls (moa_core.data.config.ControlSpec: columns and values;
                  default: Metadata_moa/broad_sample/pert_iname = DMSO or pert_type/control_type = negcon)
    field_qc      per-channel field QC thresholds and whether flagged fields are skipped
                  (moa_core.data.config.FieldQCConfig)
    paper_weights the published MOAProfiler checkpoint to embed this dataset with
                  (moa_core.model.config.PaperWeightsConfig: checkpoint name, path, channel statistics)

Names must be valid Dagster partition keys and safe folder/table names:
``[A-Za-z0-9][A-Za-z0-9_.-]*`` (no ``| , [ ]``, no spaces or slashes).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moa_core.atomic import write_json_atomic
from moa_core.data.channels import CHANNEL_MAPS
from moa_core.data.config import ControlSpec, FieldQCConfig, SyntheticSpec
from moa_core.errors import SchemaError
from moa_core.methods import METHODS
from moa_core.model.config import PaperWeightsConfig, TrainConfig
from moa_core.model.config import dp_recipe_config as dp_default_config
from moa_core.phenoca.config import SCALE_KEYS, JumpReleaseSpec, StudyConfig, SyntheticProfileSpec, parse_scale
from moa_core.profiles.config import FeatureConfig

SHIPPED_CATALOGUE = Path(__file__).with_name("catalogue.toml")
KINDS = ("synthetic", "images", "profiles", "synthetic_profiles")
EMBEDDED = ("synthetic", "synthetic_profiles")  # made here: no source, no layout
SOURCES = ("gallery", "local")
LAYOUTS = ("cpg0000", "cpg0004", "cpg0016", "local")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
GALLERY_BUCKET = "cellpainting-gallery"


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset key, else raise :class:`SchemaError`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SchemaError(
            f"invalid dataset name {name!r}: use letters, digits, '_', '.', '-' (Dagster partition keys cannot "
            f"contain '|', ',', '[', ']'), at most 128 characters, starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the catalogue (see the module docstring for every field)."""

    name: str
    kind: str
    description: str = ""
    source: str | None = None
    layout: str | None = None
    project: str | None = None
    source_name: str | None = None
    batch: str | None = None
    bucket: str = GALLERY_BUCKET
    path: str | None = None
    load_data: tuple[str, ...] = ()
    plates: tuple[str, ...] = ()
    wells: tuple[str, ...] = ()
    sites: tuple[int, ...] = ()
    channel_map: Mapping[int, str] | None = None
    annotations: str | None = None
    profile_suffix: str | None = None
    release: str | None = None
    etag: str | None = None
    dose_uM: float | None = None
    synthetic: SyntheticSpec | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    split_seed: int = 0
    store_resolution: int | None = None
    holdout_train: TrainConfig | None = None
    dp_train: TrainConfig = field(default_factory=lambda: dp_default_config())
    dp_cell_crop: int = 96
    profile_spec: SyntheticProfileSpec | None = None
    release_spec: JumpReleaseSpec | None = None
    out_of_core: bool = False
    metadata: str | None = None
    phenoca: StudyConfig = field(default_factory=StudyConfig)
    phenoca_representation: str = "CP"
    controls: ControlSpec = field(default_factory=ControlSpec)
    field_qc: FieldQCConfig = field(default_factory=FieldQCConfig)
    paper_weights: PaperWeightsConfig | None = None
    origin: str = ""

    @property
    def has_images(self) -> bool:
        return self.kind in ("synthetic", "images")

    @property
    def gallery_prefix(self) -> str:
        """``<project>/<source_name>`` of a gallery dataset."""
        return f"{self.project}/{self.source_name}"

    def stain_of_channel(self) -> dict[int, str] | None:
        """Channel number -> stain: the entry's own map, else its layout's."""
        if self.channel_map:
            return dict(self.channel_map)
        return CHANNEL_MAPS.get(self.layout or "")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channel_map"] = {str(k): v for k, v in (self.channel_map or {}).items()} or None
        return d


def _tuple(v: Any, name: str, key: str, typ: type = str) -> tuple:
    if v is None:
        return ()
    if isinstance(v, (str, int)):
        v = [v]
    if not isinstance(v, list):
        raise SchemaError(f"dataset {name}: {key} must be a list, got {type(v).__name__}")
    out = []
    for x in v:
        if typ is str and (not isinstance(x, str) or not x.strip()):
            raise SchemaError(f"dataset {name}: blank or non-text entry {x!r} in {key}")
        out.append(typ(x))
    return tuple(out)


def _choice(value: Any, allowed: tuple[str, ...], name: str, key: str) -> str:
    if value not in allowed:
        raise SchemaError(f"dataset {name}: {key} must be one of {list(allowed)}, got {value!r}")
    return str(value)


def _sub(cls: type, values: Any, name: str, key: str, base: Any = None) -> Any:
    if values is None:
        return base if base is not None else cls()
    if not isinstance(values, dict):
        raise SchemaError(f"dataset {name}: {key} must be a table")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SchemaError(f"dataset {name}: unknown {key} option(s) {unknown}; known: {sorted(known)}")
    vals = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return dataclasses.replace(base, **vals) if base is not None else cls(**vals)


def entry_from_dict(
    name: str, raw: Mapping[str, Any], *, origin: str = "", base_dir: Path | None = None
) -> DatasetEntry:
    """Validate one raw catalogue table into a :class:`DatasetEntry`.

    Raises :class:`SchemaError` naming the dataset and the offending key.
    """
    validate_name(name)
    raw = dict(raw)
    known = {f.name for f in dataclasses.fields(DatasetEntry)} - {"name", "origin"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SchemaError(f"dataset {name} ({origin}): unknown key(s) {unknown}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise SchemaError(f"dataset {name} ({origin}): kind must be one of {KINDS}, got {kind!r}")
    src = raw.get("source")
    if kind not in EMBEDDED and src not in SOURCES:
        raise SchemaError(f"dataset {name} ({origin}): source must be one of {SOURCES}, got {src!r}")
    layout = raw.get("layout", "local" if src == "local" else None)
    if kind not in EMBEDDED and layout not in LAYOUTS:
        raise SchemaError(f"dataset {name} ({origin}): layout must be one of {LAYOUTS}, got {layout!r}")
    if src == "gallery":
        for k in ("project", "source_name", "batch"):
            if not str(raw.get(k) or "").strip():
                raise SchemaError(f"dataset {name} ({origin}): a gallery dataset needs {k!r}")
    path = raw.get("path")
    if src == "local" and raw.get("release_spec") is None:
        if not str(path or "").strip():
            raise SchemaError(f"dataset {name} ({origin}): a local dataset needs 'path' (its folder)")
        p = Path(str(path)).expanduser()
        path = str(p if p.is_absolute() or base_dir is None else (base_dir / p))
    cmap = raw.get("channel_map")
    if cmap is not None:
        try:
            cmap = {int(k): str(v) for k, v in dict(cmap).items()}
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"dataset {name}: channel_map keys must be channel numbers: {exc}") from None
    return DatasetEntry(
        name=name,
        kind=kind,
        description=str(raw.get("description", "")),
        source=src,
        layout=layout,
        project=raw.get("project"),
        source_name=raw.get("source_name"),
        batch=raw.get("batch"),
        bucket=raw.get("bucket", GALLERY_BUCKET),
        path=path,
        load_data=_tuple(raw.get("load_data"), name, "load_data"),
        plates=_tuple(raw.get("plates"), name, "plates"),
        wells=_tuple(raw.get("wells"), name, "wells"),
        sites=_tuple(raw.get("sites"), name, "sites", int),
        channel_map=cmap,
        annotations=raw.get("annotations"),
        profile_suffix=raw.get("profile_suffix"),
        release=raw.get("release"),
        etag=raw.get("etag"),
        dose_uM=None if raw.get("dose_uM") is None else float(raw["dose_uM"]),
        synthetic=_sub(SyntheticSpec, raw.get("synthetic"), name, "synthetic") if kind == "synthetic" else None,
        train=_sub(TrainConfig, raw.get("train"), name, "train"),
        features=_sub(FeatureConfig, raw.get("features"), name, "features"),
        split_seed=int(raw.get("split_seed", 0)),
        store_resolution=None if raw.get("store_resolution") is None else int(raw["store_resolution"]),
        holdout_train=None
        if raw.get("holdout_train") is None
        else _sub(
            TrainConfig,
            raw.get("holdout_train"),
            name,
            "holdout_train",
            base=_sub(TrainConfig, raw.get("train"), name, "train"),
        ),
        dp_train=_sub(TrainConfig, raw.get("dp_train"), name, "dp_train", base=dp_default_config()),
        dp_cell_crop=int(raw.get("dp_cell_crop", 96)),
        profile_spec=_sub(SyntheticProfileSpec, raw.get("profile_spec"), name, "profile_spec")
        if kind == "synthetic_profiles"
        else None,
        release_spec=None
        if raw.get("release_spec") is None
        else _sub(JumpReleaseSpec, raw.get("release_spec"), name, "release_spec"),
        out_of_core=bool(raw.get("out_of_core", raw.get("release_spec") is not None)),
        metadata=raw.get("metadata"),
        phenoca=_sub(StudyConfig, raw.get("phenoca"), name, "phenoca"),
        phenoca_representation=_choice(
            raw.get("phenoca_representation", "CP"), tuple(METHODS), name, "phenoca_representation"
        ),
        controls=_sub(ControlSpec, raw.get("controls"), name, "controls"),
        field_qc=_sub(FieldQCConfig, raw.get("field_qc"), name, "field_qc"),
        paper_weights=None
        if raw.get("paper_weights") is None
        else _paper_weights(raw["paper_weights"], name, base_dir),
        origin=origin,
    )


def _paper_weights(raw: Any, name: str, base_dir: Path | None) -> PaperWeightsConfig:
    pw = _sub(PaperWeightsConfig, raw, name, "paper_weights")
    if not (pw.checkpoint or (pw.sha256 and pw.study)):
        raise SchemaError(
            f"dataset {name}: paper_weights needs `checkpoint` (a known published checkpoint, e.g. jump1_moa) "
            f"or both `sha256` and `study` (JUMP1 or lincs) for another file"
        )
    if not (pw.path or pw.url or pw.checkpoint):
        raise SchemaError(f"dataset {name}: paper_weights needs `path` (the downloaded file) or `url`")
    if pw.path:
        p = Path(pw.path).expanduser()
        pw = dataclasses.replace(pw, path=str(p if p.is_absolute() or base_dir is None else base_dir / p))
    if len(pw.channel_mean) != len(pw.channel_std) or len(pw.channel_mean) not in (0, 5):
        raise SchemaError(f"dataset {name}: paper_weights channel_mean and channel_std need 5 values each (or none)")
    return pw


def read_catalogue_file(path: str | os.PathLike) -> dict[str, DatasetEntry]:
    """Entries of one TOML catalogue file (``[datasets.<name>]`` tables)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"catalogue file missing: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"catalogue {p}: not valid TOML: {exc}") from None
    tables = raw.get("datasets", {})
    if not isinstance(tables, dict):
        raise SchemaError(f"catalogue {p}: [datasets] must be a table of tables")
    return {n: entry_from_dict(n, t, origin=str(p), base_dir=p.parent) for n, t in tables.items()}


def registry_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "catalogue.d"


def register_entry(data_dir: str | os.PathLike, name: str, raw: Mapping[str, Any]) -> DatasetEntry:
    """Validate and persist a machine-registered entry (atomic JSON write); returns it."""
    entry = entry_from_dict(name, raw, origin="registered")
    write_json_atomic(dict(raw), registry_dir(data_dir) / f"{name}.json")
    return entry


def _registered(data_dir: Path) -> dict[str, DatasetEntry]:
    out = {}
    for f in sorted(registry_dir(data_dir).glob("*.json")):
        try:
            raw = json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            raise SchemaError(f"registered dataset file {f} is not valid JSON: {exc}") from None
        out[f.stem] = entry_from_dict(f.stem, raw, origin=str(f))
    return out


def user_catalogue_paths(data_dir: str | os.PathLike | None) -> list[Path]:
    """``$MOA_CATALOGUE`` (``:``-separated) and ``<data dir>/catalogue.toml`` when present."""
    paths = [Path(p) for p in os.environ.get("MOA_CATALOGUE", "").split(os.pathsep) if p.strip()]
    if data_dir is not None and (Path(data_dir) / "catalogue.toml").is_file():
        paths.append(Path(data_dir) / "catalogue.toml")
    return paths


def load_catalogue(
    data_dir: str | os.PathLike | None = None, extra: Iterable[str | os.PathLike] = ()
) -> dict[str, DatasetEntry]:
    """Every dataset: shipped, then user TOML files, then registered entries."""
    entries = dict(_shipped())
    for p in [*user_catalogue_paths(data_dir), *map(Path, extra)]:
        entries.update(read_catalogue_file(p))
    if data_dir is not None:
        entries.update(_registered(Path(data_dir)))
    return entries


# ---- the API the pipeline uses ------------------------------------------------------------
#: Data fractions of the ``fraction`` partition dimension: share of each compound's
#: training wells kept (the paper's replicate-fraction study).
# The ``fraction`` partition keys are the data scales of moa_core.phenoca.splits (one source of truth).
#: Replicate fractions (image models and profile studies): the share of each compound's training replicates.
FRACTIONS: dict[str, float] = {k: parse_scale(k)[1] for k in SCALE_KEYS if not k.startswith("ood")}
#: OOD-molecule shares (profile studies only): the share of unannotated compounds in (IBP) training.
OOD_SHARES: dict[str, float] = {k: parse_scale(k)[0] for k in SCALE_KEYS if k.startswith("ood")}
#: Training seeds of the image models' seed replicates: key ``"<share>s<seed>"`` (``"50s1"``, ``"50s2"``) is a
#: second (third) run of the replicate fraction ``"<share>"``, its training seed (initialisation, sampling) and
#: its draw of each compound's replicate wells offset by ``<seed>``. Seed 0 is the plain key ``"<share>"``.
#: Runs of one scale give MOAProfiler's replicate-fraction curve the run-to-run noise an interval needs.
SEED_REPLICATES: tuple[int, ...] = (1, 2)
#: The seed-replicate keys (image models only; the Pheno-CA studies draw their own seeds inside the zoo).
SEED_KEYS: list[str] = [f"{k}s{i}" for k in FRACTIONS for i in SEED_REPLICATES]
#: Every key of the pipeline's ``fraction`` partition dimension.
FRACTION_KEYS: list[str] = [*SCALE_KEYS, *SEED_KEYS]
_SEED_KEY = re.compile(r"(?P<scale>[0-9]+)s(?P<seed>[0-9]+)")


def seed_replicate(key: str) -> tuple[str, int]:
    """``(scale key, training seed offset)`` of a ``fraction`` partition key: "50s2" -> ("50", 2), "50" -> ("50", 0).

    Raises :class:`SchemaError` for a key that is not a partition key (the message lists them)."""
    if key not in FRACTION_KEYS:
        raise SchemaError(
            f"unparsable fraction key {key!r}: use a replicate share {list(FRACTIONS)}, a seed replicate "
            f"'<share>s<seed>' of one ({SEED_KEYS[0]!r} ... {SEED_KEYS[-1]!r}) or an OOD-molecule share "
            f"{list(OOD_SHARES)}"
        )
    m = _SEED_KEY.fullmatch(key)
    return (m["scale"], int(m["seed"])) if m else (key, 0)


def training_seed(key: str) -> int:
    """The seed offset of a ``fraction`` key (0 for a plain scale key): see :data:`SEED_REPLICATES`."""
    return seed_replicate(key)[1]


def image_fraction_keys() -> list[str]:
    """The keys an image model trains at: every replicate fraction and its seed replicates."""
    return [*FRACTIONS, *SEED_KEYS]


def data_scale(key: str) -> tuple[float, float]:
    """``(ood_share, replicate_share)`` of a ``fraction`` partition key: "50" -> (1, 0.5), "ood25" -> (0.25, 1);
    a seed replicate has its scale's: "50s1" -> (1, 0.5)."""
    return parse_scale(seed_replicate(key)[0])


def profile_scale(key: str) -> tuple[float, float]:
    """:func:`data_scale` for the Pheno-CA profile studies, which take scale keys only: their zoo draws its own
    seeds, so a seed-replicate key (an image model's run) is refused rather than silently repeated."""
    scale, seed = seed_replicate(key)
    if seed:
        raise SchemaError(
            f"fraction {key!r} is a seed replicate of an image model (MP, DP recipe); the Pheno-CA studies take "
            f"the scale key {scale!r} and draw their seeds inside the zoo"
        )
    return parse_scale(scale)


def replicate_fraction(key: str) -> float:
    """The replicate share of a key for image models, which have no OOD molecules ("ood*" keys are an error)."""
    _, rep = data_scale(key)
    if key in OOD_SHARES:
        raise SchemaError(
            f"fraction {key!r} is an OOD-molecule share of the Pheno-CA profile studies; image models "
            f"(MP, DP recipe) take replicate fractions {list(FRACTIONS)}"
        )
    return rep


DEFAULT_DATASET = "synthetic_cpjump1"
DEFAULT_FRACTION = "100"


@functools.cache
def _shipped() -> dict[str, DatasetEntry]:
    return read_catalogue_file(SHIPPED_CATALOGUE)


def shipped_catalogue() -> dict[str, DatasetEntry]:
    """The shipped catalogue (``moa_core/catalogue.toml``), parsed on first use and cached."""
    return dict(_shipped())


def __getattr__(name: str):  # PEP 562: ``DATASETS`` is parsed on first access, not at import
    if name == "DATASETS":
        return _shipped()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: ``DatasetSpec`` is the name earlier code used for an entry.
DatasetSpec = DatasetEntry


def get_dataset(name: str, data_dir: str | os.PathLike | None = None) -> DatasetEntry:
    """The catalogue entry ``name`` (shipped, user or registered under ``data_dir``)."""
    entries = load_catalogue(data_dir) if data_dir is not None else _shipped()
    try:
        return entries[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; registered: {sorted(entries)}") from None
