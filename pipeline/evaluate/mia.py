"""Membership inference on the paired cosine: can a logistic regression tell forget pairs
(members) from held-out non-members? About 0.5 means the forget set looks like unseen data."""

from __future__ import annotations

import numpy as np


def mia_accuracy(members: np.ndarray, nonmembers: np.ndarray, seeds: int = 10, splits: int = 10,
                 test_size: float = 0.2) -> tuple[float, float]:
    """Mean and std of held-out accuracy over ``seeds`` x ``splits`` stratified splits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit

    members, nonmembers = np.asarray(members, float), np.asarray(nonmembers, float)
    n = min(len(members), len(nonmembers))
    if n < 5:
        raise ValueError(f"MIA needs at least 5 members and 5 non-members, got {len(members)} "
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
