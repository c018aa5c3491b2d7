"""The method registry: one name, table and colour per method, read by every layer."""

import re

from moa_core.methods import COLOUR_ALIASES, METHODS, OTHER_COLOURS, colour_map, method_order, method_tables


def test_every_method_has_a_distinct_table_and_colour():
    tables = [m.table for m in METHODS.values()]
    colours = [m.colour for m in METHODS.values()] + list(OTHER_COLOURS.values())
    assert len(set(tables)) == len(tables)
    assert len(set(colours)) == len(colours)
    # an alias is another drawn name under a second label, never a new colour
    assert not set(COLOUR_ALIASES) & (set(METHODS) | set(OTHER_COLOURS))
    assert all(colour_map()[alias] == colour_map()[name] for alias, name in COLOUR_ALIASES.items())
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
    assert all(re.fullmatch(r"[a-z_]+", t) for t in tables)


def test_evaluated_tables_leave_out_retrieval_only_methods():
    assert "IBP" not in method_tables()
    assert method_tables(evaluated_only=False)["IBP"] == ("ibp_embeddings", True)
    assert method_tables()["MP (paper weights)"] == ("mp_paper_embeddings", False)
    assert method_order()[: len(METHODS)] == list(METHODS)


def test_dashboard_and_assets_read_the_registry():
    from dashboard.explorer_queries import HOW_TO_GET
    from dashboard.style import METHOD_COLORS, method_color
    from orchestration.defs.evaluation import METHOD_TABLES
    from orchestration.defs.retrieval import SOURCES

    assert METHOD_TABLES == method_tables()
    assert SOURCES == method_tables(evaluated_only=False)
    assert set(HOW_TO_GET) == set(METHODS)
    for name, m in METHODS.items():
        assert METHOD_COLORS[name] == m.colour == method_color(name)
    assert method_color("some other model") not in {m.colour for m in METHODS.values()}


def test_pheno_ca_reads_only_label_free_methods(tmp_path):
    import pytest

    from moa_core.datasets import read_catalogue_file
    from moa_core.errors import SchemaError
    from moa_core.methods import phenoca_inputs

    assert phenoca_inputs() == ["CP", "CP published", "CP (JUMP recipe)", "CP spherized", "cell count"]
    cat = tmp_path / "c.toml"
    cat.write_text('[datasets.a]\nkind = "synthetic"\nphenoca_representation = "CP (JUMP recipe)"\n')
    assert read_catalogue_file(cat)["a"].phenoca_representation == "CP (JUMP recipe)"
    cat.write_text('[datasets.a]\nkind = "synthetic"\nphenoca_representation = "CP recipe"\n')
    with pytest.raises(SchemaError, match="phenoca_representation"):
        read_catalogue_file(cat)
