"""A step in passes (``optim.tuples_per_pass``) gives the whole batch's losses and
gradients, with the frozen layers chunked too; the trainer accumulates, synchronises once,
calls after_step once, guards on the whole step's loss, and resumes bit-exactly."""
import contextlib
import copy
import math
from types import SimpleNamespace

import pytest
import torch

from sfrs.config import Config, GenerationConfig, LossConfig, ModelConfig, OptimConfig, load_config
from sfrs.errors import ConfigError
from sfrs.models import build_network
from sfrs.training import LossTerm, Objective, TermContext, TupleBatch, build_terms, register_term
from sfrs.training.objective import pass_shares, split_batch, term_mean_over
from sfrs.training.state import History, Position, TrainingState
from sfrs.training.terms import TERMS
from sfrs.training.trainer import Interrupted, Trainer, TrainingError, forward_backward
from tests.training.test_trainer import run, weights
from tests.tiny import TINY_TRAINING

# 5 tuples of query, positive, 2 negatives, 3 difficult positives (padded with -1):
# tuples 0 and 1 have no difficult positive, tuple 3 one, the others more.
DIFFICULT_PER_TUPLE = (0, 0, 2, 1, 3)
NEGATIVES, SLOTS = 2, 3


class LookupNetwork(torch.nn.Module):
    """Image k carries the index of its table row in pixel (0, 0, 0); the network returns
    that row's 9 L2-normalised region descriptors (or the first, the global one)."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone())

    def forward(self, images, regions=False):
        rows = torch.nn.functional.normalize(self.table[images[:, 0, 0, 0].long()], dim=-1)
        return rows if regions else rows[:, 0]


def tuple_batch(images, difficult_per_tuple=DIFFICULT_PER_TUPLE, seed=0, dtype=torch.float64):
    """A batch laid out as TupleDataset.collate does: each tuple's images in one block."""
    generator = torch.Generator().manual_seed(seed)
    query, positive, negatives, difficult, offset = [], [], [], [], 0
    for count in difficult_per_tuple:
        query.append(offset)
        positive.append(offset + 1)
        negatives.append([offset + 2 + j for j in range(NEGATIVES)])
        difficult.append([offset + 2 + NEGATIVES + j if j < count else -1 for j in range(SLOTS)])
        offset += 2 + NEGATIVES + count
    return TupleBatch(
        images=images(offset), query=torch.tensor(query), positive=torch.tensor(positive),
        negatives=torch.tensor(negatives), difficult=torch.tensor(difficult),
        teacher=torch.rand(len(query), SLOTS, 9, generator=generator, dtype=dtype) * 2 - 1,
    )


def lookup_setup(loss=None, generation=1, seed=0):
    torch.manual_seed(seed)
    table = torch.randn(sum(2 + NEGATIVES + c for c in DIFFICULT_PER_TUPLE), 9, 8, dtype=torch.float64)

    def images(count):
        pixels = torch.zeros(count, 3, 2, 2, dtype=torch.float64)
        pixels[:, 0, 0, 0] = torch.arange(count)
        return pixels

    network = LookupNetwork(table)
    schedule = GenerationConfig(soft_weight=0.5, teacher_temperature=0.06)
    loss = loss or LossConfig()
    context = TermContext(generation=generation, schedule=schedule, temperature=loss.temperature, network=network)
    return Objective(network, build_terms(loss, context)), tuple_batch(images, seed=seed)


def whole_batch(objective, batch):
    """The reference: one forward and backward of the whole batch."""
    objective.zero_grad(set_to_none=True)
    out = objective(batch)
    out.total.backward()
    values = {name: float(value.detach()) for name, value in out.terms.items()}
    values["total"] = float(out.total.detach())
    return values, {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


def in_passes(objective, batch, tuples_per_pass):
    objective.zero_grad(set_to_none=True)
    losses = forward_backward(objective, objective, batch, tuples_per_pass, torch.device("cpu"))
    return losses, {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


def test_split_batch__each_pass_holds_its_tuples_images_and_labels():
    _, batch = lookup_setup()
    passes = split_batch(batch, 2)
    assert [len(p.query) for p in passes] == [2, 2, 1]
    t = 0
    for part in passes:
        for b in range(len(part.query)):
            for field in ("query", "positive"):
                assert torch.equal(part.images[getattr(part, field)[b]], batch.images[getattr(batch, field)[t]])
            assert torch.equal(part.images[part.negatives[b]], batch.images[batch.negatives[t]])
            valid = batch.difficult[t] >= 0
            assert torch.equal(part.difficult[b] >= 0, valid)
            assert torch.equal(part.images[part.difficult[b][valid]], batch.images[batch.difficult[t][valid]])
            assert torch.equal(part.teacher[b], batch.teacher[t])
            t += 1
    assert split_batch(batch, 0) == [batch] and split_batch(batch, 5) == [batch]


def test_split_batch__refuses_a_batch_not_laid_out_tuple_by_tuple():
    _, batch = lookup_setup()
    batch.negatives[0, 0] = int(batch.query[3])  # tuple 0 borrows an image of tuple 3
    with pytest.raises(ValueError, match="not laid out tuple by tuple"):
        split_batch(batch, 2)


def test_pass_shares__soft_term_by_tuples_with_a_difficult_positive_hard_term_by_tuples():
    objective, batch = lookup_setup()
    passes = split_batch(batch, 2)  # tuples (0, 1) (2, 3) (4): 0, 2, 1 with difficult positives
    assert [term_mean_over(objective.terms["soft"], p) for p in passes] == [0, 2, 1]
    shares = pass_shares(objective, passes)
    assert [s["soft"] for s in shares] == pytest.approx([0, 2 / 3, 1 / 3])
    assert [s["hard"] for s in shares] == pytest.approx([2 / 5, 2 / 5, 1 / 5])


@pytest.mark.parametrize("hard_loss", ["sare_ind", "sare_joint", "triplet"])
@pytest.mark.parametrize("tuples_per_pass", [1, 2, 3])
def test_passes__losses_and_gradients_equal_the_whole_batch(tuples_per_pass, hard_loss):
    loss = LossConfig(terms={"hard": {"weight": 1.0, "loss": hard_loss}, "soft": {"weight": 1.0}})
    objective, batch = lookup_setup(loss)
    values, expected = whole_batch(objective, batch)
    losses, got = in_passes(objective, batch, tuples_per_pass)
    assert list(losses.values) == ["hard", "soft", "total"]
    for name, value in values.items():
        assert losses.values[name] == pytest.approx(value, rel=1e-12), name
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-13)


def test_passes__a_step_without_any_difficult_positive_has_a_zero_soft_term():
    objective, _ = lookup_setup()
    images = lambda count: torch.zeros(count, 3, 2, 2, dtype=torch.float64)  # noqa: E731
    batch = tuple_batch(images, difficult_per_tuple=(0, 0, 0))
    values, expected = whole_batch(objective, batch)
    losses, got = in_passes(objective, batch, 1)
    assert losses.values["soft"] == values["soft"] == 0.0
    assert losses.values["total"] == pytest.approx(values["total"], rel=1e-12)
    torch.testing.assert_close(got["network.table"], expected["network.table"], rtol=1e-10, atol=1e-13)


def test_passes__diagnostics_are_weighted_like_their_term():
    objective, batch = lookup_setup()
    whole = objective(batch).stats
    losses, _ = in_passes(objective, batch, 2)
    # the first pass has no difficult positive (undefined entropies, weight 0)
    for key in ("soft/teacher_entropy", "soft/student_entropy", "soft/agreement"):
        assert losses.stats[key] == pytest.approx(whole[key], rel=1e-9), key


def test_real_network__chunked_frozen_layers_and_passes_equal_the_whole_batch():
    """VGG16 (frozen conv1..conv4) + NetVLAD on 32x32 images, in float64: NetVLAD's
    centroid gradient is a sum with much cancellation, float32 rounding shows in it."""
    config = ModelConfig(backbone="vgg16", input_size=(32, 32), head_options={"clusters": 4})
    torch.manual_seed(0)
    network = build_network(config).double()
    generator = torch.Generator().manual_seed(3)
    images = lambda count: torch.randn(count, 3, 32, 32, generator=generator, dtype=torch.float64)  # noqa: E731
    batch = tuple_batch(images)
    schedule = GenerationConfig(soft_weight=0.5, teacher_temperature=0.06)
    objectives = []
    for chunk in (batch.images.shape[0], 1):
        copied = copy.deepcopy(network)
        copied.set_training_memory(chunk, False)
        context = TermContext(generation=1, schedule=schedule, temperature=0.07, network=copied)
        objectives.append(Objective(copied, build_terms(LossConfig(), context)).train())
    values, expected = whole_batch(objectives[0], batch)
    losses, got = in_passes(objectives[1], batch, 2)
    for name, value in values.items():
        assert losses.values[name] == pytest.approx(value, rel=1e-12), name
    assert expected.keys() == got.keys() and len(expected) == 8  # conv5_1..conv5_3 + biases, centroids, assignment
    for name in expected:
        scale = float(expected[name].abs().max())
        assert float((got[name] - expected[name]).abs().max()) <= 1e-10 * scale, name


def test_term_relating_the_tuples__refuses_passes():
    @register_term("batch_spread")
    class Spread(LossTerm):
        def mean_over(self, batch):
            return None  # a statistic of the whole batch

        def forward(self, batch, descriptors):
            return -descriptors.global_.var(dim=0).sum()

    try:
        objective, batch = lookup_setup(LossConfig(terms={"hard": {}, "batch_spread": {}}))
        assert pass_shares(objective, [batch])[0]["batch_spread"] == 1.0
        with pytest.raises(ValueError, match="'batch_spread' relates the tuples"):
            in_passes(objective, batch, 2)
    finally:
        TERMS.pop("batch_spread")


class Synchronised(torch.nn.Module):
    """Stands for DistributedDataParallel: records in which passes gradients would sync."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.synced = []
        self.skipping = False

    @contextlib.contextmanager
    def no_sync(self):
        self.skipping = True
        yield
        self.skipping = False

    def forward(self, batch):
        self.synced.append(not self.skipping)
        return self.module(batch)


def test_passes__gradients_synchronised_in_the_last_pass_only():
    objective, batch = lookup_setup()
    wrapper = Synchronised(objective)
    forward_backward(wrapper, objective, batch, 2, torch.device("cpu"))
    assert wrapper.synced == [False, False, True]


# ---------------------------------------------------------------------------- trainer
class Writer:
    def __init__(self):
        self.scalars = {}

    def add_scalar(self, name, value, step):
        self.scalars.setdefault(name, []).append(value)


def trainer_for(tuples_per_pass, terms=None):
    """A Trainer on a small GeoNet (4 tuples, 16x16 images), without a run folder."""
    model = ModelConfig(input_size=(16, 16), head_options={"clusters": 4})
    config = Config(model=model, optim=OptimConfig(optimizer="sgd", lr=0.1, tuples_per_pass=tuples_per_pass))
    torch.manual_seed(0)
    network = build_network(model)
    schedule = GenerationConfig(soft_weight=0.5)
    context = TermContext(generation=1, schedule=schedule, temperature=0.07, network=network)
    loss = LossConfig(terms=terms or {"hard": {}, "soft": {}})
    objective = Objective(network, build_terms(loss, context))
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.1, momentum=0.9)
    run = SimpleNamespace(config=config, device=torch.device("cpu"), writer=Writer(),
                          paths=SimpleNamespace(last="last.pt"))
    state = TrainingState(config={}, position=Position(), history=History())
    trainer = Trainer(run, 1, schedule, objective, optimizer, None, None, None, state, 0.0)
    images = lambda count: torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(4))  # noqa: E731
    return trainer, tuple_batch(images, difficult_per_tuple=(0, 2, 1, 3), dtype=torch.float32)


def test_trainer_step__passes_update_the_weights_as_the_whole_batch():
    whole, batch = trainer_for(0)
    passes, _ = trainer_for(1)
    for _ in range(2):
        expected, got = whole.step(batch, 0), passes.step(batch, 0)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-5), name
    for (name, a), (_, b) in zip(whole.objective.named_parameters(), passes.objective.named_parameters()):
        assert float((a - b).detach().abs().max()) <= 1e-5 * float(a.detach().abs().max()), name
    logged = passes.run.writer.scalars
    assert logged["loss/total"] == pytest.approx(whole.run.writer.scalars["loss/total"], rel=1e-5)


def test_trainer_step__after_step_once_per_optimiser_step():
    @register_term("count_steps")
    class Count(LossTerm):
        def __init__(self, options=None, context=None):
            super().__init__(options, context)
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))
            self.forwards = 0

        def forward(self, batch, descriptors):
            self.forwards += 1
            return 0 * descriptors.global_.sum()

        def after_step(self):
            self.steps += 1

    try:
        trainer, batch = trainer_for(1, terms={"hard": {}, "count_steps": {}})
        trainer.step(batch, 0)
        trainer.step(batch, 0)
        term = trainer.objective.terms["count_steps"]
        assert term.forwards == 8 and int(term.steps) == 2
    finally:
        TERMS.pop("count_steps")


def test_trainer_step__non_finite_loss_in_a_later_pass_stops_before_the_update():
    @register_term("poison_last")
    class Poison(LossTerm):
        def forward(self, batch, descriptors):
            # finite in every pass but the one holding the last tuple
            last = bool((batch.difficult[-1] >= 0).sum() == 3)
            return descriptors.global_.sum() * (math.nan if last else 0.0)

    try:
        trainer, batch = trainer_for(1, terms={"hard": {}, "poison_last": {}})
        before = copy.deepcopy(trainer.objective.state_dict())
        with pytest.raises(TrainingError, match="non-finite loss at generation 1"):
            trainer.step(batch, 0)
        for key, value in trainer.objective.state_dict().items():
            assert torch.equal(value, before[key]), key
    finally:
        TERMS.pop("poison_last")


def test_tuples_per_pass__validated():
    with pytest.raises(ConfigError, match="optim.tuples_per_pass"):
        load_config(overrides=["optim.tuples_per_pass=5"])
    with pytest.raises(ConfigError, match="model.frozen_chunk"):
        load_config(overrides=["model.frozen_chunk=-1"])


def test_training_in_passes__resumes_bit_exactly(tmp_path_factory, private_cache):
    # 2 steps per epoch, a checkpoint after each: the run stops mid-chunk in generation 1
    short = ["train.queries_per_epoch=8", "train.checkpoint_every=1", "optim.tuples_per_pass=2", "model.frozen_chunk=3"]
    config = load_config(overrides=TINY_TRAINING + short, generations=2, epochs=1)
    reference_dir, resumed_dir = tmp_path_factory.mktemp("passes"), tmp_path_factory.mktemp("passes_resumed")
    reference = run(config, reference_dir)
    with pytest.raises(Interrupted):
        run(config, resumed_dir, stop_after=3)
    resumed = run(config, resumed_dir)
    assert [(g["val"], g["test"]) for g in reference["generations"]] == \
        [(g["val"], g["test"]) for g in resumed["generations"]]
    final_ref, final_resumed = weights(reference_dir / "final.pt"), weights(resumed_dir / "final.pt")
    for name in final_ref:
        torch.testing.assert_close(final_ref[name], final_resumed[name], rtol=0, atol=0)
