"""What a training run leaves besides its models: ``train.log`` and the TensorBoard files
(hparams, the retrieval-example slider, no step logged twice after a resume), on a tiny
run killed mid-epoch, resumed, then called again once complete."""
import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import SessionLog
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from sfrs import distributed
from sfrs.config import load_config, to_dict
from sfrs.training import train
from sfrs.training.hparams import flatten_config
from sfrs.training.run import TrainingRun
from sfrs.training.trainer import EXAMPLES_TAG, Interrupted
from tests.tiny import TINY_TRAINING

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
STOP_AFTER = 3  # steps: inside epoch 1, one step past its last checkpoint (global step 2)


def tiny_config():
    return load_config(overrides=TINY_TRAINING + ["train.queries_per_epoch=8"], generations=1, epochs=2)


class Invocation:
    """One call of ``train``: the lines it printed, and what ``train.log`` held at each step."""

    def __init__(self, output: Path, stop_after=None):
        self.output, self.stop_after = output, stop_after
        self.printed, self.log_at_steps, self.results = [], [], None

    def on_step(self):
        self.log_at_steps.append(((self.output / "train.log").read_text(), len(self.printed)))
        if self.stop_after is not None and len(self.log_at_steps) >= self.stop_after:
            raise Interrupted()

    def __call__(self):
        torch.manual_seed(0)
        try:
            self.results = train(tiny_config(), self.output, progress=False, log=self.printed.append,
                                 on_step=self.on_step)
        except Interrupted:
            pass
        return self


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, private_cache):
    output = tmp_path_factory.mktemp("run")
    calls = [Invocation(output, STOP_AFTER)(), Invocation(output)(), Invocation(output)()]
    return output, calls


def log_lines(output):
    return (output / "train.log").read_text().splitlines()


def without_stamps(lines):
    for line in lines:
        assert re.match(STAMP, line), line
    return [re.sub("^" + STAMP, "", line) for line in lines]


def accumulator(output):
    acc = EventAccumulator(str(output / "tb"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    return acc.Reload()


def raw_events(output):
    """Every event of every file, unfiltered (the accumulator hides what a purge removes)."""
    for path in sorted((output / "tb").glob("events.out.tfevents.*")):
        yield from EventFileLoader(str(path)).Load()


def summary_tags(event):
    return [value.tag for value in event.summary.value] if event.HasField("summary") else []


def test_train_log__every_printed_line_time_stamped_and_appended_on_resume(run_folder):
    output, calls = run_folder
    printed = [line for call in calls for line in call.printed]
    assert without_stamps(log_lines(output)) == printed
    assert calls[1].printed[0].startswith(f"resuming {output} at generation 0, epoch 1")
    assert calls[2].printed[0].startswith(f"resuming {output} at generation 1")
    assert any(line.startswith("generation 0 epoch 1:") for line in calls[1].printed)


def test_train_log__holds_what_was_printed_at_every_step(run_folder):
    _, calls = run_folder
    first = calls[0]
    assert len(first.log_at_steps) == STOP_AFTER
    for text, count in first.log_at_steps:
        assert without_stamps(text.splitlines()) == first.printed[:count]


def test_train_log__written_by_the_main_process_only(monkeypatch, tmp_path, private_cache):
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    run = TrainingRun(tiny_config(), tmp_path, device=torch.device("cpu"), log=lambda line: None)
    run.start_log()
    run.log("a line")
    run.close()
    assert not (tmp_path / "train.log").exists()


def test_tensorboard_hparams__flattened_config_and_final_recalls_once(run_folder):
    output, calls = run_folder
    results = calls[1].results
    acc = accumulator(output)
    content = acc.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    expected = flatten_config(to_dict(tiny_config()))
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.01)
    assert start.hparams["data.dataset"].string_value == "synthetic:tiny"
    assert start.hparams["eval.recall_at"].string_value == ",".join(str(n) for n in tiny_config().eval.recall_at)
    assert start.hparams["train.generations.0.epochs"].number_value == 2
    assert set(start.hparams) == set(expected)
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metric_tags = {info.name.tag for info in experiment.metric_infos}
    last = results["generations"][-1]
    wanted = {**{f"hparams/val_R@{n}": v for n, v in last["val"].items()},
              **{f"hparams/test_R@{n}": v for n, v in last["test"].items()},
              "hparams/best_val_R@5": results["best"]["val"]["5"]}
    assert metric_tags == set(wanted)
    for tag, value in wanted.items():
        assert [e.value for e in acc.Scalars(tag)] == [pytest.approx(value)], tag
    # written by the call that finished the run, not again by the one after it
    assert [tag for event in raw_events(output) for tag in summary_tags(event)].count(
        "_hparams_/session_start_info") == 1


def test_tensorboard_examples__one_tag_with_a_step_per_epoch(run_folder):
    output, _ = run_folder
    acc = accumulator(output)
    retrieval_tags = [tag for tag in acc.Tags()["images"] if tag.startswith("retrieval")]
    assert retrieval_tags == [EXAMPLES_TAG]
    assert [image.step for image in acc.Images(EXAMPLES_TAG)] == [0, 1]


def test_tensorboard_after_resume__every_step_logged_once(run_folder):
    output, calls = run_folder
    acc = accumulator(output)
    steps = [e.step for e in acc.Scalars("loss/total")]
    assert steps == list(range(sum(e["steps"] for e in calls[1].results["epochs"])))
    # the resumed writer told TensorBoard to drop what the killed run logged from its checkpoint on
    starts = [e.step for e in raw_events(output)
              if e.HasField("session_log") and e.session_log.status == SessionLog.START]
    assert starts == [2]
