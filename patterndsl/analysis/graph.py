"""The union graph U of one head at any n, without its n × n adjacency.

Rows hold intervals of keys (patterndsl/analysis/rowsets.py), so U is stored with a
segment tree over the keys: node 1 is [0, size), node x has children 2x and 2x + 1, and
leaf size + v is token v. An edge i → [lo, hi) becomes edges from leaf i to the O(log n)
tree nodes that tile [lo, hi); tree nodes point to their children. A token reaches
another in this graph exactly when it does in U, so SCCs, sources and sinks of U are read
from it (``scipy.sparse.csgraph``) in time O((n + intervals) · log n).

  * a strongly connected component C of U is a *sink* (no row of C attends outside C)
    exactly when no edge leaves C's component in the tree graph: every tree node
    reached from C reaches some token it tiles;
  * C is a *source* (no row outside C attends into C) exactly when no edge enters C's
    component from a tree node that some token reaches ("used": a tiling node or a
    descendant of one) or from a token.
"""
from __future__ import annotations

import numpy as np

from ..ir import Union
from .rowsets import TooManyIntervals, all_rows, row_keys, row_period

SAMPLE_ROWS = 64  # rows whose intervals estimate the graph's size before it is built
BATCH = 1 << 16  # rows read at a time (rowsets.all_rows), each batch allowed edge_limit intervals


class TooLarge(Exception):
    """The graph would hold more edges than allowed."""


def refuse_from_sample(patterns, n: int, edge_limit: int) -> None:
    """Raise TooLarge when SAMPLE_ROWS rows spread evenly over [0, n) hold so many key
    intervals that all n rows would hold more than ``edge_limit`` (every interval is at least
    one edge), or so many edges (their tiles) that all rows would hold twice the limit, or
    when reading them passes the intervals per row that a batch of the build (min(n, BATCH)
    rows, edge_limit intervals) may hold (TooManyIntervals there): the graph is refused in
    O(sample) instead of after building edge_limit edges (phi3_small at n = 2^24: about 4 CPU
    s per head). An estimate, so a refusal only means the graph is not built (the conditions
    take other paths), never a verdict."""
    rows = np.unique(np.linspace(0, n - 1, min(n, SAMPLE_ROWS)).astype(np.int64))
    size = 1 << max(0, (n - 1).bit_length())
    intervals = edges = 0
    for P in patterns:
        try:
            keys = row_keys(P, rows, n, limit=max(1, edge_limit * rows.size // min(n, BATCH)))
        except TooManyIntervals as e:
            raise TooLarge(f"{e} intervals in {rows.size} sample rows") from None
        intervals += keys.lo.size
        edges += tiles(keys.lo, keys.hi, size)
        if intervals * n > edge_limit * rows.size:
            raise TooLarge(intervals * n // rows.size)
    # The sample's own edges (an interval's tiles): all rows would hold about edges · n / rows.
    # Refused only past twice the limit, so that an estimate that runs high does not refuse a
    # graph that fits (`causal` at n = 2^24: about 12 tiles a row, 3 times the limit, was
    # built to the limit, twice per check, before TooLarge).
    if edges * n > 2 * edge_limit * rows.size:
        raise TooLarge(edges * n // rows.size)


def tiles(lo: np.ndarray, hi: np.ndarray, size: int) -> int:
    """The segment-tree nodes that tile the intervals [lo, hi) over ``size`` leaves: the
    edges UnionGraph adds for them (the walk of its build, counted)."""
    lo, hi = lo + size, hi + size
    count = 0
    while lo.size:
        take = (lo & 1) == 1
        count += int(np.count_nonzero(take))
        lo = lo + take
        take = ((hi & 1) == 1) & (lo < hi)
        count += int(np.count_nonzero(take))
        hi = hi - take
        lo, hi = lo >> 1, hi >> 1
        alive = lo < hi
        lo, hi = lo[alive], hi[alive]
    return count


class UnionGraph:
    def __init__(self, patterns, n: int, edge_limit: int = 1 << 26):
        from scipy.sparse import csr_matrix

        self.n = n
        size = 1 << max(0, (n - 1).bit_length())
        self.size = size
        # The parts of each pattern's union, each read over all its rows or, when its keys
        # depend on i mod p only (row_period) for a p ≤ n/2, over p rows through p hubs.
        self.parts = [_split(P, n) for P in patterns]
        refuse_from_sample([part for parts in self.parts for part, p in parts if p is None], n, edge_limit)
        hubs = sum(p for parts in self.parts for _, p in parts if p is not None)
        total = 2 * size + hubs  # hubs after the leaves: tree nodes < size ≤ tokens < 2·size ≤ hubs
        sources, targets = [], []
        used = np.zeros(total, dtype=bool)
        used[size:size + n] = True
        edges = 0
        batches = _batches(self.parts, n, size, edge_limit, sources, targets)
        for P in patterns:  # (the parts of P come from `batches`)
            for rows, keys in next(batches):
                vertex = rows[keys.own] + size
                lo, hi = keys.lo + size, keys.hi + size
                while vertex.size:
                    take = (lo & 1) == 1
                    sources.append(vertex[take])
                    targets.append(lo[take])
                    lo = lo + take
                    take = ((hi & 1) == 1) & (lo < hi)
                    hi = hi - take
                    sources.append(vertex[take])
                    targets.append(hi[take])
                    lo, hi = lo >> 1, hi >> 1
                    alive = lo < hi
                    vertex, lo, hi = vertex[alive], lo[alive], hi[alive]
                    edges += int(sources[-1].size + sources[-2].size)
                    if edges > edge_limit:
                        raise TooLarge(edges)
        targets_all = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)
        used[targets_all] = True
        level_start = 1  # top-down, a level at a time: a child of a used node is used
        while level_start < size:
            nodes = np.arange(level_start, 2 * level_start)
            used[2 * nodes] |= used[nodes]
            used[2 * nodes + 1] |= used[nodes]
            level_start *= 2
        parents = np.arange(1, size)
        src = np.concatenate(sources + [parents, parents]) if sources else np.concatenate([parents, parents])
        dst = np.concatenate([targets_all, 2 * parents, 2 * parents + 1])
        self.src, self.dst, self.used = src, dst, used
        self._weighted = None
        self._components = None
        self.graph = csr_matrix((np.ones(src.size, dtype=bool), (src, dst)), shape=(total, total))  # (int8 wrapped at 256 copies)

    def components(self):
        """(labels of the tokens, sink component ids, source component ids), the ids
        sorted by component size, smallest first."""
        from scipy.sparse.csgraph import connected_components

        if self._components is not None:  # C2 and C3 both ask
            return self._components
        _, labels = connected_components(self.graph, directed=True, connection="strong")
        token = labels[self.size:self.size + self.n]
        crossing = labels[self.src] != labels[self.dst]
        leaving = np.zeros(labels.max() + 1, dtype=bool)
        leaving[labels[self.src[crossing]]] = True
        entering = np.zeros(labels.max() + 1, dtype=bool)
        entering[labels[self.dst[crossing & self.used[self.src]]]] = True
        ids, sizes = np.unique(token, return_counts=True)
        order = np.argsort(sizes, kind="stable")
        ids = ids[order]
        # int64 arrays, not lists: at n = 2^24 a grid's empty rows are 16 million components
        self._components = token, ids[~leaving[ids]], ids[~entering[ids]]
        return self._components

    def tree(self, root: int, reverse: bool = False):
        """A shortest-path tree of U rooted at ``root``: parent[v] with v ∈ A_{parent[v]}
        (reverse: parent[v] ∈ A_v, a tree into the root); -1 at the root. None when some
        token is not reached. Token → tile edges weigh 1, tree edges next to nothing, so
        the tree's depths are U's distances."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import dijkstra

        if self._weighted is None:
            # From the summed graph, not (src, dst): an edge listed twice (two layers, two
            # parts of a union) must not weigh twice.
            g = self.graph
            start = np.repeat(np.arange(g.shape[0]), np.diff(g.indptr))
            tokens = (start >= self.size) & (start < 2 * self.size)  # a token's edges (to tiles, hubs)
            weight = np.where(tokens, 1.0, 1.0 / (4.0 * self.size * 64))
            self._weighted = csr_matrix((weight, g.indices, g.indptr), shape=g.shape)
        graph = self._weighted.T.tocsr() if reverse else self._weighted
        _, pred = dijkstra(graph, directed=True, indices=self.size + root, return_predecessors=True)
        leaf = np.arange(self.n) + self.size
        up = pred[leaf].astype(np.int64)
        up[root] = self.size + root
        if (up < 0).any():
            return None
        for _ in range(2 * self.size.bit_length() + 2):  # climb through tree nodes to a token
            inner = (up < self.size) | (up >= 2 * self.size)
            if not inner.any():
                break
            up[inner] = pred[up[inner]]
        parent = up - self.size
        parent[root] = -1
        return parent

    def period(self, parent: np.ndarray, root: int, patterns) -> int:
        """The period of U (strongly connected): gcd over its edges u → v of
        depth(u) + 1 − depth(v), depths along an out-tree. Over the keys [a, b) of a row
        that is gcd(depth(u) + 1 − depth(a), the steps of depth inside [a, b))."""
        depth = tree_depths(parent, root)
        steps = np.abs(np.diff(depth))
        g = 0
        for parts in self.parts:
            for part, p in parts:
                if p is None:
                    batches = all_rows(part, self.n)
                else:  # u → k for k in row (u mod p): depth(u) − depth(u mod p) + (row u mod p's)
                    rows = np.arange(p, dtype=np.int64)
                    keys = row_keys(part, rows, self.n)
                    u = np.arange(self.n)
                    u = u[keys.counts()[u % p] > 0]
                    g = int(np.gcd.reduce(np.abs(depth[u] - depth[u % p]), initial=g))
                    batches = [(rows, keys)]
                for rows, keys in batches:
                    head = np.abs(depth[rows[keys.own]] + 1 - depth[keys.lo])
                    g = int(np.gcd.reduce(np.concatenate([[g], head])))
                    inside = keys.hi - keys.lo > 1
                    if inside.any() and steps.size:
                        ends = np.stack([keys.lo[inside], keys.hi[inside] - 1], axis=1).reshape(-1)
                        spans = np.gcd.reduceat(np.append(steps, 0), ends)[::2]
                        g = int(np.gcd.reduce(np.concatenate([[g], spans])))
                    if g == 1:
                        return 1
        return g


def _split(pattern, n: int):
    """[(part, p)]: the pattern as the parts of its union, each with its row period p where
    that is at most n/2 (else None); [(pattern, None)] when no part has one."""
    parts, stack = [], [pattern]
    while stack:
        node = stack.pop()
        if isinstance(node, Union):
            stack.extend(node.parts)
        else:
            p = row_period(node, n)
            parts.append((node, p if p is not None and 2 * p <= n else None))
    if all(p is None for _, p in parts):
        return [(pattern, None)]
    return parts


def _batches(parts_of, n: int, size: int, edge_limit: int, sources, targets):
    """For each pattern, an iterator of (rows, RowKeys) whose keys the rows (tokens, or hubs
    given as hub index − size) attend to: a part without a row period over all its rows; one
    with period p over rows 0 … p − 1 as p hubs (after the 2·size tree nodes and leaves),
    the edges token i → hub (i mod p) appended to sources and targets."""
    hub = 2 * size
    for parts in parts_of:
        def pattern_batches(parts=parts):
            nonlocal hub
            for part, p in parts:
                if p is None:
                    yield from all_rows(part, n, limit=edge_limit, batch=BATCH)
                    continue
                rows = np.arange(p, dtype=np.int64)
                try:
                    keys = row_keys(part, rows, n, limit=edge_limit)
                except TooManyIntervals as e:  # (the hubs' rows alone pass the edge limit)
                    raise TooLarge(f"{e} intervals in the {p} rows of a period") from None
                tokens = np.arange(n, dtype=np.int64)
                tokens = tokens[keys.counts()[tokens % p] > 0]  # (a hub reaching no token is no tile)
                sources.append(tokens + size)
                targets.append(hub + tokens % p)
                yield rows + (hub - size), keys
                hub += p
        yield pattern_batches()


def tree_depths(parent: np.ndarray, root: int) -> "np.ndarray | None":
    """Depth of every token in the tree (pointer doubling); None if it is not a tree."""
    n = parent.size
    up = parent.copy()
    up[root] = root
    depth = (np.arange(n) != root).astype(np.int64)
    for _ in range(max(1, n.bit_length() + 1)):
        depth = depth + depth[up]
        up = up[up]
    if (up != root).any():
        return None
    return depth
