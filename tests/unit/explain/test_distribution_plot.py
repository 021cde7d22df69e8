"""The distribution chart: well-formed SVG, bars in proportion to the shares, names escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mrm.explain.distribution_plot import distribution_plot, svg

NS = {"svg": "http://www.w3.org/2000/svg"}
LABELS = ["< 10", "10 to 20", "20 to 30", ">= 30"]
REFERENCE = [0.25, 0.25, 0.25, 0.25]
CURRENT = [0.1, 0.2, 0.3, 0.4]


def parse(
    feature: str, labels: list[str], reference: list[float], current: list[float]
) -> ET.Element:
    return ET.fromstring(str(svg(distribution_plot(feature, labels, reference, current), "t0")))


def bars(root: ET.Element, series: str) -> list[ET.Element]:
    return [
        r for r in root.iterfind(".//svg:g[@class='bars']/svg:rect", NS) if r.get("class") == series
    ]


def test_svg_is_valid_xml_with_an_accessible_title_and_description() -> None:
    root = parse("income", LABELS, REFERENCE, CURRENT)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img"
    title = root.find("svg:title", NS)
    desc = root.find("svg:desc", NS)
    assert title is not None
    assert desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert "income" in (title.text or "")
    # The largest change is named: the last bin, 25% -> 40%.
    assert ">= 30: 25.0% of the reference, 40.0% of the window" in (desc.text or "")


def test_two_series_one_bar_per_bin_with_legend_and_axis_labels() -> None:
    root = parse("income", LABELS, REFERENCE, CURRENT)
    assert len(bars(root, "reference")) == len(bars(root, "current")) == len(LABELS)
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "reference" in texts
    assert "current window" in texts
    for label in LABELS:  # the bin edges under the bars
        assert label in texts
    assert "share of rows" in texts
    assert "income: bins of the reference (edges)" in texts
    # The axis runs to the largest share rounded up to a tenth: 40%.
    assert {"0.0%", "20.0%", "40.0%"} <= set(texts)


def test_bar_heights_are_proportional_to_the_shares() -> None:
    root = parse("income", LABELS, REFERENCE, CURRENT)
    for series, shares in (("reference", REFERENCE), ("current", CURRENT)):
        heights = [float(r.get("height", "nan")) for r in bars(root, series)]
        per_unit = heights[-1] / shares[-1] if series == "current" else heights[0] / shares[0]
        assert heights == pytest.approx([s * per_unit for s in shares], abs=0.02)
    # Both series share one scale: the current 0.4 is 1.6 times the reference 0.25.
    (ref_last,), (cur_last,) = bars(root, "reference")[-1:], bars(root, "current")[-1:]
    assert float(cur_last.get("height", "0")) == pytest.approx(
        1.6 * float(ref_last.get("height", "0")), abs=0.02
    )
    # Bars stand on the axis: y + height is the same baseline for every bar.
    baselines = {
        round(float(r.get("y", "0")) + float(r.get("height", "0")), 1)
        for s in ("reference", "current")
        for r in bars(root, s)
    }
    assert len(baselines) == 1


@given(
    st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=12).flatmap(
        lambda ref: st.tuples(
            st.just(ref),
            st.lists(st.floats(min_value=0, max_value=1), min_size=len(ref), max_size=len(ref)),
        )
    )
)
def test_heights_scale_with_shares_for_any_data(shares: tuple[list[float], list[float]]) -> None:
    reference, current = shares
    labels = [f"bin {i}" for i in range(len(reference))]
    plot = distribution_plot("x", labels, reference, current)
    top = max(b.height for b in plot.bars)
    assert top <= plot.plot_height
    largest = max([*reference, *current])
    for bar in plot.bars:
        assert bar.height >= 0
        if largest > 0:
            # Every bar measured against the tallest: the same ratio as their shares.
            assert bar.height * largest == pytest.approx(bar.share * top, abs=0.02)


def test_a_hostile_feature_name_is_escaped() -> None:
    hostile = "<script>alert('x')</script>"
    markup = str(svg(distribution_plot(hostile, [hostile, "b"], [0.5, 0.5], [0.9, 0.1]), "t1"))
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    root = ET.fromstring(markup)  # still well-formed
    assert root.find("svg:script", NS) is None
    assert not list(root.iter("{http://www.w3.org/2000/svg}script"))
    title = root.find("svg:title", NS)
    assert title is not None
    assert hostile in (title.text or "")


def test_a_window_without_values_draws_empty_current_bars() -> None:
    root = parse("age", LABELS, REFERENCE, [])
    assert [float(r.get("height", "1")) for r in bars(root, "current")] == [0.0] * 4
    desc = root.find("svg:desc", NS)
    assert desc is not None
    assert "no value of this feature" in (desc.text or "")


def test_long_category_labels_are_shortened_with_the_full_label_kept() -> None:
    long = "a-very-long-category-name-indeed"
    root = parse("city", [long, "b"], [0.5, 0.5], [0.5, 0.5])
    ticks = root.findall(".//svg:g[@class='ticks']/svg:text", NS)
    title = ticks[0].find("svg:title", NS)
    assert title is not None
    assert title.text == long
    assert title.tail == long[:21] + "…"
    assert ticks[1].find("svg:title", NS) is None
    assert ticks[1].text == "b"


def test_mismatched_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="2 labels, 3 reference"):
        distribution_plot("x", ["a", "b"], [0.2, 0.3, 0.5], [])
