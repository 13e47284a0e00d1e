"""The regularized Wasserstein proximal operator (RWPO) with an L1 prior, as attention.

Han, Osher and Li, "Sparse Transformer Architectures via Regularized Wasserstein
Proximal Operator with L1 Prior" (arXiv 2510.16356, 2025), and its predecessor
"Splitting Regularized Wasserstein Proximal Algorithms for Nonsmooth Sampling
Problems" (arXiv 2502.16773). For particles X (N × d), step h, L1 weight λ and
inverse temperature β:

  * shrinkage S(x) = sign(x)·max(|x| − λh, 0), the proximal map of λh|·|;
  * a per-key bias b_l = (β/2)·(λ|S(x_l)| + (S(x_l) − x_l)²/(2h)), β/2 times the
    Moreau envelope of λ|·| at x_l;
  * weights w_jl = softmax_l(−β|x_j − x_l|²/(4h) + b_l) and the mean m_j = Σ_l w_jl x_l.

Since −β|x_j − x_l|²/(4h) = (β/2h)·x_j·x_l − (β/4h)|x_l|² − (β/4h)|x_j|² and the
last term is constant in a query row, m is dot-product attention with q = k = v = X,
scale β/2h and the per-key bias b_l − (β/4h)|x_l|². In the *joint* form one softmax
runs over particles with the biases summed over coordinates (the authors' torch
code); in the *per-coordinate* form every coordinate is its own head of width 1
(the authors' MATLAB `score_L1.m`). An optional `.spat` pattern over particle
indices (compiled at n = N) restricts the keys l of every particle j: with
`random(r)` or `chunk(b)` the O(N²) interaction becomes O(N·r).

The splitting sampler takes X ← X − h∇g(X), m = RWPO mean of X, X ← X + ½(S(X) − m)
(gradient step first, as `Mixture_distribution.m`); MYULA is the Langevin baseline.
`RWPOLayer` is the paper's layer: trainable ResNet potentials φ, each followed by the
RWPO update.
"""
from __future__ import annotations

import math
import weakref

import numpy as np
import torch
from torch import nn

from .errors import Diagnostic, SpatError
from .ir import Pattern, Union
from .reference import index_dtype

_KEY_BLOCK = 16  # block size of the layout the key lists are read from: few candidate keys per row
_CHUNK_ELEMENTS = 1 << 22  # score elements held at once (rows are processed in chunks of this size)


def shrink(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """sign(x)·max(|x| − threshold, 0): the proximal map of threshold·|·|."""
    return torch.sign(x) * torch.clamp(torch.abs(x) - threshold, min=0)


def moreau_bias(x: torch.Tensor, lam: float, h: float, beta: float) -> torch.Tensor:
    """b = (β/2)·(λ|S(x)| + (S(x) − x)²/(2h)), elementwise (per coordinate)."""
    s = shrink(x, lam * h)
    return beta / 2 * (lam * torch.abs(s) + (s - x) ** 2 / (2 * h))


# ---------------------------------------------------------------- interaction patterns

def interaction_keys(compiled, layer: int = 0, head: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each particle's keys under a compiled pattern: (keys int64 [N, r], valid bool [N, r]),
    r the largest row degree, each row's keys ascending, padded slots holding key 0 and
    valid False. Built without an N × N mask (see `_pattern_keys`)."""
    keys = _pattern_keys(compiled.pattern(layer, head), compiled, layer, head)
    valid = keys < compiled.n
    return np.where(valid, keys, 0), valid


def _pattern_keys(pattern: Pattern, compiled, layer: int, head: int) -> np.ndarray:
    """int64 [N, r]: each row's keys ascending, then N in the unused slots.

    A pattern that lists its row points itself (`random`, `logsparse`) gives them
    directly; a union merges its parts' lists; anything else is read from the block
    layout (16 × 16 blocks), which names the candidate keys of every block of query
    rows, with the pattern's element predicate (the reference evaluator's) evaluated
    on those candidates only."""
    n = compiled.n
    if hasattr(pattern, "row_points"):
        points = np.concatenate([pattern.row_points(np.arange(lo, min(n, lo + 4096), dtype=np.int64), n)
                                 for lo in range(0, n, 4096)])
        return _compact(np.where(points >= 0, points, n), n)
    if isinstance(pattern, Union):
        merged = np.concatenate([_pattern_keys(part, compiled, layer, head) for part in pattern.parts], axis=1)
        merged.sort(axis=1)
        merged[:, 1:][merged[:, 1:] == merged[:, :-1]] = n  # a key listed by two parts counts once
        return _compact(merged, n)
    from .layout import block_layout

    layout = block_layout(pattern, n, _KEY_BLOCK, _KEY_BLOCK)
    dtype = index_dtype(n)
    rows_found, keys_found = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for qb in range(len(layout.full_ptr) - 1):
        blocks = np.concatenate([layout.full_idx[layout.full_ptr[qb]:layout.full_ptr[qb + 1]],
                                 layout.partial_idx[layout.partial_ptr[qb]:layout.partial_ptr[qb + 1]]])
        if blocks.size == 0:
            continue
        blocks = np.sort(blocks.astype(np.int64))
        candidates = (blocks[:, None] * _KEY_BLOCK + np.arange(_KEY_BLOCK)[None, :]).reshape(-1)
        candidates = candidates[candidates < n]
        rows = np.arange(qb * _KEY_BLOCK, min(n, (qb + 1) * _KEY_BLOCK))
        connected = np.asarray(pattern.predicate(rows.astype(dtype)[:, None], candidates.astype(dtype)[None, :], n), dtype=bool)
        r, c = np.nonzero(connected)  # row-major: each row's keys come out ascending
        rows_found.append(rows[r])
        keys_found.append(candidates[c])
    rows_found, keys_found = np.concatenate(rows_found), np.concatenate(keys_found)
    degree = np.bincount(rows_found, minlength=n)
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degree, out=start[1:])
    keys = np.full((n, max(int(degree.max(initial=0)), 1)), n, dtype=np.int64)
    keys[rows_found, np.arange(rows_found.size) - start[rows_found]] = keys_found
    return keys


def _compact(keys: np.ndarray, n: int) -> np.ndarray:
    """Sort each row (the unused slots, holding n, go last) and drop the columns no row uses."""
    keys = np.sort(keys, axis=1)
    width = max(int((keys < n).sum(axis=1).max(initial=0)), 1)
    return np.ascontiguousarray(keys[:, :width])


_KEY_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def key_lists(compiled, device) -> tuple[torch.Tensor, torch.Tensor]:
    """`interaction_keys` of layer 0, head 0 as tensors, cached per compiled pattern."""
    cached = _KEY_CACHE.get(compiled)
    if cached is None:
        if compiled.layers * compiled.heads != 1:
            raise SpatError(Diagnostic(
                f"an interaction pattern over particles has one layer and one head; this one has "
                f"{compiled.layers} layers and {compiled.heads} heads",
                help="write the pattern as a single expression"))
        keys, valid = interaction_keys(compiled)
        cached = _KEY_CACHE[compiled] = (torch.from_numpy(keys), torch.from_numpy(valid))
    keys, valid = cached
    return keys.to(device), valid.to(device)


def _attention(q, k, v, key_bias, compiled, scale: float) -> torch.Tensor:
    """softmax_l(scale·q_j·k_l + key_bias_l) over the keys l of each query j, times v.

    q, k, v [B, H, N, D]; key_bias [B, H, N] (or broadcastable); ``compiled`` a pattern
    over the N particles, or None for every pair. Rows are taken in chunks, so the
    memory is O(chunk · N) dense and O(N · r) with a pattern. A row without keys gives
    zeros. Written as one function so that it can later be routed through
    `patterndsl.attention(..., key_bias=...)`."""
    batch, heads, n, dim = q.shape
    key_bias = key_bias.expand(batch, heads, n)
    outputs = []
    if compiled is None:
        q3, k3, v3 = (t.reshape(batch * heads, n, dim) for t in (q, k, v))
        bias3 = key_bias.reshape(batch * heads, 1, n)
        step = max(1, _CHUNK_ELEMENTS // max(1, batch * heads * n))
        for lo in range(0, n, step):  # scale·q·kᵀ + bias in one fused pass
            scores = torch.baddbmm(bias3, q3[:, lo:lo + step], k3.transpose(1, 2), alpha=scale)
            outputs.append(torch.softmax(scores, dim=-1) @ v3)
        return torch.cat(outputs, dim=1).reshape(batch, heads, n, dim)
    if compiled.n != n:
        raise SpatError(Diagnostic(f"the interaction pattern was compiled for n = {compiled.n}, "
                                   f"but there are {n} particles", help="compile it for this n: compiled.at(n)"))
    keys, valid = key_lists(compiled, q.device)
    width = keys.shape[1]
    masked = not bool(valid.all())
    step = max(1, _CHUNK_ELEMENTS // max(1, batch * heads * width * dim))
    for lo in range(0, n, step):
        index = keys[lo:lo + step]  # [R, r]
        k_rows = k[:, :, index]  # [B, H, R, r, D]
        v_rows = k_rows if v is k else v[:, :, index]  # RWPO attends to X itself: gather once
        q_rows = q[:, :, lo:lo + step]  # [B, H, R, D]
        if dim == 1:  # per-coordinate heads: the product is the score, one fused pass
            scores = torch.addcmul(key_bias[:, :, index], q_rows, k_rows[..., 0], value=scale)
        else:
            scores = scale * (k_rows @ q_rows[..., None])[..., 0] + key_bias[:, :, index]
        if masked:
            scores = scores.masked_fill(~valid[lo:lo + step], -math.inf)
        weights = torch.softmax(scores, dim=-1)
        if masked:
            weights = weights.nan_to_num(0.0)  # a row without keys: all -inf, zeros out
        outputs.append((weights[..., None, :] @ v_rows)[..., 0, :])
    return torch.cat(outputs, dim=2)


def rwpo_mean(x: torch.Tensor, lam: float, h: float, beta: float = 1.0, *, joint: bool = False,
              pattern=None) -> torch.Tensor:
    """m_j = Σ_l w_jl x_l with w_jl = softmax_l(−β|x_j − x_l|²/(4h) + b_l), as attention.

    ``x`` is [N, d] or [B, N, d]. ``joint`` takes one softmax over particles (b_l summed
    over coordinates); otherwise each coordinate has its own softmax, as in the
    authors' MATLAB. ``pattern`` is a CompiledPattern at n = N restricting each
    particle's keys, or None for all of them."""
    batched = x if x.dim() == 3 else x[None]
    bias = moreau_bias(batched, lam, h, beta) - beta / (4 * h) * batched ** 2  # [B, N, d]
    scale = beta / (2 * h)
    if joint:
        q = batched[:, None]  # [B, 1, N, d]: one head over all coordinates
        out = _attention(q, q, q, bias.sum(-1)[:, None], pattern, scale)[:, 0]
    else:
        q = batched.transpose(1, 2)[..., None]  # [B, d, N, 1]: a head per coordinate
        out = _attention(q, q, q, bias.transpose(1, 2), pattern, scale)[..., 0].transpose(1, 2)
    return out if x.dim() == 3 else out[0]


# ---------------------------------------------------------------- samplers

def halved_steps(h: float, iterations: int, factor: float = 4.0) -> list[float]:
    """The step of each iteration: h, divided by ``factor`` from iteration ⌊iterations/2⌋
    (1-based) on, as `Mixture_distribution.m` does."""
    return [h if k < iterations // 2 else h / factor for k in range(1, iterations + 1)]


def splitting_step(x, grad_g, lam: float, h: float, beta: float = 1.0, *, joint: bool = False,
                   order: str = "gradient-first", pattern=None) -> torch.Tensor:
    """One BRWP-splitting step: X ← X − h∇g(X); m = RWPO mean; X ← X + ½(S(X) − m).

    ``order="score-first"`` takes the mean of X before the gradient step (the authors'
    torch code); "gradient-first" after it (their MATLAB script)."""
    if order not in ("gradient-first", "score-first"):
        raise ValueError(f"order must be 'gradient-first' or 'score-first', not {order!r}")
    if order == "score-first":
        mean = rwpo_mean(x, lam, h, beta, joint=joint, pattern=pattern)
        x = x - h * grad_g(x)
    else:
        x = x - h * grad_g(x)
        mean = rwpo_mean(x, lam, h, beta, joint=joint, pattern=pattern)
    return x + 0.5 * (shrink(x, lam * h) - mean)


def myula_step(x, grad_g, lam: float, h: float, beta: float = 1.0, *, generator=None) -> torch.Tensor:
    """Moreau–Yosida unadjusted Langevin: X ← S(X) − h∇g(X) + √(2h/β)·ξ."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return shrink(x, lam * h) - h * grad_g(x) + math.sqrt(2 * h / beta) * noise


def sample(x0, grad_g, lam: float, steps, beta: float = 1.0, *, method: str = "splitting",
           joint: bool = False, order: str = "gradient-first", pattern=None, generator=None,
           callback=None) -> torch.Tensor:
    """Run ``method`` ("splitting" or "myula") with the step sizes ``steps`` (one per
    iteration, e.g. `halved_steps`); ``callback(iteration, x)`` after every iteration."""
    x = x0
    for iteration, h in enumerate(steps, start=1):
        if method == "splitting":
            x = splitting_step(x, grad_g, lam, h, beta, joint=joint, order=order, pattern=pattern)
        elif method == "myula":
            x = myula_step(x, grad_g, lam, h, beta, generator=generator)
        else:
            raise ValueError(f"method must be 'splitting' or 'myula', not {method!r}")
        if callback is not None:
            callback(iteration, x)
    return x


# ---------------------------------------------------------------- the layer

class ResNetPotential(nn.Module):
    """A scalar potential φ: R^d → R, a residual MLP (tanh blocks) and a quadratic term
    that keeps ∇φ from vanishing far from the data."""

    def __init__(self, dim: int, width: int = 64, blocks: int = 2):
        super().__init__()
        self.embed = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
                                    for _ in range(blocks))
        self.out = nn.Linear(width, 1, bias=False)  # a constant would not change ∇φ
        self.curvature = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        hidden = torch.tanh(self.embed(x))
        for block in self.blocks:
            hidden = hidden + torch.tanh(block(hidden))
        return self.out(hidden)[..., 0] + 0.5 * self.curvature * (x ** 2).sum(-1)

    def gradient(self, x):
        """∇φ(x), differentiable in the parameters (for training) and in x."""
        keep_graph = torch.is_grad_enabled()  # under no_grad (sampling), ∇φ needs no graph
        with torch.enable_grad():
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(x).sum(), x, create_graph=keep_graph)
        return grad


class RWPOLayer(nn.Module):
    """The paper's architecture: ``depth`` times a trainable ResNet potential φ_k then
    the RWPO update X ← X − h∇φ_k(X); X ← X + ½(S(X) − m(X)).

    ``lam`` = 0 gives the same network without the L1 prior (S is the identity and the
    bias vanishes). ``pattern`` (.spat text, a Path or a CompiledPattern) restricts each
    particle's keys; it is compiled for the number of particles it meets."""

    def __init__(self, dim: int, *, lam: float, h: float = 0.1, beta: float = 1.0, depth: int = 4,
                 width: int = 64, blocks: int = 2, joint: bool = False, pattern=None):
        super().__init__()
        self.dim, self.lam, self.h, self.beta, self.joint = dim, lam, h, beta, joint
        self.potentials = nn.ModuleList(ResNetPotential(dim, width, blocks) for _ in range(depth))
        self._pattern_source, self._compiled = pattern, {}

    def _pattern(self, n: int):
        from .compiled import CompiledPattern, compile as compile_pattern

        source = self._pattern_source
        if source is None:
            return None
        if n not in self._compiled:  # kept, so that the key lists are built once per n
            if isinstance(source, CompiledPattern):
                self._compiled[n] = source if source.n == n else source.at(n)
            else:
                self._compiled[n] = compile_pattern(source, n)
        return self._compiled[n]

    def forward(self, x):
        """x: particles [N, d] or [B, N, d]; returns the same shape."""
        pattern = self._pattern(x.shape[-2])
        for potential in self.potentials:
            x = x - self.h * potential.gradient(x)
            mean = rwpo_mean(x, self.lam, self.h, self.beta, joint=self.joint, pattern=pattern)
            x = x + 0.5 * (shrink(x, self.lam * self.h) - mean)
        return x
