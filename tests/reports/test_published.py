"""Published R@1: every value has a real source or is marked unsourced, approximations are
marked, and reports point to a file that ships with the package."""
from pathlib import Path

import sfrs
from sfrs.reports import EvalAllSummary
from sfrs.reports.published import (
    PUBLISHED_APPROXIMATE,
    PUBLISHED_R1,
    PUBLISHED_SOURCE,
    UNSOURCED,
    published_entries,
    published_source,
)

SFRS = "SFRS (4096)"


def test_published_source__sfrs_paper_only_for_pitts250k_and_tokyo247_the_rest_unsourced():
    for name in PUBLISHED_R1[SFRS]:
        source = published_source(SFRS, name)
        if name in ("pitts250k", "tokyo247"):
            assert "Ge et al." in source and "ECCV 2020" in source
        else:
            assert source == UNSOURCED, name
    assert (PUBLISHED_R1[SFRS]["pitts250k"], PUBLISHED_R1[SFRS]["tokyo247"]) == (90.7, 85.4)


def test_published_source__every_other_value_cites_its_method_paper_with_venue_and_year():
    for method, values in PUBLISHED_R1.items():
        for name in values:
            source = published_source(method, name)
            assert source == UNSOURCED or any(str(year) in source for year in range(2016, 2025)), (method, name)


def test_published_source__points_to_a_file_shipped_in_the_package():
    shipped = Path(sfrs.__file__).parent.parent / PUBLISHED_SOURCE.split()[0]
    assert PUBLISHED_SOURCE.startswith("sfrs/") and shipped.is_file()
    assert "shared/" not in PUBLISHED_SOURCE


def test_report_json__lists_the_published_values_of_the_evaluated_data_sets_with_source_and_approximation():
    summary = EvalAllSummary(checkpoint="c.pt", datasets_root="/data", options={},
                             results={"sped": {}, "my_city": {}})
    entries = summary.to_json()["published"]
    assert {e["dataset"] for e in entries} == {"sped"}
    mixvpr = next(e for e in entries if e["method"].startswith("MixVPR"))
    assert mixvpr["approximate"] and ("MixVPR R50 (4096)", "sped") in PUBLISHED_APPROXIMATE
    assert next(e for e in entries if e["method"] == SFRS)["source"] == UNSOURCED
    assert published_entries(["tokyo247"]) == [
        {"method": SFRS, "dataset": "tokyo247", "r1": 85.4, "approximate": False, "source": published_source(SFRS, "tokyo247")}]
