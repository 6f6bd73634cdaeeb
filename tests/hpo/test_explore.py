"""Which trials of a round explore the hard limits and which are drawn near the best so far
(hpo.explore.trial_kind): shares kept whatever they are, positions a function of the number."""

from __future__ import annotations

import pytest

from hpo.explore import trial_kind


@pytest.mark.parametrize(
    ("explore", "local", "n_explore", "n_local"),
    [
        (0.2, 0.2, 6, 6),  # the defaults
        (0.2, 0.1, 6, 3),  # every local slot falls on an exploration trial: moved to the next
        (0.25, 0.25, 7, 8),  # local: N x share rounded half up
        (0.0, 0.3, 0, 9),
        (0.3, 0.0, 9, 0),
    ],
)
def test_each_kind_gets_its_share_of_a_round(explore, local, n_explore, n_local):
    kinds = [trial_kind(i, explore, local) for i in range(30)]
    assert kinds.count("explore") == n_explore and kinds.count("local") == n_local


def test_the_defaults_keep_their_positions():
    """explore = local = 0.2: no local slot falls on an exploration trial, so the local trials sit
    where they always did (every 5th trial from the 3rd): studies measured before still repeat."""
    kinds = [trial_kind(i, 0.2, 0.2) for i in range(30)]
    assert [i for i, k in enumerate(kinds) if k == "explore"] == [4, 9, 14, 19, 24, 29]
    assert [i for i, k in enumerate(kinds) if k == "local"] == [2, 7, 12, 17, 22, 27]
