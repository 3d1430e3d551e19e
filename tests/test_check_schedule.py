"""When the iterative baselines consult their stop rule: ``checks_per_epoch`` per epoch (the default)
or, with ``IterativeConfig.check_every``, after every N optimizer steps counted over the whole run."""

import pytest
import torch

from pipeline.datasets.pairs import PairData
from pipeline.datasets.shards import ReadReport
from pipeline.unlearn.baselines.iterative import IterativeConfig, train


class TwoTowers(torch.nn.Module):
    """The smallest model ``train`` can drive: the CLIP output dict from two linear towers."""

    def __init__(self):
        super().__init__()
        self.image = torch.nn.Linear(12, 4)
        self.text = torch.nn.Embedding(10, 4)
        self.logit_scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, images, tokens):
        return {"image_features": self.image(images.flatten(1)),
                "text_features": self.text(tokens).mean(1), "logit_scale": self.logit_scale.exp()}


class RecordingRule:
    """Stands in for ``StopRule``: records the (step, epoch) of each call; passes at call ``n``."""

    def __init__(self, pass_at: int | None = None):
        self.calls, self.pass_at = [], pass_at

    def __call__(self, step, epoch, **curves):
        self.calls.append((step, epoch))
        return len(self.calls) == self.pass_at

    @property
    def steps(self):
        return [s for s, _ in self.calls]


def pairs(n: int, seed: int) -> PairData:
    g = torch.Generator().manual_seed(seed)
    return PairData(torch.randn(n, 3, 2, 2, generator=g), torch.randint(0, 10, (n, 3), generator=g),
                    [f"caption {i}" for i in range(n)], ReadReport())


def cfg(epochs: int, check_every: int | None, checks_per_epoch: int = 1) -> IterativeConfig:
    return IterativeConfig(lr=1e-3, epochs=epochs, batch_size=2, weight_decay=0.0,
                           checks_per_epoch=checks_per_epoch, seed=0, mask_fraction=0.5,
                           check_every=check_every)


GA = [("ga", pairs(5, 1))]  # 5 pairs in batches of 2: 3 steps per epoch (2, 2, 1)
GAFT = GA + [("ft", pairs(6, 2))]  # + 3 FT steps (the FT phase keeps batches of >= 2): 6 per epoch


def run(phases, config, rule=None):
    rule = rule or RecordingRule()
    torch.manual_seed(0)
    train(TwoTowers(), phases, config, rule)
    return rule


def test_check_every_counts_optimizer_steps_across_epochs():
    rule = run(GA, cfg(epochs=3, check_every=2))  # 9 steps; epochs end after steps 3, 6, 9
    assert rule.steps == [2, 4, 6, 8]  # step 6 is an epoch's end on the schedule; 3 and 9 are not
    assert [e for _, e in rule.calls] == pytest.approx([2 / 3, 4 / 3, 2, 8 / 3])


def test_check_every_runs_through_both_phases_of_an_epoch():
    assert run(GAFT, cfg(epochs=2, check_every=4)).steps == [4, 8, 12]
    assert run(GAFT, cfg(epochs=2, check_every=5)).steps == [5, 10]  # run's end (12) not checked
    assert run(GA, cfg(epochs=2, check_every=1)).steps == [1, 2, 3, 4, 5, 6]


def test_check_every_ignores_checks_per_epoch():
    assert run(GA, cfg(3, 2, checks_per_epoch=4)).steps == run(GA, cfg(3, 2, 1)).steps


def test_training_stops_at_the_first_passing_check():
    rule = run(GA, cfg(epochs=10, check_every=2), RecordingRule(pass_at=3))
    assert rule.steps == [2, 4, 6]


def test_default_is_the_checks_per_epoch_schedule():
    # 3 steps per epoch, 2 checks per epoch: after in-epoch steps round(1.5) = 2 and 3
    assert run(GA, cfg(epochs=3, check_every=None, checks_per_epoch=2)).steps == [2, 3, 5, 6, 8, 9]
    assert run(GA, cfg(epochs=2, check_every=None)).steps == [3, 6]  # once per epoch, at its end


def test_check_every_must_be_positive():
    with pytest.raises(ValueError, match="check_every"):
        run(GA, cfg(epochs=1, check_every=0))
