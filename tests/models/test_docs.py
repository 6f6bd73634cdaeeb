"""The runnable examples in the public docstrings stay true."""

from __future__ import annotations

import doctest

import pytest

from models import datasets, network


@pytest.mark.parametrize("module", [network, datasets])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
