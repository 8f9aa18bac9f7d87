"""Shared trunk for TransformerLens decoding: rows that agree compute the layers below their hooks once.

In an intervention sweep the rows of one example under different conditions run the same tokens
through the same weights; a condition's hooks sit at or above its *trunk layer* (its first hooked
block), so below it the row computes exactly what the baseline row computes - for as long as the
generated tokens agree. :class:`TrunkCache` keeps the KV cache of a decoding session in that
shared form and runs each decoding step layer segment by layer segment:

* **Groups.** Every running row has a group (rows with the same prompt and the same tokens so far,
  e.g. one example's rows under all conditions) and a trunk layer (``n_layers`` for a row without
  hooks). At block ``l`` the rows of a group whose trunk layer is above ``l`` are one *class*: one
  batch row of the forward and one row of the KV cache of block ``l``. A row at or above its trunk
  layer is its own class. Blocks between two consecutive trunk layers form a *segment* with one
  class layout, run by one ``model(...)`` call (``start_at_layer`` / ``stop_at_layer``); the residual
  stream is expanded (``index_select``) from one segment's classes to the next's.
* **Forks.** Before each step the rows of a group are split by the token they feed: where tokens
  differ the group splits, and every block's cache rows are copied (``index_select``, a new tensor)
  to the new classes - a later write to one row's cache never reaches another's. Groups never merge.
* **Rows leaving / joining.** :meth:`select_rows` (finished rows leave, rows are reordered or
  repeated) and :meth:`append` (rows of new prompts join, the two caches left-padded to one width)
  re-derive the layout and copy cache rows where a class changed.
* **Hooks.** Before each segment the row labels (:class:`~.generation.RowLabels`) are set to the
  segment's classes: a class that is one row carries the row's label, a shared class ``-1``. A
  condition's hooks sit at or above its trunk layer, where its rows are their own classes, so
  row-scoped hooks see exactly their rows. Hooks that apply to every row (attached outside a sweep)
  would see a shared class once: the decoding engine does not share the trunk then.

* **Certified argmax** (``adapter.certifies_argmax``, off by default). In greedy decoding (``argmax_only``) the last segment stops before the
  unembedding: each group's reference class (its highest trunk layer, e.g. the unhooked baseline) is
  unembedded in full, and the other classes of the group take their next token from it where
  :func:`~.certified_argmax.certify` proves it is their own argmax (else they are unembedded too).

Greedy and paired sampling (common random numbers per example) both keep the rows of a group on
identical tokens until their logits part, so the rows compute what they compute unshared, up to
float reduction order (a batch of another size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .tl_attention import append_entry_rows, entry_tensors, left_pad, set_entry_tensors, trim_cache


@dataclass
class TrunkRows:
    """Per decoding row: its group (rows that may share: the same prompt, e.g. one example's rows of
    one plan), its trunk layer (first block its hooks act at; ``n_layers``: no hooks) and its label."""

    groups: Int[Tensor, " rows"]
    layers: Int[Tensor, " rows"]
    labels: Int[Tensor, " rows"]

    def __post_init__(self):
        self.groups, self.layers, self.labels = (torch.as_tensor(t, dtype=torch.long).reshape(-1).cpu()
                                                 for t in (self.groups, self.layers, self.labels))
        if not (self.groups.numel() == self.layers.numel() == self.labels.numel()):
            raise ValueError("TrunkRows needs one group, one trunk layer and one label per row.")
        if self.layers.numel() and int(self.layers.min()) < 0:
            raise ValueError("trunk layers must be >= 0.")

    def __len__(self) -> int:
        return int(self.groups.numel())

    def cat(self, other: "TrunkRows") -> "TrunkRows":
        return TrunkRows(torch.cat([self.groups, other.groups]), torch.cat([self.layers, other.layers]),
                         torch.cat([self.labels, other.labels]))

    def select(self, index: Int[Tensor, " k"]) -> "TrunkRows":
        index = index.cpu()
        return TrunkRows(self.groups[index], self.layers[index], self.labels[index])


@dataclass
class _Segment:
    start: int  # first block
    end: int  # one past its last block
    cls: Int[Tensor, " rows"]  # class of every row
    reps: Int[Tensor, " classes"]  # the first row of every class
    labels: Int[Tensor, " classes"]  # the row's label for a one-row class, -1 for a shared one


def _layout(rows: TrunkRows, n_layers: int) -> list[_Segment]:
    """Segments at every distinct trunk layer; classes: (group, own row if at or above its trunk layer)."""
    n = len(rows)
    bounds = sorted({0} | {int(l) for l in rows.layers.tolist() if l < n_layers})
    segs = []
    ids = torch.arange(n)
    groups = torch.unique(rows.groups, return_inverse=True)[1] if n else rows.groups
    for i, b in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else n_layers
        key = groups * (n + 1) + torch.where(rows.layers <= b, ids + 1, 0)
        _, cls = torch.unique(key, return_inverse=True)
        k = int(cls.max()) + 1 if n else 0
        reps = torch.full((k,), n, dtype=torch.long).scatter_reduce(0, cls, ids, reduce="amin")
        size = torch.bincount(cls, minlength=k)
        segs.append(_Segment(b, end, cls, reps, torch.where(size == 1, rows.labels[reps], -1)))
    return segs


class TrunkCache:
    """The KV cache of a decoding session, shared across the rows of a group below their trunk layers
    (see the module docstring). Built from a TL cache with one row per decoding row."""

    def __init__(self, model, cache, rows: TrunkRows, row_labels=None):
        n = len(rows)
        if cache.previous_attention_mask.shape[0] != n:
            raise ValueError(f"the cache holds {cache.previous_attention_mask.shape[0]} rows for {n} trunk rows.")
        self.model, self.n_layers, self.row_labels = model, model.cfg.n_layers, row_labels
        self.entries = cache.entries
        self.row_mask = cache.previous_attention_mask  # [rows, pos]: identical within a class
        self.rows = rows
        self.segs = [_Segment(0, self.n_layers, torch.arange(n), torch.arange(n), rows.labels)]
        self.seg_of = [0] * self.n_layers
        self.row_layers = 0  # decoding steps × rows × blocks, and the class-blocks actually computed
        self.computed_layers = 0
        # greedy decoding: a class's argmax may be certified from its group's reference class
        # (:mod:`.certified_argmax`) instead of its full unembedding; counts of classes unembedded / certified
        self.argmax_only = False
        self.unembedded = 0
        self.certified = 0
        self._bound = None
        self._relayout([self._cls_at(l) for l in range(self.n_layers)], torch.arange(n), rows)

    def __repr__(self) -> str:
        return (f"TrunkCache({len(self.rows)} rows, classes per segment "
                f"{[(s.start, int(s.reps.numel())) for s in self.segs]})")

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def _cls_at(self, layer: int) -> Tensor:
        return self.segs[self.seg_of[layer]].cls

    def _relayout(self, old_cls: list[Tensor], index: Int[Tensor, " rows"], rows: TrunkRows) -> None:
        """New rows ``index`` (of the old ones, whose block-``l`` classes are ``old_cls[l]``) with ``rows``:
        re-derive the classes and copy every block's cache rows to its new classes (skipped where unchanged)."""
        self.rows = rows
        self.segs = _layout(rows, self.n_layers)
        self.seg_of = [next(i for i, s in enumerate(self.segs) if s.start <= l < s.end) for l in range(self.n_layers)]
        for l, entry in enumerate(self.entries):
            parent = old_cls[l].index_select(0, index.index_select(0, self.segs[self.seg_of[l]].reps))
            tensors = entry_tensors(entry)
            n_old = next(iter(tensors.values())).shape[0]
            if parent.numel() == n_old and bool((parent == torch.arange(n_old)).all()):
                continue
            set_entry_tensors(entry, {k: t.index_select(0, parent.to(t.device)) for k, t in tensors.items()})
        self.row_mask = self.row_mask.index_select(0, index.to(self.row_mask.device))

    def select_rows(self, index: Int[Tensor, " rows"]) -> None:
        """Keep (reorder, repeat) rows ``index``; a repeated row shares with its original while they agree."""
        index = index.cpu().long()
        self._relayout([self._cls_at(l) for l in range(self.n_layers)], index, self.rows.select(index))

    def fork(self, tokens: Int[Tensor, " rows"]) -> bool:
        """Split every group by the token its rows feed next; whether any group split."""
        tokens = tokens.cpu().long()
        n_groups = int(self.rows.groups.unique().numel())
        _, groups = torch.unique(torch.stack([self.rows.groups, tokens], 1), dim=0, return_inverse=True)
        if int(groups.max()) + 1 == n_groups:
            return False
        index = torch.arange(self.n_rows)
        self._relayout([self._cls_at(l) for l in range(self.n_layers)], index,
                       TrunkRows(groups, self.rows.layers, self.rows.labels))
        return True

    def append(self, other: "TrunkCache") -> None:
        """Append the rows of ``other`` (its groups renumbered apart from these), left-padding the
        shorter cache with masked positions (positions come from the mask: nothing changes)."""
        width = max(self.row_mask.shape[1], other.row_mask.shape[1])
        old_cls = []
        for l, (entry, new) in enumerate(zip(self.entries, other.entries)):
            append_entry_rows(entry, new, width)
            mine_cls = self._cls_at(l)
            n_mine = int(mine_cls.max()) + 1 if mine_cls.numel() else 0
            old_cls.append(torch.cat([mine_cls, other._cls_at(l) + n_mine]))
        self.row_mask = torch.cat([left_pad(self.row_mask, 1, width),
                                   left_pad(other.row_mask.to(self.row_mask.device), 1, width)])
        shift = int(self.rows.groups.max()) + 1 if self.n_rows else 0
        theirs = TrunkRows(other.rows.groups + shift, other.rows.layers, other.rows.labels)
        self._relayout(old_cls, torch.arange(self.n_rows + other.n_rows), self.rows.cat(theirs))

    def trim(self) -> None:
        """Drop the leading positions that no row attends to."""
        from types import SimpleNamespace

        view = SimpleNamespace(entries=self.entries, previous_attention_mask=self.row_mask)
        trim_cache(view)
        self.row_mask = view.previous_attention_mask

    def step(self, tokens: Int[Tensor, " rows"]) -> Float[Tensor, "rows d_vocab"]:
        """Feed one token per row (forking groups whose tokens differ); each row's next-token logits."""
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        self.fork(tokens)
        model = self.model
        self.row_mask = torch.cat([self.row_mask, self.row_mask.new_ones((self.n_rows, 1))], 1)
        out, prev = None, None
        for i, seg in enumerate(self.segs):
            mask = self.row_mask.index_select(0, seg.reps.to(self.row_mask.device))
            view = TransformerLensKeyValueCache(entries=self.entries, previous_attention_mask=mask[:, :-1])
            stop = None if i == len(self.segs) - 1 else seg.end
            if self.row_labels is not None:
                self.row_labels.set(seg.labels)
            certify = stop is None and self._certifying()
            if certify:
                stop = self.n_layers  # the blocks only: the unembedding is certified or computed per class below
            if prev is None:
                toks = tokens.index_select(0, seg.reps.to(tokens.device))[:, None]
                out = model(toks, attention_mask=torch.ones_like(toks), past_kv_cache=view, stop_at_layer=stop)
            else:
                up = prev.cls.index_select(0, seg.reps)
                out = model(out.index_select(0, up.to(out.device)), start_at_layer=seg.start, stop_at_layer=stop,
                            attention_mask=mask, past_kv_cache=view)
            self.computed_layers += int(seg.reps.numel()) * (seg.end - seg.start)
            prev = seg
        self.row_layers += self.n_rows * self.n_layers
        logits = self._unembed(out[:, -1], prev) if certify else out[:, -1]
        return logits.index_select(0, prev.cls.to(logits.device))

    def _certifying(self) -> bool:
        """Greedy (``argmax_only``) and the unembedding plain: no logit soft cap (rounding of the cap could
        tie two tokens), no hooks on the unembedding (a certified class skips it)."""
        if not self.argmax_only:  # the default path: nothing more per step
            return False
        from transformer_lens.utilities import softcap_enabled

        if softcap_enabled(self.model.cfg.output_logits_soft_cap):
            return False
        unembed = self.model.unembed
        return not any(hp._forward_hooks or hp._forward_pre_hooks
                       for hp in (getattr(unembed, "hook_in", None), getattr(unembed, "hook_out", None)) if hp is not None)

    def _unembed(self, resid: Float[Tensor, "classes d_model"], seg: _Segment) -> Float[Tensor, "classes d_vocab"]:
        """The last segment's logits per class: each group's reference class (the one with the highest trunk
        layer: e.g. the unhooked baseline) unembedded in full; the others' argmax certified from it
        (:func:`~.certified_argmax.certify`, then :func:`~.certified_argmax.widen` for the rows its top-k
        bound misses), unembedded in full where neither can."""
        from .certified_argmax import UnembedBound, certified_logits, certify, widen

        model = self.model
        x = model.ln_final(resid[:, None])[:, 0] if model.cfg.normalization_type is not None else resid
        n = int(seg.reps.numel())
        groups, layers = self.rows.groups[seg.reps], self.rows.layers[seg.reps]
        order = torch.argsort(groups * (self.n_layers + 2) + (self.n_layers + 1 - layers), stable=True)
        first = torch.ones(n, dtype=torch.bool)
        first[1:] = groups[order[1:]] != groups[order[:-1]]
        ref_of_group = {int(groups[c]): int(c) for c in order[first].tolist()}
        ref = torch.tensor([ref_of_group[int(g)] for g in groups.tolist()], dtype=torch.long)
        is_ref = ref == torch.arange(n)
        if self._bound is None:
            self._bound = UnembedBound.of(model.unembed.W_U, model.unembed.b_U)
        full = is_ref.clone()
        logits = x.new_empty((n, model.cfg.d_vocab_out))
        refs = torch.nonzero(is_ref).reshape(-1)
        logits[refs] = model.unembed(x.index_select(0, refs.to(x.device))[:, None])[:, 0]
        others = torch.nonzero(~is_ref).reshape(-1)
        if others.numel():
            slot = torch.full((n,), -1, dtype=torch.long)
            slot[refs] = torch.arange(refs.numel())
            ok, cand, exact = certify(self._bound, x[others], x.index_select(0, refs.to(x.device)), logits[refs],
                                      slot[ref[others]])
            logits[others[ok]] = certified_logits(cand[ok], exact[ok], logits.shape[-1])
            rest = []  # the rows whose wider certificate fails too: a second pass over W_U
            for j, c in zip(torch.nonzero(~ok).reshape(-1).tolist(), others[~ok].tolist()):
                wide = widen(self._bound, x[c], x[int(ref[c])], logits[int(ref[c])])
                if wide is None:
                    rest.append(c)
                    continue
                logits[c] = float("-inf")
                logits[c, wide[0]] = wide[1]
                ok[j] = True
            rest = torch.tensor(rest, dtype=torch.long)
            full[rest] = True
            if rest.numel():
                logits[rest] = model.unembed(x.index_select(0, rest.to(x.device))[:, None])[:, 0]
            self.certified += int(ok.sum())
        self.unembedded += int(full.sum())
        return logits
