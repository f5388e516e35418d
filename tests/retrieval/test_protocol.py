"""The evaluation protocol of a split: conventions of its data set, then explicit overrides."""
import numpy as np
import pytest

from sfrs.data import Split
from sfrs.errors import ConfigError
from sfrs.retrieval import NO_QUERY_RESIZE, describe_protocol, resolve_protocol
from sfrs.retrieval.protocol import USER_OVERRIDE


def split_named(name, place_ids=(0, 0, 1)):
    return Split(
        dataset=name, split="test", database_paths=["a.jpg", "b.jpg", "c.jpg"], query_paths=["q.jpg"],
        database_utm=np.zeros((3, 2)), query_utm=np.zeros((1, 2)),
        database_place_ids=None if place_ids is None else np.asarray(place_ids),
    )


def test_resolve_protocol__tokyo247_gets_its_conventions_and_says_so():
    protocol = resolve_protocol(split_named("Tokyo_24-7"))
    assert (protocol.threshold_m, protocol.nms, protocol.query_resize) == (25.0, True, 640)
    assert dict(protocol.sources) == {key: "conventions of tokyo247" for key in ("threshold_m", "nms", "query_resize")}
    assert protocol.overridden == () and protocol.to_json()["conventions"] == "tokyo247"


def test_resolve_protocol__overrides_win_and_are_named_as_such():
    protocol = resolve_protocol(split_named("tokyo247"), threshold=10, nms=False, query_resize=NO_QUERY_RESIZE)
    assert (protocol.threshold_m, protocol.nms, protocol.query_resize) == (10.0, False, None)
    assert protocol.overridden == ("threshold_m", "nms", "query_resize")
    assert any("query_resize none instead of 640" in note for note in protocol.notes)
    line = describe_protocol(protocol.to_json())
    assert "within 10 m (user override)" in line and "no NMS (user override)" in line


def test_resolve_protocol__an_override_equal_to_the_conventions_keeps_them_as_source():
    protocol = resolve_protocol(split_named("tokyo247"), threshold=25.0, nms=True, query_resize=640)
    assert protocol.overridden == () and protocol.source("nms") == "conventions of tokyo247"


def test_resolve_protocol__unknown_name_gets_the_default_protocol_stated_as_default():
    protocol = resolve_protocol(split_named("my_city"))
    assert (protocol.threshold_m, protocol.nms, protocol.query_resize, protocol.known) == (25.0, False, None, False)
    assert set(dict(protocol.sources).values()) == {"default protocol"}
    assert protocol.to_json()["conventions"] is None
    assert resolve_protocol(split_named("my_city"), "pitts30k").source("nms") == "conventions of pitts30k"
    assert resolve_protocol(split_named("my_city"), query_resize=320).source("query_resize") == USER_OVERRIDE


def test_resolve_protocol__conventions_nms_dropped_with_a_note_without_place_ids_but_an_asked_nms_kept():
    dropped = resolve_protocol(split_named("tokyo247", place_ids=None))
    assert not dropped.nms and "not applied" in dropped.source("nms")
    assert any("NMS of the conventions NOT applied" in note for note in dropped.notes)
    assert resolve_protocol(split_named("my_city", place_ids=None), nms=True).nms


@pytest.mark.parametrize("options", [dict(threshold=0), dict(threshold=-5.0), dict(query_resize=-1)])
def test_resolve_protocol__non_positive_values_are_one_line_config_errors(options):
    with pytest.raises(ConfigError, match="positive"):
        resolve_protocol(split_named("pitts30k"), **options)
