"""Membership inference on the paired image-text cosine (one feature per pair).

Two questions, two numbers:

* ``mia_accuracy``: can a logistic regression tell forget-test pairs from held-out non-members?
  About 0.5 means the forget set looks like unseen data; near 1.0, that it is told apart (either
  way: still matched much better than unseen pairs, or pushed below them).
* ``mia_efficacy`` (SalUn's MIA-efficacy): an attacker learns what *membership* looks like on
  pairs the model certainly trained on (the retain split, label 1 = member) against pairs it never
  saw (the non-members, label 0), and is then asked about the forget-test pairs. The score is the
  share of forget-test pairs it judges **non-member**: higher = the forgotten concept's pairs look
  more unseen (0 before unlearning when they are still recognised as training data).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MEMBER, NONMEMBER = 1, 0
MIA_MIN = 5  # members and non-members each, at least


def mia_accuracy(members: np.ndarray, nonmembers: np.ndarray, seeds: int = 10, splits: int = 10,
                 test_size: float = 0.2) -> tuple[float, float]:
    """Mean and std of held-out accuracy over ``seeds`` x ``splits`` stratified splits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit

    members, nonmembers = np.asarray(members, float), np.asarray(nonmembers, float)
    n = min(len(members), len(nonmembers))
    if n < MIA_MIN:
        raise ValueError(f"MIA needs at least {MIA_MIN} members and non-members, got {len(members)} "
                         f"and {len(nonmembers)}")
    scores = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        x = np.concatenate([rng.choice(members, n, replace=False),
                            rng.choice(nonmembers, n, replace=False)])[:, None]
        y = np.r_[np.ones(n), np.zeros(n)]
        sss = StratifiedShuffleSplit(n_splits=splits, test_size=test_size, random_state=seed)
        for tr, te in sss.split(x, y):
            clf = LogisticRegression().fit(x[tr], y[tr])
            scores.append(clf.score(x[te], y[te]))
    return float(np.mean(scores)), float(np.std(scores))


def membership_attacker(members: np.ndarray, nonmembers: np.ndarray):
    """A 1-D logistic regression on the standardised feature, members labelled ``MEMBER`` and
    non-members ``NONMEMBER``, the two classes weighted equally (``class_weight="balanced"``,
    should their counts differ). Deterministic (lbfgs, no sampling)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    members, nonmembers = np.asarray(members, float), np.asarray(nonmembers, float)
    if min(len(members), len(nonmembers)) < MIA_MIN:
        raise ValueError(f"the MIA attacker needs at least {MIA_MIN} members and non-members, got "
                         f"{len(members)} and {len(nonmembers)}")
    x = np.concatenate([members, nonmembers])[:, None]
    y = np.r_[np.full(len(members), MEMBER), np.full(len(nonmembers), NONMEMBER)]
    return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced")).fit(x, y)


def mia_efficacy(members: np.ndarray, nonmembers: np.ndarray, forget: np.ndarray) -> float:
    """SalUn's MIA-efficacy: train ``membership_attacker`` on ``members`` (retain pairs, trained
    on) vs ``nonmembers`` (never seen), apply it to ``forget`` (the forget-test pairs); return the
    share of forget pairs predicted ``NONMEMBER``. Higher = the forget set looks more unseen."""
    forget = np.asarray(forget, float)
    if not len(forget):
        raise ValueError("MIA-efficacy needs at least one forget pair")
    clf = membership_attacker(members, nonmembers)
    return float(np.mean(clf.predict(forget[:, None]) == NONMEMBER))


def membership(forget: np.ndarray, nonmembers: np.ndarray,
               retain: Callable[[int], np.ndarray] | None, seeds: int) -> dict:
    """The evaluation's membership numbers from the paired cosines: ``mia`` (``mia_accuracy`` of
    the forget-test pairs against the non-members) and, given ``retain`` (n -> the first n retain
    pairs' cosines), ``mia_efficacy``; a concept with too few forget-test pairs (or too few
    non-members) gets ``mia_skipped``, saying why, instead of a failed evaluation."""
    if min(len(forget), len(nonmembers)) < MIA_MIN:
        return {"mia_skipped": f"{len(forget)} forget-test pairs and {len(nonmembers)} "
                               f"non-members; membership inference needs {MIA_MIN} of each"}
    mean, std = mia_accuracy(forget, nonmembers, seeds=seeds)
    out = {"mia": {"mean": mean, "std": std}}
    if retain is not None:  # SalUn's MIA-efficacy: as many retain pairs (members) as non-members
        members = retain(len(nonmembers))
        if len(members) >= MIA_MIN:
            out["mia_efficacy"] = mia_efficacy(members, nonmembers, forget)
    return out
