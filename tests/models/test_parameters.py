"""Parameter sets as data (models/parameters/*.yaml): every value cited, the cell model uses what the files say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models import parameters

REFERENCES = Path(__file__).resolve().parents[2] / "docs" / "references.md"


def _reference_keys() -> set[str]:
    text = REFERENCES.read_text(encoding="utf-8")
    return set(re.findall(r"^- \*\*([A-Za-z0-9-]+)\*\*", text, re.M)) | set(
        re.findall(r"Also cited as `([A-Za-z0-9]+)`", text))


def test_the_three_sets_exist() -> None:
    assert {"Chen2020", "ProZell_seed001", "pilot_cell"} <= set(parameters.names())


@pytest.mark.parametrize("name", parameters.names())
def test_every_value_cites_a_reference_or_says_why_it_is_assumed(name: str) -> None:
    keys = _reference_keys()
    ps = parameters.load(name)
    for key, v in ps.values.items():
        if v.source == parameters.ASSUMPTION:
            assert v.note.strip(), f"{name}.{key}: assumption without a note"
        else:
            assert v.source in keys, f"{name}.{key}: source {v.source!r} is not in docs/references.md"
    if ps.base:
        assert ps.base in keys


def test_table_a2_values_are_as_printed() -> None:
    z = parameters.load("ProZell_seed001")
    assert (z["cathode_thickness_m"], z["cathode_porosity"], z["cathode_tortuosity"]) == (4.85e-5, 0.315, 5.9449)
    assert (z["cathode_c_max_mol_m3"], z["cathode_c_0_mol_m3"], z["cathode_diffusivity_m2_s"]) == (
        43221.0, 15467.0, 9.5594e-15)
    assert z.pybamm_updates()["Positive electrode tortuosity factor (electrolyte)"] == 5.9449


def test_the_cell_model_reads_its_constants_from_the_files() -> None:
    from models import cell

    pilot, chen = parameters.load("pilot_cell"), parameters.load("Chen2020")
    m = cell.ActiveMaterials()
    assert m.cathode_specific_capacity_mAh_g == pilot["cathode_specific_capacity_mAh_g"]
    assert m.formation_loss_fraction == pilot["formation_loss_fraction"]
    assert cell.CHEN2020_Y100 == chen["cathode_stoichiometry_100"]
    assert cell.ActiveMaterials.chen2020().c_max_positive_mol_m3 == chen["cathode_c_max_mol_m3"]
    assert cell.chen2020_structure()["cathode_thickness_um"] == pytest.approx(75.6)


def test_bad_files_get_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\nvalues:\n  x: {value: 1.0, unit: m}\n")
    with pytest.raises(ValueError, match="missing \\['source'\\]"):
        parameters.load("bad", tmp_path)
    (tmp_path / "guess.yaml").write_text("name: g\nvalues:\n  x: {value: 1.0, unit: m, source: assumption}\n")
    with pytest.raises(ValueError, match="assumption without a note"):
        parameters.load("guess", tmp_path)
    with pytest.raises(KeyError, match="available"):
        parameters.load("nope", tmp_path)
    with pytest.raises(KeyError, match="has no value"):
        parameters.load("Chen2020")["nope"]
