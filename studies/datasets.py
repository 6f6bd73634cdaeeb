"""Which data the seed studies use: full Fashion-MNIST when its IDX files are found, else the
bundled 3000/1000 subset. ``HPO_DATASET=bundled`` (or ``fashion-mnist``, ``mnist``, ``digits``)
forces one; the choice is printed by ``studies/reproduce.py`` and stored with every study."""

from __future__ import annotations

import os

from models import Dataset, find, load

__all__ = ["pick_dataset"]


def pick_dataset(default: str | None = None) -> Dataset:
    """$HPO_DATASET if set (``hpo resume`` sets it to the data a study started on), else
    ``default``, else full Fashion-MNIST if ``models.find`` sees it, else the bundled subset."""
    name = os.environ.get("HPO_DATASET") or default
    return load(name or ("fashion-mnist" if find("fashion-mnist") else "bundled"))
