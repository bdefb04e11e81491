"""The window model in eager PyTorch, for the end-to-end comparisons in bench_e2e.py.

It takes windowner's parameters (``E_word`` (V, d), ``E_caps`` (6, d_c), ``W`` (H, D),
``b`` (H,), ``U`` (H, C)) and does windowner's training step on the same batches: input
dropout on x, tanh, dropout on the hidden layer, the multi-class hinge (Weston–Watkins,
summed over tags, mean over the batch), Adam — lazy (SparseAdam) on the word table as
windowner's row-wise update, fused on the rest. ``copy_into`` writes the parameters back
into a numpy dict, so windowner's own evaluation (Viterbi, conlleval F1) scores both.
"""

from __future__ import annotations

import numpy as np


class TorchWindowStep:
    """``step(words, caps, tags, lr) -> loss`` on windows (B, w) int, tags (B,) int."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float,
        margin: float = 1.0,
        keep_prob: float = 1.0,
        input_keep_prob: float = 1.0,
        seed: int = 0,
    ) -> None:
        import torch
        import torch.nn.functional as F  # noqa: N812

        self.torch, self.F = torch, F
        torch.manual_seed(seed)

        def param(a: np.ndarray) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.from_numpy(np.array(a, dtype=np.float32)))

        self.E_word = param(params["E_word"])
        self.E_caps = param(params["E_caps"]) if "E_caps" in params else None
        self.W, self.b = param(params["W"]), param(params["b"])
        self.Ut = param(params["U"].T)  # scores = a U = F.linear(a, Uᵀ)
        dense = [p for p in (self.E_caps, self.W, self.b, self.Ut) if p is not None]
        self.optimizers = [
            torch.optim.SparseAdam([self.E_word], lr=lr),
            torch.optim.Adam(dense, lr=lr, fused=True),
        ]
        self.margin, self.n_out = margin, params["U"].shape[1]
        self.p_in, self.p_hidden = 1.0 - input_keep_prob, 1.0 - keep_prob

    def window_scores(self, words: np.ndarray, caps: np.ndarray):
        """The network on windows (B, w) → scores (B, C), with training-time dropout."""
        torch, F = self.torch, self.F
        n = len(words)
        words_t = torch.from_numpy(words.astype(np.int64))
        parts = [F.embedding(words_t, self.E_word, sparse=True).view(n, -1)]
        if self.E_caps is not None:
            caps_t = torch.from_numpy(caps.astype(np.int64))
            parts.append(F.embedding(caps_t, self.E_caps).view(n, -1))
        x = torch.cat(parts, dim=1)
        if self.p_in > 0:
            x = F.dropout(x, self.p_in, training=True)
        a = torch.tanh(F.linear(x, self.W, self.b))
        if self.p_hidden > 0:
            a = F.dropout(a, self.p_hidden, training=True)
        return F.linear(a, self.Ut)

    def step(self, words: np.ndarray, caps: np.ndarray, tags: np.ndarray, lr: float) -> float:
        scores = self.window_scores(words, caps)
        y = self.torch.from_numpy(tags.astype(np.int64))
        # multi_margin_loss averages over the C classes too; × C gives windowner's Σ_{c≠y}
        loss = self.F.multi_margin_loss(scores, y, margin=self.margin) * self.n_out
        return self.update(loss, lr)

    def update(self, loss, lr: float) -> float:
        """Backward and one Adam step of every optimizer at rate ``lr``; the loss as a float."""
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        return float(loss.item())

    def copy_into(self, params: dict[str, np.ndarray]) -> None:
        """Write the trained parameters into windowner's params dict (in place, same dtype)."""
        with self.torch.no_grad():
            params["E_word"][...] = self.E_word.numpy()
            if self.E_caps is not None:
                params["E_caps"][...] = self.E_caps.numpy()
            params["W"][...] = self.W.numpy()
            params["b"][...] = self.b.numpy()
            params["U"][...] = self.Ut.numpy().T


class TorchSentenceStep(TorchWindowStep):
    """``step(words, caps, tags, bounds, lr) -> loss`` on the windows of whole sentences
    delimited by ``bounds`` (S + 1,): windowner's ``crf`` objective (see the module text).
    ``constraints``: (allowed (C, C) bool, allowed_start (C,) bool) or None."""

    def __init__(self, params, lr, keep_prob=1.0, input_keep_prob=1.0, seed=0, constraints=None):
        super().__init__(params, lr, 1.0, keep_prob, input_keep_prob, seed)
        torch = self.torch
        self.A = torch.nn.Parameter(torch.from_numpy(np.array(params["A"], dtype=np.float32)))
        self.start = torch.nn.Parameter(torch.from_numpy(np.array(params["start"], np.float32)))
        self.end = torch.nn.Parameter(torch.from_numpy(np.array(params["end"], np.float32)))
        self.optimizers.append(torch.optim.Adam([self.A, self.start, self.end], lr=lr, fused=True))
        self.forbidden = None
        if constraints is not None:
            allowed, allowed_start = constraints
            self.forbidden = (torch.from_numpy(~allowed), torch.from_numpy(~allowed_start))

    def step(self, words, caps, tags, bounds, lr: float) -> float:  # type: ignore[override]
        torch = self.torch
        scores = self.window_scores(words, caps)
        lengths = torch.from_numpy(np.diff(bounds).astype(np.int64))
        keep = lengths > 0
        padded = torch.nn.utils.rnn.pad_sequence(
            [s for s in torch.split(scores, lengths.tolist()) if len(s)], batch_first=True
        )  # (S, L, C)
        gold = torch.nn.utils.rnn.pad_sequence(
            [
                t
                for t in torch.split(torch.from_numpy(tags.astype(np.int64)), lengths.tolist())
                if len(t)
            ],
            batch_first=True,
        )
        loss = self.nll(padded, gold, lengths[keep]).sum() / max(len(tags), 1)
        return self.update(loss, lr)

    def transitions(self):
        A, start = self.A, self.start
        if self.forbidden is not None:
            A = A.masked_fill(self.forbidden[0], float("-inf"))
            start = start.masked_fill(self.forbidden[1], float("-inf"))
        return A, start, self.end

    def nll(self, U, y, lengths):
        """−log p(y | sentence) per sentence: U (S, L, C) padded scores, y (S, L), lengths (S,)."""
        torch = self.torch
        A, start, end = self.transitions()
        S, L, _ = U.shape
        rows = torch.arange(S)
        alpha = start + U[:, 0]
        gold = start[y[:, 0]] + U[rows, 0, y[:, 0]]
        for t in range(1, L):
            live = (t < lengths)[:, None]
            step = torch.logsumexp(alpha[:, :, None] + A, dim=1) + U[:, t]
            alpha = torch.where(live, step, alpha)
            add = A[y[:, t - 1], y[:, t]] + U[rows, t, y[:, t]]
            gold = gold + torch.where(live[:, 0], add, torch.zeros_like(add))
        gold = gold + end[y[rows, lengths - 1]]
        return torch.logsumexp(alpha + end, dim=1) - gold

    def copy_into(self, params: dict[str, np.ndarray]) -> None:
        super().copy_into(params)
        with self.torch.no_grad():
            for name in ("A", "start", "end"):
                params[name][...] = getattr(self, name).numpy()
