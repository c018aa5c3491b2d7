import pytest

from moa_core.data.design import is_edge_well, select_moas, select_plates, subset_design, well_row_col


def test_design_is_the_real_cpjump1_compound_layout(design):
    assert design["Metadata_Plate"].nunique() == 16
    per_plate = design.groupby("Metadata_Plate").size()
    assert per_plate.max() <= 384
    # 64 DMSO wells per CPJUMP1 compound plate (BR00116995 lists 50 in the public metadata)
    dmso = design[design["Metadata_moa"] == "DMSO"].groupby("Metadata_Plate").size()
    assert (dmso == 64).sum() == 15 and dmso["BR00116995"] == 50
    assert set(design["Metadata_cell_line"]) == {"A549", "U2OS"}
    assert set(design["Metadata_timepoint"]) == {24, 48}
    # FK-866 sits in D08 and L09 of BR00117010 (the real fields in ../shared)
    fk = design[(design["Metadata_Plate"] == "BR00117010") & (design["Metadata_pert_iname"] == "FK-866")]
    assert sorted(fk["Metadata_Well"]) == ["D08", "L09"]


def test_multi_moa_compounds_are_marked_not_dropped(design):
    multi = design[~design["Metadata_single_moa"] & design["Metadata_moa"].notna() & design["Metadata_moa"].ne("DMSO")]
    assert len(multi) > 0
    assert multi["Metadata_moa"].str.contains("|", regex=False).all()
    assert (multi["Metadata_n_moa"] >= 2).all()


def test_plate_selection_round_robins_conditions(design):
    plates = select_plates(design, 4)
    cond = design.drop_duplicates("Metadata_Plate").set_index("Metadata_Plate").loc[plates]
    assert len(set(zip(cond["Metadata_cell_line"], cond["Metadata_timepoint"]))) == 4
    with pytest.raises(ValueError, match="n_plates"):
        select_plates(design, 17)


def test_moa_selection_and_subset(design):
    moas = select_moas(design, 5)
    assert moas[0] == "calcium channel blocker"  # 7 single-MOA compounds, the most
    sub = subset_design(design, select_plates(design, 2), moas)
    assert set(sub["Metadata_moa"]) >= {"DMSO", *moas}


def test_wells():
    assert well_row_col("D14") == (4, 14)
    assert is_edge_well("A05") and is_edge_well("P12") and is_edge_well("C24") and not is_edge_well("B02")
    with pytest.raises(ValueError):
        well_row_col("14D")


def test_cpjump1_identifiers_map_broad_samples_to_inchikeys(shared_dir, tmp_path):
    from moa_core.data.design import cpjump1_identifiers

    ids = cpjump1_identifiers(shared_dir).set_index("Metadata_broad_sample")["Metadata_InChIKey"]
    assert ids["BRD-A22032524-074-09-9"] == "HTIQEAQVCYTUBX-UHFFFAOYSA-N"  # amlodipine
    assert ids.index.is_unique and ids.str.fullmatch(r"[A-Z]{14}-[A-Z]{10}-[A-Z]").all()
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        cpjump1_identifiers(tmp_path)
