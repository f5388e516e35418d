"""Grid entries: values split at top-level commas (lists, mappings and quoted strings kept
whole), bad entries named in one error, the product x seeds as folder names."""
import pytest

from sfrs.config import load_config
from sfrs.errors import ConfigError
from sfrs.sweep import SweepSpec, TrainOptions, configurations, parse_grid, parse_grid_entry, parse_seed_list


@pytest.mark.parametrize("entry, texts, values", [
    ("optim.lr=0.001,1e-2", ("0.001", "1e-2"), (0.001, 0.01)),
    ("model.input_size=[96,128],[128,160]", ("[96,128]", "[128,160]"), ([96, 128], [128, 160])),
    ("model.head_options={clusters: 8, alpha: 1},{clusters: 16}", ("{clusters: 8, alpha: 1}", "{clusters: 16}"),
     ({"clusters": 8, "alpha": 1}, {"clusters": 16})),
    ('data.dataset="a,b",c', ('"a,b"', "c"), ("a,b", "c")),
    ("data.dataset='x,[y',z", ("'x,[y'", "z"), ("x,[y", "z")),
    ("train.generations.*.soft_weight= 0 , 0.5", ("0", "0.5"), (0, 0.5)),
    ("optim.optimizer=sgd", ("sgd",), ("sgd",)),
])
def test_parse_grid_entry__splits_at_commas_outside_brackets_braces_and_quotes(entry, texts, values):
    axis = parse_grid_entry(entry)
    assert axis.texts == texts
    assert axis.values == values


@pytest.mark.parametrize("entry, fragment", [
    ("optim.lr", "expected KEY=V1,V2"),
    ("=1,2", "expected KEY=V1,V2"),
    ("optim lr=1", "dotted config key"),
    ("optim.lr=1,,2", "empty value"),
    ("optim.lr=1,", "empty value"),
    ("optim.lr=", "empty value"),
    ("model.input_size=[96,128", "unclosed '['"),
    ("model.input_size=96,128]", "unmatched ']'"),
    ("model.head_options={a: [1}]", "unmatched '}'"),
    ('data.dataset="a,b', "unclosed '\"'"),
    ("optim.lr=0.1,0.10", "given twice"),
    ("seed=1,2", "--seeds"),
])
def test_parse_grid_entry__bad_syntax_is_one_line_naming_the_entry(entry, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_grid_entry(entry)
    message = str(caught.value)
    assert f"--grid '{entry}'" in message and fragment in message and "\n" not in message


def test_parse_grid__a_key_varied_twice_is_refused():
    with pytest.raises(ConfigError, match="more than one --grid"):
        parse_grid(["optim.lr=1,2", "optim.lr=3"])


def test_configurations__product_in_grid_order_with_readable_safe_names():
    axes = parse_grid(["optim.lr=0.001,1e-2", "model.input_size=[96,128],[128,160]", "data.dataset=a/b"])
    found = configurations(axes)
    assert [c.name for c in found] == [
        "optim.lr=0.001,model.input_size=[96,128],data.dataset=a_b",
        "optim.lr=0.001,model.input_size=[128,160],data.dataset=a_b",
        "optim.lr=0.01,model.input_size=[96,128],data.dataset=a_b",
        "optim.lr=0.01,model.input_size=[128,160],data.dataset=a_b",
    ]
    assert found[1].values == {"optim.lr": 0.001, "model.input_size": [128, 160], "data.dataset": "a/b"}
    assert found[1].overrides == ("optim.lr=0.001", "model.input_size=[128,160]", "data.dataset=a/b")
    assert [c.name for c in configurations([])] == ["default"]


def test_configurations__colliding_or_long_names_get_distinct_hashes():
    names = [c.name for c in configurations(parse_grid(["data.dataset=a/b,a_b,'a b'"]))]
    assert len(set(names)) == 3 and all(n.startswith("data.dataset=a_b~") for n in names)
    long_name = configurations(parse_grid(["data.dataset=" + "x" * 300]))[0].name
    assert len(long_name) <= 120 and "~" in long_name


def test_plan__runs_are_product_x_seeds_with_configs_as_sfrs_train_builds_them():
    options = TrainOptions(generations=2, overrides=("optim.lr=0.5", "data.batch_size=4"))
    spec = SweepSpec(axes=tuple(parse_grid(["optim.lr=0.001,0.01", "train.generations.1.soft_weight=0,0.5"])),
                     seeds=(0, 3), options=options)
    runs = spec.plan()
    assert [r.folder for r in runs][:3] == [
        "runs/optim.lr=0.001,train.generations.1.soft_weight=0/seed0",
        "runs/optim.lr=0.001,train.generations.1.soft_weight=0/seed3",
        "runs/optim.lr=0.001,train.generations.1.soft_weight=0.5/seed0",
    ]
    assert len(runs) == 8
    last = runs[-1]
    assert last.config.optim.lr == 0.01 and last.config.seed == 3 and last.config.data.batch_size == 4
    assert [g.soft_weight for g in last.config.train.generations] == [0.0, 0.5]
    expected = load_config(None, ["optim.lr=0.5", "data.batch_size=4", "optim.lr=0.01",
                                  "train.generations.1.soft_weight=0.5"], generations=2, direct={"seed": 3})
    assert last.config == expected
    argv = last.train_argv(options, __import__("pathlib").Path("/out"))
    assert argv == ["--generations", "2", "--set", "optim.lr=0.5", "--set", "data.batch_size=4", "--set",
                    "optim.lr=0.01", "--set", "train.generations.1.soft_weight=0.5", "--seed", "3", "--output",
                    "/out/runs/optim.lr=0.01,train.generations.1.soft_weight=0.5/seed3"]


def test_plan__a_bad_value_names_its_grid_entry_and_a_bad_key_too():
    with pytest.raises(ConfigError) as caught:
        SweepSpec(axes=tuple(parse_grid(["optim.lr=0.01,fast"])), seeds=(0,)).plan()
    assert str(caught.value).startswith("--grid 'optim.lr=0.01,fast': value 'fast': ") and "optim.lr" in str(caught.value)
    with pytest.raises(ConfigError, match=r"--grid 'optim.speed=1': value '1': unknown config key 'optim.speed'"):
        SweepSpec(axes=tuple(parse_grid(["optim.speed=1"])), seeds=(0,)).plan()
    # loss terms are free-form in the config and checked against their registry
    with pytest.raises(ConfigError, match=r"^--grid 'loss.terms.soft.weight=1,off': value 'off': loss.terms.soft.weight"):
        SweepSpec(axes=tuple(parse_grid(["loss.terms.soft.weight=1,off"])), seeds=(0,)).plan()


def test_plan__a_combination_the_validation_refuses_is_caught_before_any_run():
    # every generation's soft weight 0.5 includes generation 0, which has no teacher
    with pytest.raises(ConfigError, match=r"^--grid 'train.generations.\*.soft_weight=0,0.5': value '0.5': "
                                          r"train.generations.0.soft_weight must be 0"):
        SweepSpec(axes=tuple(parse_grid(["train.generations.*.soft_weight=0,0.5"])), seeds=(0,)).plan()
    common = TrainOptions(overrides=("optim.speed=1",))  # the common options' error is theirs alone
    with pytest.raises(ConfigError, match=r"^unknown config key 'optim.speed'"):
        SweepSpec(axes=tuple(parse_grid(["optim.lr=1,2"])), seeds=(0,), options=common).plan()


def test_train_options__the_seed_is_the_sweeps():
    with pytest.raises(ConfigError, match="--seeds"):
        TrainOptions(overrides=("seed=4",))


def test_parse_seed_list():
    assert parse_seed_list("0,3,7") == [0, 3, 7]
    for bad in ("0,a", "1,1", "-1"):
        with pytest.raises(ConfigError, match="--seed-list"):
            parse_seed_list(bad)
