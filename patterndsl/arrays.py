"""Array helpers that numpy has, but too slowly for the block codes patterndsl makes.

numpy ≥ 2.3 finds the distinct values of an integer array with a hash table
(`np.unique`); on block codes (qb · num_k + kb: regular, strided values) it collides
so badly that a million codes take seconds and the layouts of random patterns
minutes. Sorting and comparing neighbours is O(m log m) whatever the values.

The sort is numpy's stable one (timsort): the codes patterndsl makes are concatenations of
a few ascending runs (a union's parts, a row's blocks after the row before), which timsort
merges in O(m) — 40,000 codes in two runs: 40 µs, against numpy's default quicksort's 1.5 ms
on this machine (which gains nothing from the runs; on random values it is 1.6× faster).
"""
from __future__ import annotations

import numpy as np


def unique_sorted(values, return_counts: bool = False):
    """np.unique(values) (and the counts with ``return_counts``) of a 1-d integer array, by sorting."""
    ordered = np.sort(np.asarray(values).reshape(-1), kind="stable")
    first = np.ones(ordered.size, dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)  # (then take: a boolean mask index is several times slower)
    distinct = ordered.take(starts)
    if not return_counts:
        return distinct
    return distinct, np.diff(np.append(starts, ordered.size))
