"""The probability maps ρ of `prob`: softmax, sparsemax and α-entmax.

A file's `prob` names the map that turns a query row's scores into attention
weights. It is applied over the row's *connected* keys only: the other keys get
weight 0, and a row with no connection gives 0 everywhere (its output is 0).

α-entmax (Peters, Niculae & Martins 2019; Correia et al. 2019), for α in (1, 2]:

    ρ(s)_j = [(α − 1)·s_j − τ]_+ ^ (1 / (α − 1)),   τ the one number with Σ_j ρ(s)_j = 1.

α = 2 is sparsemax (Martins & Astudillo 2016), the Euclidean projection onto the
simplex; α → 1 tends to softmax. Every map here is computed from one threshold
per row: softmax's is its log-sum-exp, the others' is τ. sparsemax and 1.5-entmax
find τ exactly by sorting the row; other α by bisection and Newton's method, to the
precision of the scores' dtype. Tensors use "−∞" for a key that is
not connected.

The backward passes are the maps' Jacobians, which for the sparse maps involve
only the support (the keys with ρ > 0): with g_j = ρ_j^(2 − α) on the support and 0
off it (g = 1[ρ > 0] for sparsemax),

    ds = g ⊙ dρ − g · (g · dρ) / Σ g,

and softmax's is ds = ρ ⊙ (dρ − ρ · dρ). `forward`, `recompute` and `backward`
work on rows along the last dimension, for the native CPU path, which keeps only
the thresholds between its forward and backward passes; `probabilities` is the
differentiable map for dense score tensors (the reference).

`ProbabilityMap` is the value of `compiled.prob`: the map's printed form as a str
("softmax", "sparsemax", "entmax(1.5)"), with its α.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

SOFTMAX, SPARSEMAX, ENTMAX = "softmax", "sparsemax", "entmax"
NAMES = (SOFTMAX, SPARSEMAX, ENTMAX)
SYNTAX = "`prob softmax`, `prob sparsemax` or `prob entmax(α)` with α a decimal in (1, 2], e.g. `prob entmax(1.5)`"
EXACT_ALPHAS = (Decimal("1.5"), Decimal(2))  # τ found by sorting; any other α by bisection and Newton
BISECTION_STEPS = 6  # halvings of the bracket before Newton's method takes over
MAX_NEWTON_STEPS = 50  # a safeguard: Newton converges in a handful


class ProbabilityMap(str):
    """A probability map: the str is its printed form ("softmax", "sparsemax",
    "entmax(1.5)"), ``name`` one of NAMES and ``alpha`` its α as a Decimal (1 for
    softmax, 2 for sparsemax). A str so that it prints, compares and serialises
    (JSON, certificates) as the name the file gives."""

    name: str
    alpha: Decimal

    def __new__(cls, name: str, alpha: "Decimal | str | None" = None):
        if name == SOFTMAX:
            text, value = SOFTMAX, Decimal(1)
        else:
            value = Decimal(2) if alpha is None else Decimal(alpha)
            # entmax(2) is sparsemax: one map, one name.
            text = SPARSEMAX if value == 2 else f"{ENTMAX}({format(value.normalize(), 'f')})"
        self = super().__new__(cls, text)
        self.name = text if text in (SOFTMAX, SPARSEMAX) else ENTMAX
        self.alpha = value
        return self

    def __getnewargs__(self):  # pickling: rebuild from (name, α)
        return (self.name, str(self.alpha))

    @property
    def is_softmax(self) -> bool:
        return self.name == SOFTMAX

    @property
    def exact(self) -> bool:
        """Whether τ is found exactly by sorting (softmax needs no τ)."""
        return self.is_softmax or self.alpha in EXACT_ALPHAS


def as_map(prob) -> ProbabilityMap:
    """A ProbabilityMap from one, or from its printed form ("entmax(1.5)")."""
    if isinstance(prob, ProbabilityMap):
        return prob
    text = str(prob).replace(" ", "")
    if text in (SOFTMAX, SPARSEMAX):
        return ProbabilityMap(text)
    if text.startswith(ENTMAX + "(") and text.endswith(")"):
        alpha, problem = parse_alpha(text[len(ENTMAX) + 1:-1])
        if problem is None:
            return ProbabilityMap(ENTMAX, alpha)
    raise ValueError(f"not a probability map: {prob!r} (write {SYNTAX})")


def parse_alpha(text: str) -> "tuple[Decimal | None, tuple[str, str] | None]":
    """(α, None) for a decimal literal in (1, 2], else (None, (message, help))."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or any(c not in "0123456789." for c in text):
        return None, (f"α must be a decimal number such as 1.5, not '{text}'",
                      "write the number itself: `prob entmax(1.5)`")
    if not 1 < value <= 2:
        return None, (f"α = {text} is outside (1, 2]",
                      "α = 1 is softmax (`prob softmax`), α = 2 sparsemax; entmax interpolates between them")
    return value, None


# ---- the maps on rows ----------------------------------------------------------------------


def _newton_tolerance(dtype) -> float:
    """Newton stops once no row's τ moves more than this (τ lies in a bracket of width ≤ 1)."""
    import torch

    return 4 * torch.finfo(dtype).eps


FIRST_CANDIDATES = 32  # the largest entries of a row looked at first (doubled until enough)


def _sparse_threshold(scores, prob: ProbabilityMap):
    """(τ, max) of a sparse map for rows of scores, τ in the units of (α − 1)·(s − max), from
    the k largest entries of each row only. τ of the k largest alone is at most the row's
    τ (more entries only raise Σ [x − τ]_+^p, whose root is τ); and once every row's k-th
    largest entry is at most that τ, the entries left out are 0 there too, so it *is* the
    row's τ. k starts at FIRST_CANDIDATES and doubles until then (or until it is the row
    length): a row is sorted only as far as its support."""
    import torch

    length = scores.shape[-1]
    k = min(length, FIRST_CANDIDATES)
    while True:
        top = torch.topk(scores, k, dim=-1, sorted=True).values if k < length else \
            torch.sort(scores, dim=-1, descending=True).values
        first = top[..., :1]
        first = torch.where(torch.isfinite(first), first, torch.zeros_like(first))
        shifted = (top - first) * float(prob.alpha - 1)
        tau = (_sorted_threshold if prob.exact else _bisected_threshold)(shifted, prob.alpha)
        if k == length or not bool((shifted[..., -1:] > tau).any()):
            return torch.where(torch.isfinite(shifted[..., :1]), tau, torch.zeros_like(tau)), first  # empty rows: any τ
        k = min(length, 2 * k)


def _sorted_threshold(ordered, alpha: Decimal):
    """Exact τ of sparsemax (α = 2) or 1.5-entmax on rows in descending order (max 0, −∞ for
    keys not connected): the support is the k largest entries for the largest k whose τ_k,
    the threshold that makes those k sum to 1, lies below the k-th entry."""
    import torch

    rank = torch.arange(1, ordered.shape[-1] + 1, device=ordered.device, dtype=ordered.dtype)
    connected = torch.isfinite(ordered)
    ordered0 = torch.where(connected, ordered, torch.zeros_like(ordered))
    total = ordered0.cumsum(dim=-1)
    if alpha == 2:
        tau = (total - 1) / rank
        inside = connected & (ordered > tau)
    else:  # [x − τ]_+² sums to 1: τ is the smaller root of a quadratic over the k largest
        mean = total / rank
        spread = rank * ((ordered0 * ordered0).cumsum(dim=-1) / rank - mean * mean)
        tau = mean - torch.sqrt(torch.clamp((1 - spread) / rank, min=0))
        inside = connected & (tau <= ordered)
    support = inside.sum(dim=-1, keepdim=True)
    return tau.gather(-1, (support - 1).clamp(min=0))


def _bisected_threshold(x, alpha: Decimal):
    """τ of α-entmax on rows x (max 0; the k largest of a row will do, see _sparse_threshold):
    the root of f(τ) = Σ [x − τ]_+^p − 1, p = 1/(α − 1).
    f decreases, with f(−1) ≥ 0 (the max alone gives 1) and f(−c^(1 − α)) ≤ 0 for c the
    entries above −1 (each gives at most 1/c there, the others 0); and it is convex since
    p ≥ 1. So a few bisection steps, then
    Newton's method from the left end of the bracket, which for a convex decreasing f
    climbs to the root without ever passing it, quadratically once close, until τ moves
    less than the dtype's precision."""
    import torch

    power = 1 / float(alpha - 1)
    lo = torch.full_like(x[..., :1], -1.0)
    hi = -((x > -1).sum(dim=-1, keepdim=True).clamp(min=1).to(x.dtype) ** float(1 - alpha))
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        above = torch.clamp(x - mid, min=0).pow(power).sum(dim=-1, keepdim=True) >= 1
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    tau, tolerance = lo, _newton_tolerance(x.dtype)
    for _ in range(MAX_NEWTON_STEPS):
        gap = torch.clamp(x - tau, min=0)
        slope = gap.pow(power - 1)
        value = (slope * gap).sum(dim=-1, keepdim=True) - 1
        step = value / (power * slope.sum(dim=-1, keepdim=True)).clamp(min=torch.finfo(x.dtype).tiny)
        moved = torch.minimum(tau + step.clamp(min=0), hi)  # an empty row's step is −∞: it stays
        done = float((moved - tau).max()) <= tolerance
        tau = moved
        if done:
            break
    return tau


def _from_threshold(x, tau, prob: ProbabilityMap, overwrite: bool = False):
    """[x − τ]_+^(1/(α−1)) (in x's storage when ``overwrite``); bisection's result normalised
    to sum exactly 1."""
    import torch

    p = x.sub_(tau) if overwrite else x - tau
    p = p.clamp_(min=0)
    if prob.alpha == Decimal("1.5"):
        p = p.square_()
    elif prob.alpha != 2:
        p = p.pow_(1 / float(prob.alpha - 1))
    if not prob.exact:
        p = p.div_(p.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(p.dtype).tiny))
    return p


def softmax_weights(scores, overwrite: bool = False):
    """(exp(s − max), their sum, log-sum-exp) along the last dimension: softmax before its
    division, which attention can apply to its [n, D] output instead of the [n, n] weights.
    An empty row (all −∞) gets weights 0, sum 1 and log-sum-exp 0."""
    import torch

    top = scores.amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # an empty row: exp(−∞) = 0
    weights = (scores.sub_(top) if overwrite else scores - top).exp_()
    total = weights.sum(dim=-1, keepdim=True)
    total = torch.where(total > 0, total, torch.ones_like(total))
    return weights, total, top + torch.log(total)


def forward(scores, prob, overwrite: bool = False):
    """(ρ(scores), threshold) along the last dimension; −∞ marks keys that are not connected,
    a row of −∞ gives 0. The threshold [..., 1] gives ρ back with `recompute`: softmax's
    log-sum-exp, or τ of [(α − 1)·s − τ]_+^(1/(α−1)). With ``overwrite``, ρ is written
    over the scores (which saves a pass and the memory of one copy)."""
    prob = as_map(prob)
    if prob.is_softmax:
        weights, total, lse = softmax_weights(scores, overwrite)
        return weights.div_(total), lse
    tau, top = _sparse_threshold(scores, prob)
    threshold = tau + float(prob.alpha - 1) * top
    return recompute(scores, threshold, prob, overwrite), threshold


def recompute(scores, threshold, prob, overwrite: bool = False):
    """ρ(scores) from the threshold `forward` returned for the same scores (written over the
    scores when ``overwrite``)."""
    prob = as_map(prob)
    if prob.is_softmax:
        return (scores.sub_(threshold) if overwrite else scores - threshold).exp_()
    scaled = scores if prob.alpha == 2 else (
        scores.mul_(float(prob.alpha - 1)) if overwrite else scores * float(prob.alpha - 1))
    return _from_threshold(scaled, threshold, prob, overwrite=overwrite or prob.alpha != 2)


def backward(p, grad, prob, *, delta=None, overwrite: bool = False):
    """The gradient with respect to the scores, given ρ = p and the gradient with respect
    to ρ (both along the last dimension). For softmax, ``delta`` may give Σ_j p_j·grad_j
    ([..., 1]), which attention computes more cheaply as dO · O. With ``overwrite`` the
    result is written over ``grad``."""
    import torch

    prob = as_map(prob)
    out = grad if overwrite else grad.clone()
    if prob.is_softmax:
        if delta is None:
            delta = (p * grad).sum(dim=-1, keepdim=True)
        return out.sub_(delta).mul_(p)
    if prob.alpha == 2:
        g = (p > 0).to(p.dtype)
    elif prob.alpha == Decimal("1.5"):
        g = torch.sqrt(p)
    else:
        g = p.pow(float(2 - prob.alpha))
    out.mul_(g)  # g ⊙ grad
    total = g.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(p.dtype).tiny)
    return out.addcmul_(g, out.sum(dim=-1, keepdim=True) / total, value=-1)


def _autograd_function():
    import torch

    class ProbabilityFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, scores, prob):
            p, _ = forward(scores, prob)
            ctx.save_for_backward(p)
            ctx.prob = prob
            return p

        @staticmethod
        def backward(ctx, grad):
            (p,) = ctx.saved_tensors
            return backward(p, grad, ctx.prob), None

    return ProbabilityFunction


_FUNCTION = None


def probabilities(scores, prob, dim: int = -1):
    """ρ along ``dim`` of a score tensor, −∞ where a key is not connected (a row of −∞ gives
    0); differentiable, with the support-aware backward."""
    global _FUNCTION
    if _FUNCTION is None:
        _FUNCTION = _autograd_function()
    return _FUNCTION.apply(scores.movedim(dim, -1), as_map(prob)).movedim(-1, dim)


# ---- Assumption 2 ------------------------------------------------------------------------


def assumption2(prob) -> bool:
    """Whether ρ satisfies Yun et al.'s Assumption 2 (NeurIPS 2020): for every gap ζ > 0 and
    η ∈ (0, 1] some t > 0 makes ρ(t·v)_{j*} ≥ 1 − η and Σ_{j ≠ j*} ρ(t·v)_j ≤ η for every v
    whose largest entry v_{j*} exceeds all others by ζ — ρ tends to the hardmax.

    Every map of the language does (``hardmax_scale`` gives the t):
    - softmax: ρ(tv)_j ≤ e^{−tζ} ρ(tv)_{j*} for j ≠ j*, so Σ_{j≠j*} ρ_j ≤ (n − 1)e^{−tζ}, which
      is ≤ η once t ≥ log((n − 1)/η)/ζ.
    - α-entmax, α ∈ (1, 2] (sparsemax is α = 2): ρ(s)_j = [(α − 1)s_j − τ]_+^{1/(α−1)}. Take
      s = tv with t ≥ 1/((α − 1)ζ), and τ = (α − 1)s_{j*} − 1. Then ρ_{j*} = 1^{1/(α−1)} = 1
      and, for j ≠ j*, (α − 1)s_j − τ = 1 − (α − 1)t(v_{j*} − v_j) ≤ 1 − (α − 1)tζ ≤ 0, so
      ρ_j = 0. The weights sum to 1, so this τ is the threshold (Σ_j ρ_j is strictly
      decreasing in τ wherever it is positive, so τ is unique), and ρ(tv) is exactly the
      one-hot vector of j*: the conditions hold for every η, with a t that does not even
      depend on η or n.
    """
    prob = as_map(prob)
    return prob.is_softmax or 1 < prob.alpha <= 2


def hardmax_scale(prob, gap: float, eta: float, n: int) -> float:
    """A t of Assumption 2 (see ``assumption2``) for gap ζ, tolerance η and rows of n keys."""
    import math

    prob = as_map(prob)
    if prob.is_softmax:
        return max(math.log(max(n - 1, 1) / eta), 0.0) / gap
    return 1 / (float(prob.alpha - 1) * gap)
