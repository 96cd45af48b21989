"""Importers: PKLot XML (both <point> spellings, rotatedRect fallback, labels) and Ultralytics JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cityeye.zones.importers import import_pklot, import_ultralytics, read_pklot_labels
from cityeye.zones.model import ZoneError, parse_zones

from .conftest import shared_path

UFPR05_XML = ("data", "parking", "pklot_ufpr05", "2013-04-15_07_15_01.xml")
UFPR04_POINT_XML = ("data", "parking", "pklot_ufpr04", "2012-12-28_11_20_07.xml")
PUCPR_XML = ("data", "parking", "pklot_pucpr", "2012-09-11_15_16_58.xml")


def contours_by_regex(xml: Path) -> dict[str, list[tuple[float, float]]]:
    """An independent reading of the XML (text search, not ElementTree) to compare against."""
    out: dict[str, list[tuple[float, float]]] = {}
    for m in re.finditer(r'<space id="([^"]+)".*?</space>', xml.read_text(), flags=re.S):
        pts = re.findall(r'<[Pp]oint x="([-\d.]+)" y="([-\d.]+)"', m.group(0))
        out[m.group(1)] = [(float(x), float(y)) for x, y in pts]
    return out


@pytest.mark.parametrize("parts", [UFPR05_XML, UFPR04_POINT_XML])
def test_pklot_import_keeps_ids_and_contours(parts: tuple[str, ...]) -> None:
    xml = shared_path(*parts)
    doc = import_pklot(xml)
    assert doc["cityeye:coordinates"] == "pixel"
    expected = contours_by_regex(xml)
    assert [f["id"] for f in doc["features"]] == list(expected)
    zones = parse_zones(doc, source=str(xml))
    assert len(zones) == len(expected) > 0
    for z in zones:
        assert z.kind == "space"
        np.testing.assert_array_equal(z.pixels, np.array(expected[z.id]))


def test_ufpr04_capital_point_file_is_really_the_capital_spelling() -> None:
    # Guards the test above: it must exercise <Point>, not silently a <point> file.
    text = shared_path(*UFPR04_POINT_XML).read_text()
    assert "<Point " in text and "<point " not in text


def test_rotated_rect_fallback_without_contour(tmp_path: Path) -> None:
    xml = tmp_path / "frame.xml"
    xml.write_text(
        '<parking id="t"><space id="9" occupied="1"><rotatedRect><center x="100" y="50"/>'
        '<size w="40" h="20"/><angle d="0"/></rotatedRect><contour/></space>'
        '<space id="10"><rotatedRect><center x="200" y="50"/><size w="40" h="20"/><angle d="90"/>'
        "</rotatedRect></space></parking>"
    )
    z9, z10 = parse_zones(import_pklot(xml))
    assert (z9.id, z10.id) == ("9", "10")
    np.testing.assert_allclose(z9.pixels.min(axis=0), [80, 40], atol=1e-4)
    np.testing.assert_allclose(z9.pixels.max(axis=0), [120, 60], atol=1e-4)
    # Turned a quarter: 20 wide, 40 high.
    np.testing.assert_allclose(z10.pixels.max(axis=0) - z10.pixels.min(axis=0), [20, 40], atol=1e-4)
    assert read_pklot_labels(xml) == {"9": True, "10": None}


def test_pklot_labels_keep_unknown_apart() -> None:
    xml = shared_path(*PUCPR_XML)
    labels = read_pklot_labels(xml)
    attrs = re.findall(r'<space id="([^"]+)"( occupied="([01])")?', xml.read_text())
    assert labels == {sid: (None if not has else val == "1") for sid, has, val in attrs}
    assert None in labels.values()  # the PUCPR quirk the data notes describe


def test_pklot_errors_name_the_space(tmp_path: Path) -> None:
    xml = tmp_path / "bad.xml"
    xml.write_text('<parking><space id="3"><contour><point x="1" y="a"/></contour></space></parking>')
    with pytest.raises(ZoneError, match=r"bad\.xml: <space> #0 \(id '3'\)"):
        import_pklot(xml)
    xml.write_text('<parking><space id="3"/><space id="3"/></parking>')
    with pytest.raises(ZoneError, match=r"#1 \(id '3'\): duplicate id"):
        import_pklot(xml)
    xml.write_text("<parking><space")
    with pytest.raises(ZoneError, match="not valid XML"):
        import_pklot(xml)


def write_boxes(tmp_path: Path) -> Path:
    path = tmp_path / "bounding_boxes.json"
    path.write_text(
        json.dumps(
            [
                {"points": [[10, 20], [110, 20], [110, 80], [10, 80]]},
                {"points": [[200, 40], [260, 30], [280, 90], [210, 100]]},
            ]
        )
    )
    return path


def test_ultralytics_import_without_scale(tmp_path: Path) -> None:
    path = write_boxes(tmp_path)
    source = json.loads(path.read_text())
    zones = parse_zones(import_ultralytics(path))
    assert [z.id for z in zones] == ["1", "2"]
    for z, item in zip(zones, source, strict=True):
        np.testing.assert_array_equal(z.pixels, np.array(item["points"], dtype=float))


def test_ultralytics_import_with_scale(tmp_path: Path) -> None:
    path = write_boxes(tmp_path)
    plain = parse_zones(import_ultralytics(path))
    scaled = parse_zones(import_ultralytics(path, scale=(2.0, 0.5)))
    for a, b in zip(plain, scaled, strict=True):
        np.testing.assert_allclose(b.pixels, a.pixels * [2.0, 0.5])


def test_ultralytics_errors(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps([{"points": [[0, 0], [1, 1], [2, 0]]}, {"points": [[0, 0], [1, 1]]}]))
    with pytest.raises(ZoneError, match=r"item #1 \(id '2'\): \"points\" must be 3 or more"):
        import_ultralytics(path)
    path.write_text(json.dumps({"points": []}))
    with pytest.raises(ZoneError, match="expected a list"):
        import_ultralytics(path)
    with pytest.raises(ZoneError, match="scale"):
        import_ultralytics(write_boxes(tmp_path), scale=(0, 1))
