"""Run-time segments: the segmentation that `segment` and `segment_start(k)` read.

A pattern that uses `segment` is compiled once; the segment ids arrive with each call
(an integer tensor [B, n], one id per key position; only equality matters). This module
holds what every part of the package shares about them:

  * the *current* segmentation of one batch row (`using(ids)`, `current()`): the dense
    reference evaluator reads it through the primitives' `predicate`. Without one, a
    pattern is evaluated for the one-document segmentation (every id equal), which is
    also what the analyses see;
  * `ranks(ids)`: the rank of each position among the positions carrying its id
    (0 for the first position of a segment, 1 for the next, …), which defines
    `segment_start(k)` for any ids, contiguous or not;
  * `check_segments`: validating a user's ids tensor (shape, dtype, device);
  * `segment_block_ranges`: per batch row and query block, the range of key blocks
    that may share a segment with it, built with torch ops on the tensor's device in
    O(B × blocks);
  * `static_pattern`: the pattern with every segment primitive replaced by what holds
    for every segmentation (`all` where it appears positively, `none` negatively), a
    superset of the pattern under any ids: the kernels' block layout.
"""
from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from .errors import Diagnostic, SpatError

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("patterndsl_segments", default=None)


class Segmentation:
    """One batch row's ids (int64 [n]) and their ranks (int64 [n])."""

    def __init__(self, ids: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self.ranks = ranks(self.ids)

    @property
    def n(self) -> int:
        return self.ids.size


def ranks(ids: np.ndarray) -> np.ndarray:
    """int64 [n]: position p's rank among the positions carrying ids[p] (0-based, in
    position order), in O(n log n)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.ones(ids.size, dtype=bool)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(ids.size), 0)) if ids.size else starts
    out = np.empty(ids.size, dtype=np.int64)
    out[order] = np.arange(ids.size) - first
    return out


def torch_ranks(ids):
    """The same as `ranks` for a torch integer tensor [B, n] (per row), on its device."""
    import torch

    ids = ids.to(torch.int64)
    batch, n = ids.shape
    if n == 0:
        return torch.zeros_like(ids)
    sorted_ids, order = torch.sort(ids, dim=1, stable=True)
    starts = torch.ones_like(sorted_ids, dtype=torch.bool)
    starts[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    positions = torch.arange(n, device=ids.device).expand(batch, n)
    first = torch.cummax(torch.where(starts, positions, torch.zeros_like(positions)), dim=1).values
    out = torch.empty_like(ids)
    out.scatter_(1, order, positions - first)
    return out


def current() -> "Segmentation | None":
    """The segmentation being evaluated, or None (the one-document segmentation)."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(ids):
    """Evaluate predicates with these ids (one batch row, int array [n]) in this block."""
    token = _CURRENT.set(None if ids is None else (ids if isinstance(ids, Segmentation) else Segmentation(ids)))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def for_predicate(n: int) -> "Segmentation | None":
    """The current segmentation, checked against the n a primitive is evaluated at."""
    seg = _CURRENT.get()
    if seg is not None and seg.n != n:
        raise SpatError(Diagnostic(
            f"`segment` is evaluated at n = {n}, but the segment ids hold {seg.n} positions",
            help="`segment` and `segment_start` compare token positions: they cannot be used inside "
                 "blocks(B) { … }, where the positions are blocks"))
    return seg


INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def check_segments(segments, batch: int, n: int, device=None, *, uses_segments: bool, what: str = "attention"):
    """Validate a user's ``segments`` against a call: None (for a pattern using `segment`, the
    one-document segmentation, as in compiled.mask and the analyses), else an integer torch
    tensor [batch, n] on ``device``, for a pattern that uses `segment`. Returns it."""
    if segments is None:  # a pattern using `segment`: the one-document segmentation (every id equal)
        return None
    if not uses_segments:
        raise SpatError(Diagnostic(
            "segments= was given, but the pattern does not use `segment`",
            help="write `segment & …` in the pattern (e.g. `segment & causal`) to attend within segments, "
                 "or drop segments="))
    import torch

    if not isinstance(segments, torch.Tensor):
        raise SpatError(Diagnostic(f"segments must be a torch tensor, got {type(segments).__name__}",
                                   help="e.g. torch.tensor(ids, dtype=torch.int32) of shape [B, n]"))
    dtype = str(segments.dtype).removeprefix("torch.")
    if dtype not in INTEGER_DTYPES:
        raise SpatError(Diagnostic(f"segments must have an integer dtype, got {dtype}",
                                   help="segment ids are compared for equality only: use e.g. torch.int32"))
    if tuple(segments.shape) != (batch, n):
        raise SpatError(Diagnostic(
            f"segments has shape {tuple(segments.shape)}, but the call needs [B, n] = "
            f"[{batch if batch >= 0 else 'B'}, {n}]",
            help="one segment id per batch row and key position"))
    if device is not None and segments.device != torch.device(device):
        raise SpatError(Diagnostic(f"segments is on {segments.device}, but q, k, v are on {device}",
                                   help="move it with segments.to(q.device)"))
    return segments


def segment_block_ranges(segments, q_offset: int, m: int, block_q: int, block_k: int):
    """(lo, hi): int64 tensors [B, ⌈m / block_q⌉] on ``segments``' device — for each batch
    row and query block (rows q_offset + r, r in the block), the key blocks [lo, hi) that
    may hold a key sharing a segment with one of its rows.

    Exact (the smallest such range) for contiguous segments; where a row's ids are not
    contiguous (an id recurs after another id), the row gets the full range [0, key
    blocks). One O(B × n) comparison of neighbouring ids (where the runs start), then work
    in the runs and the blocks only: a sort of the run starts, binary searches per block."""
    import torch

    ids = segments
    batch, n = ids.shape
    num_q = -(-m // block_q) if m else 0
    num_k = -(-n // block_k) if n else 0
    device = ids.device
    if batch == 0 or num_q == 0 or n == 0:
        empty = torch.zeros(batch, num_q, dtype=torch.int64, device=device)
        return empty, empty.clone()
    ids = ids.to(torch.int64)
    change = torch.ones(batch, n, dtype=torch.bool, device=device)
    change[:, 1:] = ids[:, 1:] != ids[:, :-1]
    # the runs of equal ids: their first positions in the flattened [B·n] ids, ascending (every
    # row's first position among them), with the end B·n after the last
    starts = torch.nonzero(change.reshape(-1)).squeeze(1)
    bounds = torch.cat([starts, torch.tensor([batch * n], device=device)])
    # contiguous: no (row, id) starts two runs — one sort of the run starts only (few per row)
    run_ids, run_rows = ids.reshape(-1)[starts], torch.div(starts, n, rounding_mode="floor")
    by_id = torch.argsort(run_ids, stable=True)
    order = by_id[torch.argsort(run_rows[by_id], stable=True)]
    sorted_ids, sorted_rows = run_ids[order], run_rows[order]
    repeated = (sorted_rows[1:] == sorted_rows[:-1]) & (sorted_ids[1:] == sorted_ids[:-1])
    contiguous = torch.ones(batch, dtype=torch.bool, device=device)
    contiguous[sorted_rows[1:][repeated]] = False
    rows_first = q_offset + torch.arange(num_q, device=device) * block_q  # [Q]
    rows_last = torch.clamp(rows_first + block_q, max=q_offset + m) - 1
    base = (torch.arange(batch, device=device) * n)[:, None]  # [B, 1]
    # the run holding a query block's first row starts at lo_key; the one holding its last row
    # ends at hi_key: binary searches over the run starts, O(B × blocks × log runs)
    lo_key = starts[torch.searchsorted(starts, base + rows_first, right=True) - 1] - base
    hi_key = bounds[torch.searchsorted(starts, base + rows_last, right=True)] - 1 - base
    lo = torch.where(contiguous[:, None], lo_key // block_k, torch.zeros_like(lo_key))
    hi = torch.where(contiguous[:, None], hi_key // block_k + 1, torch.full_like(hi_key, num_k))
    return lo, hi


def _node_children(pattern) -> tuple:
    """An IR pattern's children, or those of a growth Bound (the symbolic domain's patterns,
    whose ``children`` is a tuple): both walks below serve `check` with and without n."""
    children = pattern.children
    return tuple(children() if callable(children) else children)


def _primitive(pattern):
    """The primitive class or instance a node stands for (a growth Bound's leaf: its cls)."""
    return getattr(pattern, "cls", pattern)


def uses_segments(pattern) -> bool:
    """Whether the pattern (an IR pattern or a growth Bound) reads the run-time segment ids."""
    if getattr(_primitive(pattern), "reads_segments", False):
        return True
    return any(uses_segments(child) for child in _node_children(pattern))


def transposes_segment_ranks(pattern) -> bool:
    """Whether transposing the pattern (an IR pattern or a growth Bound) would need the queries'
    ranks within their segments (`transpose(segment_start(k))`), which no target computes:
    refused where it is written."""
    node = _primitive(pattern)
    if getattr(node, "reads_segments", False):
        return not getattr(node, "symmetric", False)
    return any(transposes_segment_ranks(child) for child in _node_children(pattern))


def static_pattern(pattern, everything, nothing, positive: bool = True):
    """The pattern with each segment primitive replaced by ``everything`` where it appears
    positively and ``nothing`` where negatively (under an odd number of complements or
    right-hand sides of differences): a superset of the pattern for every segmentation.
    ``everything`` and ``nothing`` may also be functions of the primitive."""
    if getattr(pattern, "reads_segments", False):
        chosen = everything if positive else nothing
        return chosen(pattern) if callable(chosen) else chosen
    children = pattern.children()
    if not children or not uses_segments(pattern):
        return pattern
    signs = pattern.child_signs() if hasattr(pattern, "child_signs") else None
    if signs is None:
        name = type(pattern).__name__
        if name == "Complement":
            signs = (False,)
        elif name == "Difference":
            signs = (True, False)
        else:
            signs = (True,) * len(children)
    return pattern.with_children(tuple(static_pattern(child, everything, nothing, positive == sign)
                                       for child, sign in zip(children, signs)))


def top_level_segment(pattern) -> bool:
    """Whether the pattern is `segment & …` (an intersection with `segment` itself among its
    parts): then no pair outside a shared segment is connected."""
    if type(pattern).__name__ in ("Segment", "SegmentStart"):
        return True
    if type(pattern).__name__ == "Intersection":
        return any(top_level_segment(child) for child in pattern.children())
    return False


def within_segments(pattern) -> bool:
    """Whether every pair the pattern connects shares a segment, for every segmentation:
    `segment` and `segment_start(k)` themselves, an intersection with one such part, a
    union of such parts, a difference whose left side is such. Then
    a query block needs no key block outside its rows' segments (segment_block_ranges)."""
    kind = type(pattern).__name__
    if kind in ("Segment", "SegmentStart", "Nothing"):  # (`none` connects no pair at all)
        return True
    children = pattern.children()
    if kind == "Intersection":
        return any(within_segments(child) for child in children)
    if kind == "Union":
        return bool(children) and all(within_segments(child) for child in children)
    if kind == "Difference":
        return within_segments(children[0])
    return False


def count_bounds(pattern, n: int, count, everything, nothing, itself) -> tuple[int, int]:
    """(low, high): bounds on the pattern's number of pairs that hold for EVERY segmentation
    of n positions. high counts the superset `static_pattern` (each segment primitive read
    as `all` where positive, `none` where negative); low counts a subset: where positive,
    `segment` read as `self` (every position shares its own id) and `segment_start(k)` as
    `none` (no pair is in it for every segmentation); where negative, `all`. ``count`` is
    the exact counter of a segment-free pattern (e.g. analysis.counts.row_degrees(p, n).sum());
    ``everything``, ``nothing``, ``itself`` the primitives `all`, `none`, `self`.
    Both are attained by some segmentation when the pattern is monotone in one segment
    primitive: high by one document, low by n one-token documents (for `segment`)."""
    def subset(node):
        return itself if type(node).__name__ == "Segment" else nothing

    high = static_pattern(pattern, everything, nothing)
    low = static_pattern(pattern, subset, everything)
    return int(count(low, n)), int(count(high, n))


# ---- what the analyzer proves for every segmentation ------------------------------------

def with_ranks(ids, given_ranks) -> Segmentation:
    """A Segmentation with these ids and ranks as given (not recomputed): what a pair's
    value depends on when only some positions' ranks matter (the diagonal)."""
    seg = Segmentation.__new__(Segmentation)
    seg.ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    seg.ranks = np.asarray(given_ranks, dtype=np.int64).reshape(-1)
    return seg


def segment_start_sizes(pattern) -> list:
    """The k of every `segment_start(k)` in the pattern (sorted, distinct)."""
    found = set()

    def walk(node):
        if type(node).__name__ == "SegmentStart":
            found.add(int(node.k))
        for child in node.children():
            walk(child)

    walk(pattern)
    return sorted(found)


def one_document(n: int, start: int, length: int) -> np.ndarray:
    """Ids of n positions: the document [start, start + length), every other position a
    one-token document of its own."""
    ids = np.arange(n, dtype=np.int64) + 1
    ids[start:start + length] = 0
    return ids
