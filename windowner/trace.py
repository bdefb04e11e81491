"""The lecture notes' backprop example, traced value by value (``windowner gradcheck --trace``).

The notes (§1.3–1.5) score the window "Museums in Paris are amazing" with s = Uᵀ f(W x + b),
a corrupted window "Not all museums in Paris" with s_c, and minimise J = max(0, Δ + s_c − s),
Δ = 1, for 5-word windows of 4-dim word vectors (x ∈ R^20) and 8 sigmoid units (W ∈ R^(8×20),
b ∈ R^8, U ∈ R^(8×1)). They then walk the gradient of one weight, W₁₄ (1-based: ``W[0, 3]``),
from the score back to the input: δ at the score, δ at the hidden layer f′(z) ∘ U δ, ∇W = δ xᵀ,
∇b = δ, and on to the word vectors.

Everything here runs the real layer functions (``nn/layers.py``) and the real ranking hinge
(``nn/losses.py``) on a real ``WindowScorer``; ``notes_trace`` also checks the result against
``WindowScorer.loss_and_grads`` and against a central difference of J in W₁₄.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console

from windowner.gradcheck import EPS, KINK_GAP, TOLERANCE, dense_grad, relative_error
from windowner.nn import layers
from windowner.nn.activations import DERIVATIVES
from windowner.nn.layers import SparseGrad
from windowner.nn.losses import ranking_hinge
from windowner.nn.model import Batch, ModelSpec, WindowScorer
from windowner.render import window_text

TRUE_WINDOW = ("Museums", "in", "Paris", "are", "amazing")
CORRUPT_WINDOW = ("Not", "all", "museums", "in", "Paris")
VOCAB = ("<unk>", "<s>", "</s>", "museums", "in", "paris", "are", "amazing", "not", "all")
WORD_DIM, HIDDEN, MARGIN = 4, 8, 1.0
EMBED_SCALE = 0.5  # configs/seed.yaml's embeddings.scale
ROW, COL = 0, 3  # the notes' W₁₄, indexed from 1


@dataclass(frozen=True)
class WindowPass:
    """Forward and backward values of one window (H = 8 hidden units, D = 20 inputs).

    x (D,), z (H,), a (H,), s: the forward pass; ds = ∂J/∂s; u_delta = U ds (H,) is the error
    at a; fprime = f′(z) (H,); delta = f′(z) ∘ U ds (H,); grad_w = δ xᵀ (H, D); grad_b = δ (H,);
    grad_u = a ds (H,); grad_x = Wᵀ δ (D,); grad_e: the word-vector gradient rows of this window.
    """

    words: tuple[str, ...]
    ids: np.ndarray
    x: np.ndarray
    z: np.ndarray
    a: np.ndarray
    s: float
    ds: float
    u_delta: np.ndarray
    fprime: np.ndarray
    delta: np.ndarray
    grad_w: np.ndarray
    grad_b: np.ndarray
    grad_u: np.ndarray
    grad_x: np.ndarray
    grad_e: SparseGrad


@dataclass(frozen=True)
class Trace:
    """The whole example: both windows, J, the summed gradients and the W₁₄ check.

    grads: {"W": (8, 20), "b": (8,), "U": (8, 1), "E_word": SparseGrad over the used words}.
    model_max_diff: max |trace − WindowScorer.loss_and_grads| over every gradient entry.
    """

    model: WindowScorer
    true: WindowPass
    corrupt: WindowPass
    J: float
    grads: dict[str, Any]
    w14_analytic: float
    w14_numeric: float
    w14_rel_error: float
    model_max_diff: float
    seed: int
    draws: int

    @property
    def ok(self) -> bool:
        return self.w14_rel_error < TOLERANCE and self.model_max_diff < 1e-12

    def word_grads(self) -> dict[str, np.ndarray]:
        """{vocabulary word: (4,) ∇ of its vector}, summed over both windows."""
        g = self.grads["E_word"]
        return {VOCAB[int(i)]: row for i, row in zip(g.ids, g.rows, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        def window(w: WindowPass) -> dict[str, Any]:
            keys = ("x", "z", "a", "u_delta", "fprime", "delta", "grad_b", "grad_x")
            out: dict[str, Any] = {"words": list(w.words), "s": w.s, "dJ_ds": w.ds}
            out.update({k: getattr(w, k).tolist() for k in keys})
            return out

        return {
            "seed": self.seed,
            "draws": self.draws,
            "true": window(self.true),
            "corrupt": window(self.corrupt),
            "J": self.J,
            "grad_W": self.grads["W"].tolist(),
            "grad_b": self.grads["b"].tolist(),
            "grad_U": self.grads["U"][:, 0].tolist(),
            "grad_word_vectors": {w: v.tolist() for w, v in self.word_grads().items()},
            "W14": {
                "analytic": self.w14_analytic,
                "numeric": self.w14_numeric,
                "rel_error": self.w14_rel_error,
            },
            "max_diff_vs_model": self.model_max_diff,
            "ok": self.ok,
        }


def notes_spec() -> ModelSpec:
    """The notes' architecture: 5 × 4-dim words, 8 sigmoid units, one score, ranking, Δ = 1."""
    return ModelSpec(
        vocab_size=len(VOCAB),
        n_out=1,
        window=5,
        word_dim=WORD_DIM,
        caps_dim=0,
        hidden=HIDDEN,
        activation="sigmoid",
        objective="ranking",
        margin=MARGIN,
        dtype="float64",
    )


def window_ids(words: tuple[str, ...]) -> np.ndarray:
    """(5,) int ids of a window's (lowercased) words."""
    return np.array([VOCAB.index(w.lower()) for w in words])


def notes_batch() -> Batch:
    """One true window and its corrupted window, as the model's Batch (no caps features)."""
    zeros = np.zeros((1, 5), dtype=np.int64)
    true, corrupt = window_ids(TRUE_WINDOW)[None, :], window_ids(CORRUPT_WINDOW)[None, :]
    return Batch(true, zeros, np.array([1]), corrupt, zeros.copy())


def forward(model: WindowScorer, words: tuple[str, ...]) -> tuple[dict[str, Any], tuple]:
    """One window through the real layers → ({ids, x (20,), z (8,), a (8,), s}, caches)."""
    p = model.params
    ids = window_ids(words)
    x, emb_cache = layers.embedding_forward(p["E_word"], ids[None, :])
    z, affine_cache = layers.affine_forward(x, p["W"], p["b"])
    a, act_cache = layers.activation_forward(z, model.spec.activation)
    s, lin_cache = layers.linear_forward(a, p["U"])
    values = {"ids": ids, "x": x[0], "z": z[0], "a": a[0], "s": float(s[0, 0])}
    return values, (emb_cache, affine_cache, act_cache, lin_cache)


def backward(words: tuple[str, ...], values: dict, caches: tuple, ds: float) -> WindowPass:
    """The backward pass of one window from δ at the score, ds = ∂J/∂s, through the real
    layers: U δ, δ = f′(z) ∘ U δ, ∇W = δ xᵀ, ∇b = δ, ∇x = Wᵀ δ, the word-vector rows."""
    emb_cache, affine_cache, act_cache, lin_cache = caches
    u_delta, grad_u = layers.linear_backward(np.array([[ds]]), lin_cache)
    delta = layers.activation_backward(u_delta, act_cache)
    grad_x, grad_w, grad_b = layers.affine_backward(delta, affine_cache)
    fprime = DERIVATIVES[act_cache[1]](values["a"], act_cache[2])
    return WindowPass(
        words, values["ids"], values["x"], values["z"], values["a"], values["s"], ds,
        u_delta[0], fprime, delta[0], grad_w, grad_b, grad_u[:, 0], grad_x[0],
        layers.embedding_backward(grad_x, emb_cache),
    )  # fmt: skip


def hinge(model: WindowScorer) -> tuple[float, float, float, tuple]:
    """Both forward passes and the ranking hinge → (J, ∂J/∂s, ∂J/∂s_c, (values, caches) × 2)."""
    true, corrupt = forward(model, TRUE_WINDOW), forward(model, CORRUPT_WINDOW)
    J, d_true, d_corrupt = ranking_hinge(
        np.array([true[0]["s"]]), np.array([corrupt[0]["s"]]), model.spec.margin
    )
    return J, float(d_true[0]), float(d_corrupt[0]), (true, corrupt)


def draw_model(seed: int, tries: int = 100) -> tuple[WindowScorer, int]:
    """The notes' model, initialised from ``seed`` (Xavier W and U, embeddings U[±0.5], b = 0)
    and redrawn until the hinge is active with a gap, 1 + s_c − s > KINK_GAP; otherwise every
    gradient would be 0 and the trace would teach nothing. → (model, draws used)."""
    rng = np.random.default_rng(seed)
    for draw in range(1, tries + 1):
        model = WindowScorer.create(notes_spec(), rng, "xavier_uniform", embed_scale=EMBED_SCALE)
        if hinge(model)[0] > KINK_GAP:
            return model, draw
    raise RuntimeError(f"no initialisation with an active hinge in {tries} draws")


def numeric_w14(model: WindowScorer, batch: Batch, eps: float = EPS) -> float:
    """(J(W₁₄ + ε) − J(W₁₄ − ε)) / 2ε through ``WindowScorer.loss_and_grads``, in float64."""
    W = model.params["W"]
    old = W[ROW, COL]
    W[ROW, COL] = old + eps
    plus = model.loss_and_grads(batch)[0]
    W[ROW, COL] = old - eps
    minus = model.loss_and_grads(batch)[0]
    W[ROW, COL] = old
    return (plus - minus) / (2 * eps)


def max_diff(grads: dict[str, Any], model_grads: dict[str, Any], model: WindowScorer) -> float:
    """Largest |difference| between two gradient dicts over every parameter."""
    return max(
        float(np.max(np.abs(dense_grad(grads[k], p.shape) - dense_grad(model_grads[k], p.shape))))
        for k, p in model.params.items()
    )


def notes_trace(seed: int = 0) -> Trace:
    """Trace the notes' example: forward values, the backward pass step by step, the summed
    gradients, and the W₁₄ entry analytic vs numeric."""
    model, draws = draw_model(seed)
    J, d_true, d_corrupt, (true, corrupt) = hinge(model)
    tp = backward(TRUE_WINDOW, *true, d_true)
    cp = backward(CORRUPT_WINDOW, *corrupt, d_corrupt)
    ids = np.concatenate([tp.grad_e.ids, cp.grad_e.ids])
    grads = {
        "W": tp.grad_w + cp.grad_w,
        "b": tp.grad_b + cp.grad_b,
        "U": (tp.grad_u + cp.grad_u)[:, None],
        "E_word": layers.sum_rows(ids, np.concatenate([tp.grad_e.rows, cp.grad_e.rows])),
    }
    batch = notes_batch()
    _, model_grads = model.loss_and_grads(batch)
    analytic = float(grads["W"][ROW, COL])
    numeric = numeric_w14(model, batch)
    rel = float(relative_error(np.float64(analytic), numeric))
    return Trace(
        model, tp, cp, J, grads, analytic, numeric, rel,
        max_diff(grads, model_grads, model), seed, draws,
    )  # fmt: skip


# ----------------------------------------------------------------------------- text

LABEL = 23  # width of the label column; a vector of 8 entries follows: 23 + 57 = 80


def vec(v: np.ndarray, digits: int = 3) -> str:
    """A short vector as ``[ 0.123 -0.456 …]``, each entry ``digits + 3`` wide."""
    return "[" + " ".join(f"{x:{digits + 3}.{digits}f}" for x in v) + "]"


def row(label: str, value: str) -> str:
    return f"{label:<{LABEL}}{value}"


def forward_lines(w: WindowPass, c: str) -> list[str]:
    """x, z, a, s of one window (``c`` = "" for the true window, "_c" for the corrupted)."""
    lines = [f"x{c} = [" + "; ".join(f"e({v.lower()})" for v in w.words) + "]  (5 × 4 = 20)"]
    lines += [row(f"  {v.lower()}", vec(w.x[4 * k : 4 * k + 4])) for k, v in enumerate(w.words)]
    return lines + [
        row(f"z{c} = W x{c} + b", vec(w.z)),
        row(f"a{c} = f(z{c}) = σ(z{c})", vec(w.a)),
        row(f"s{c} = Uᵀ a{c}", f"{w.s:.6f}"),
    ]


def delta_lines(w: WindowPass, c: str) -> list[str]:
    """δ at the hidden layer of one window, the notes' f′(z) ∘ U δ."""
    return [
        row(f"  f′(z{c}) = a{c}(1−a{c})", vec(w.fprime)),
        row(f"  error at a{c}: U δ⁽³⁾", vec(w.u_delta)),
        row(f"  δ{c} = f′ ∘ U δ⁽³⁾", vec(w.delta)),
    ]


def w14_lines(t: Trace) -> list[str]:
    """The notes' error-sharing walk ①–⑧ for W₁₄, for s and for s_c, then the check."""
    i, j = ROW, COL
    u = float(t.model.params["U"][i, 0])
    lines = [
        "W₁₄ as the notes walk it (W₁₄ = W[0, 3]; x₄ = a₄⁽¹⁾, U₁ = W₁⁽²⁾, z₁ = z₁⁽²⁾):",
    ]
    for w, c in ((t.true, ""), (t.corrupt, "_c")):
        lines += [
            f" s{c or '  '}: ①② δ⁽³⁾ = ∂J/∂s{c} = {w.ds:+.0f}    "
            f"③④ error at a{c}₁ = U₁ δ⁽³⁾ = {u * w.ds:+.6f}",
            f"      ⑤⑥ δ{c}₁ = f′(z{c}₁) U₁ δ⁽³⁾ = {w.fprime[i]:.6f} × {u * w.ds:+.6f}"
            f" = {w.delta[i]:+.6f}",
            f"      ⑦⑧ x{c}₄ δ{c}₁ = {w.x[j]:+.6f} × {w.delta[i]:+.6f} = {w.grad_w[i, j]:+.6f}",
        ]
    verdict = "ok" if t.w14_rel_error < TOLERANCE else "MISMATCH"
    return lines + [
        f" ∂J/∂b₁  = δ₁ + δ_c₁ = {t.grads['b'][i]:+.6f}  (the bias multiplies a constant 1)",
        f" ∂J/∂W₁₄ = x₄ δ₁ + x_c₄ δ_c₁     analytic {t.w14_analytic:+.12f}",
        f" (J(W₁₄ + ε) − J(W₁₄ − ε)) / 2ε  numeric  {t.w14_numeric:+.12f}",
        f" ε = {EPS:g}, float64: relative error {t.w14_rel_error:.1e} ({verdict})",
    ]


def gradient_lines(t: Trace) -> list[str]:
    """∇W (the columns of the first word), ∇b, ∇U and the word vectors' gradients."""
    lines = ["∇W = δ xᵀ + δ_c x_cᵀ (8 × 20); its columns 1–4, which multiply e(museums):"]
    lines += [row(f"  row {k + 1}", vec(r, 5)) for k, r in enumerate(t.grads["W"][:, :4])]
    lines += [
        row("∇b = δ + δ_c", vec(t.grads["b"])),
        row("∇U = −a + a_c", vec(t.grads["U"][:, 0])),
        "The gradient reaching the word vectors, ∇x = Wᵀ δ (20 = 5 × 4), one slice per",
        "word; museums, in and paris are in both windows, so their two slices add up:",
    ]
    return lines + [row(f"  ∇e({w})", vec(g, 5)) for w, g in t.word_grads().items()]


def trace_lines(t: Trace) -> list[str]:
    """The whole trace as lines of at most 80 characters."""
    return [
        "The lecture notes' example (§1.3–1.5): 5-word windows of 4-dim word vectors,",
        "8 sigmoid units, one score: x ∈ R^20, W ∈ R^(8×20), b ∈ R^8, U ∈ R^(8×1), s ∈ R.",
        f"Seed {t.seed}, draw {t.draws}: Xavier W and U, word vectors U[±{EMBED_SCALE}], b = 0; "
        "float64.",
        "",
        f"true window       {window_text(list(TRUE_WINDOW)):<32} s   = Uᵀ f(W x + b)",
        f"corrupted window  {window_text(list(CORRUPT_WINDOW)):<32} s_c = Uᵀ f(W x_c + b)",
        "",
        "── forward " + "─" * 68,
        *forward_lines(t.true, ""),
        *forward_lines(t.corrupt, "_c"),
        f"J = max(0, Δ + s_c − s) = max(0, 1 + ({t.corrupt.s:.6f}) − ({t.true.s:.6f}))",
        f"  = {t.J:.6f} > 0: the hinge is active, so the gradients are not zero.",
        "",
        "── backward " + "─" * 67,
        f"δ at the score: δ⁽³⁾ = ∂J/∂s = {t.true.ds:+.0f} (true), ∂J/∂s_c = {t.corrupt.ds:+.0f}"
        " (corrupted)",
        "δ at the hidden layer, δ⁽²⁾ = f′(z) ∘ U δ⁽³⁾, for each window:",
        *delta_lines(t.true, ""),
        *delta_lines(t.corrupt, "_c"),
        *gradient_lines(t),
        "",
        *w14_lines(t),
        f"All of these equal WindowScorer.loss_and_grads' gradients (max |diff| "
        f"{t.model_max_diff:.0e}).",
    ]


def print_trace(console: Console, t: Trace) -> None:
    """The trace on ``console``, as plain text (no markup: the windows contain brackets)."""
    for line in trace_lines(t):
        console.print(line, markup=False, highlight=False)
