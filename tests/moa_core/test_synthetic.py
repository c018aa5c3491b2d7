import numpy as np
import pytest

from moa_core.data.image_io import CHANNELS, read_channel
from moa_core.data.synthetic import PhenotypeModel, SyntheticSpec, build_well_table, render_field
from moa_core.profiles.segmentation import segment_field


def _render(z, size=256, seed=0, cells=None):
    spec = SyntheticSpec(image_size=size, cells_per_field=cells)
    m = PhenotypeModel(spec)
    return render_field(
        z,
        size=size,
        mean_cells=spec.mean_cells,
        cell_noise=spec.cell_noise,
        plate_gain=m.plate_gain("P"),
        plate_background=m.plate_background("P"),
        rng=np.random.default_rng(seed),
    )


def test_files_named_and_listed_like_real_phenix_exports(mini_dataset):
    root, ld, wells, spec = mini_dataset
    assert len(ld) == len(wells) * spec.fields_per_well
    r = ld.iloc[0]
    # ch5 is DNA in cpg0000/source_4
    assert r["FileName_OrigDNA"].endswith("-ch5sk1fk1fl1.tiff")
    assert r["FileName_OrigMito"].endswith("-ch1sk1fk1fl1.tiff")
    for ch in CHANNELS:
        p = root / r[f"PathName_Orig{ch}"] / r[f"FileName_Orig{ch}"]
        img = read_channel(p)
        assert img.dtype == np.uint16 and img.shape == (spec.image_size, spec.image_size)
    assert (root / "load_data.csv").is_file()
    assert not list(root.rglob("*.tmp"))


def test_deterministic_per_seed(design, tmp_path):
    from moa_core.data.synthetic import render_dataset

    spec = SyntheticSpec(n_plates=1, max_moas=1, dmso_wells_per_plate=1, fields_per_well=1, image_size=96)
    a, _ = render_dataset(design, spec, tmp_path / "a")
    b, _ = render_dataset(design, spec, tmp_path / "b")
    for (_, ra), (_, rb) in zip(a.iterrows(), b.iterrows()):
        pa = tmp_path / "a" / ra["PathName_OrigDNA"] / ra["FileName_OrigDNA"]
        pb = tmp_path / "b" / rb["PathName_OrigDNA"] / rb["FileName_OrigDNA"]
        assert np.array_equal(read_channel(pa), read_channel(pb))


def test_image_statistics_comparable_to_real_fields():
    """Background in the real range, bright objects well above it, nuclei density as real (~94/1080²)."""
    img = _render(np.zeros(13), size=512, seed=1)
    for i, ch in enumerate(CHANNELS):
        bg = np.percentile(img[i], 5)
        assert 100 < bg < 1000, ch
        assert np.percentile(img[i], 99.5) > 2 * bg, ch
    counts = [segment_field(_render(np.zeros(13), size=512, seed=s)).n_objects for s in range(4)]
    expected = 94 * (512 / 1080) ** 2  # ~21
    assert 0.5 * expected < np.mean(counts) < 1.6 * expected


def test_moa_effect_changes_morphology_not_a_marker():
    """A cell-count / nuclear-size effect shows in segmentation; DMSO vs treated differ only morphologically."""
    z = np.zeros(13)
    z_big = z.copy()
    z_big[0] = 0.8  # nucleus_size
    area = lambda im: np.mean(np.bincount(segment_field(im).nuclei.ravel())[1:])  # noqa: E731
    a0 = np.mean([area(_render(z, 384, s)) for s in range(3)])
    a1 = np.mean([area(_render(z_big, 384, s)) for s in range(3)])
    assert a1 > 1.3 * a0


def test_phenotype_model_structure(design):
    spec = SyntheticSpec(replicate_noise=0.0)
    m = PhenotypeModel(spec)
    wells = build_well_table(design, spec)
    trt = wells[wells["Metadata_moa"] != "DMSO"]
    # compounds of one MOA share its effect more than compounds of different MOAs
    moa = trt.groupby("Metadata_moa")["Metadata_broad_sample"].unique()
    a, b = [c for c in moa.index if len(moa[c]) >= 2][:2]
    ea = [m.compound_effect(c, a) for c in moa[a][:2]]
    eb = m.compound_effect(moa[b][0], b)
    same = np.corrcoef(ea[0], ea[1])[0, 1]
    diff = np.corrcoef(ea[0], eb)[0, 1]
    assert same > diff
    assert np.allclose(m.compound_effect("DMSO", "DMSO"), 0)
    # DMSO wells capped per plate, treated wells kept
    assert (wells[wells["Metadata_moa"] == "DMSO"].groupby("Metadata_Plate").size() <= spec.dmso_wells_per_plate).all()


def test_mean_cells_scales_with_area():
    assert SyntheticSpec(image_size=1080).mean_cells == pytest.approx(94.0)
    assert SyntheticSpec(image_size=540).mean_cells == pytest.approx(23.5)
    assert SyntheticSpec(cells_per_field=7).mean_cells == 7
