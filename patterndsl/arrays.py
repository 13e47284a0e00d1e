"""Array helpers that numpy has, but too slowly for the block codes patterndsl makes.

numpy ≥ 2.3 finds the distinct values of an integer array with a hash table
(`np.unique`); on block codes (qb · num_k + kb: regular, strided values) it collides
so badly that a million codes take seconds and the layouts of random patterns
minutes. Sorting and comparing neighbours is O(m log m) whatever the values.
"""
from __future__ import annotations

import numpy as np


def unique_sorted(values, return_counts: bool = False):
    """np.unique(values) (and the counts with ``return_counts``) of a 1-d integer array, by sorting."""
    ordered = np.sort(np.asarray(values).reshape(-1))
    first = np.ones(ordered.size, dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    distinct = ordered[first]
    if not return_counts:
        return distinct
    starts = np.flatnonzero(first)
    return distinct, np.diff(np.append(starts, ordered.size))
