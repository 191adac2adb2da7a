"""SVG charts are well-formed, draw one mark per datum, scale honestly and escape text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from markupsafe import Markup

from app.analytics.charts import bar_chart, line_chart, stacked_bar_chart

NS = "{http://www.w3.org/2000/svg}"
EVIL = "<script>alert(1)</script>"


def parse(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    return ET.fromstring(str(svg))


def bars(root: ET.Element) -> list[ET.Element]:
    """The bars drawn for data: `rect.bar`, which legend swatches are not."""
    return [e for e in root.iter(f"{NS}rect") if "bar" in e.get("class", "").split()]


def assert_safe_svg(root: ET.Element, title: str) -> None:
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img" and root.get("width") == "100%"
    assert root.get("viewBox", "").startswith("0 0 ")
    assert root.get("aria-label") == title
    for element in root.iter():
        assert element.tag not in (f"{NS}script", f"{NS}style")
        assert "style" not in element.attrib


def test_bar_chart_draws_one_bar_per_label_proportional_to_its_value() -> None:
    data = [("ann@example.org", 40.0), ("bob", 10.0), ("cy", 25.0)]

    root = parse(bar_chart(data, title="Labels per labeler"))

    assert_safe_svg(root, "Labels per labeler")
    drawn = bars(root)
    assert len(drawn) == 3
    widths = [float(b.get("width", "")) for b in drawn]
    assert widths[1] / widths[0] == pytest.approx(10 / 40, rel=1e-3)
    assert widths[2] / widths[0] == pytest.approx(25 / 40, rel=1e-3)
    assert all(b.get("fill") and "series-0" in b.get("class", "") for b in drawn)
    assert [b.find(f"{NS}title").text for b in drawn] == ["ann@example.org: 40", "bob: 10",
                                                         "cy: 25"]


def test_bar_chart_scales_to_max_value_and_shows_the_unit() -> None:
    root = parse(bar_chart([("a", 0.5), ("b", 1.0)], title="Share", unit="%", max_value=2.0))

    full = parse(bar_chart([("a", 2.0)], title="Share"))
    widths = [float(b.get("width", "")) for b in bars(root)]
    assert widths[1] == pytest.approx(float(bars(full)[0].get("width", "")) / 2)
    assert "1%" in [t.text for t in root.iter(f"{NS}text")]


@pytest.mark.parametrize("chart", [
    lambda: bar_chart([(EVIL, 1.0)], title=EVIL, unit=EVIL),
    lambda: line_chart([EVIL, "b"], {EVIL: [1.0, 2.0]}, title=EVIL, unit=EVIL),
    lambda: stacked_bar_chart([EVIL], {EVIL: [3.0]}, title=EVIL),
])
def test_labels_and_titles_are_escaped(chart: Callable[[], Markup]) -> None:
    svg = chart()

    root = parse(svg)

    assert "<script" not in str(svg)
    assert_safe_svg(root, EVIL)
    texts = [t.text or "" for t in root.iter() if t.tag in (f"{NS}text", f"{NS}title")]
    assert any(EVIL in t for t in texts)


def test_line_chart_draws_a_line_per_series_and_breaks_it_at_gaps() -> None:
    days = [f"2024-05-{d:02d}" for d in range(1, 6)]
    series = {"human": [1.0, 2.0, 3.0, 2.0, 1.0], "ai": [0.5, None, 1.5, 2.5, 3.5]}

    root = parse(line_chart(days, series, title="Agreement", y_max=4.0))

    assert_safe_svg(root, "Agreement")
    groups = [g for g in root.iter(f"{NS}g") if "series-" in g.get("class", "")]
    assert [len(g.findall(f"{NS}polyline")) for g in groups] == [1, 2]
    points = list(root.iter(f"{NS}circle"))
    assert len(points) == 9  # one per value that is not None
    assert all(p.find(f"{NS}title") is not None for p in points)
    ys = [float(p.get("cy", "")) for p in points[:3]]
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2])  # equal steps for equal values
    assert "human" in [t.text for t in root.iter(f"{NS}text")]  # legend


def test_line_chart_thins_out_many_x_labels() -> None:
    days = [f"day {i}" for i in range(60)]

    root = parse(line_chart(days, {"labels": [float(i) for i in range(60)]}, title="t"))

    shown = [t.text for t in root.iter(f"{NS}text") if t.text in days]
    assert 2 <= len(shown) <= 8
    assert shown[0] == "day 0"


def test_stacked_bars_draw_non_zero_segments_stacked_to_the_total() -> None:
    days = ["mon", "tue", "wed"]
    series = {"human": [2.0, 0.0, 1.0], "ai": [2.0, 3.0, 0.0]}

    root = parse(stacked_bar_chart(days, series, title="Labels per day"))

    assert_safe_svg(root, "Labels per day")
    drawn = bars(root)
    assert len(drawn) == 4
    heights = [float(b.get("height", "")) for b in drawn]
    assert heights[0] == pytest.approx(heights[1])  # 2 and 2 on monday
    assert heights[2] == pytest.approx(heights[0] * 3 / 2)
    assert heights[3] == pytest.approx(heights[0] / 2)
    monday_top = float(drawn[1].get("y", ""))
    monday_bottom = float(drawn[0].get("y", "")) + heights[0]
    assert monday_bottom - monday_top == pytest.approx(heights[0] + heights[1])
    assert {b.find(f"{NS}title").text for b in drawn} >= {"ai · tue: 3", "human · mon: 2"}


@pytest.mark.parametrize("chart", [
    lambda: bar_chart([], title="t"),
    lambda: bar_chart([("a", 0.0), ("b", 0.0)], title="t", max_value=5.0),
    lambda: line_chart([], {}, title="t"),
    lambda: line_chart(["a", "b"], {"s": [None, None]}, title="t"),
    lambda: line_chart(["a", "b"], {"s": [0.0, 0.0]}, title="t"),
    lambda: stacked_bar_chart(["a"], {"s": [0.0], "r": [0.0]}, title="t"),
    lambda: stacked_bar_chart([], {}, title="t"),
])
def test_empty_or_all_zero_data_says_no_data_yet(chart: Callable[[], Markup]) -> None:
    root = parse(chart())

    assert_safe_svg(root, "t")
    assert [t.text for t in root.iter(f"{NS}text")] == ["No data yet"]
    assert not list(root.iter(f"{NS}rect")) and not list(root.iter(f"{NS}polyline"))


def test_series_length_must_match_the_x_labels() -> None:
    with pytest.raises(ValueError, match="x labels"):
        line_chart(["a", "b"], {"s": [1.0]}, title="t")
    with pytest.raises(ValueError, match="x labels"):
        stacked_bar_chart(["a"], {"s": [1.0, 2.0]}, title="t")


def test_zeros_on_a_fixed_scale_are_drawn() -> None:
    root = parse(line_chart(["1", "2"], {"accuracy": [0.0, 0.0]}, title="t", y_max=100))
    assert len(list(root.iter(f"{NS}polyline"))) == 1
