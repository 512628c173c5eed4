"""Parameter summary, gradient statistics and a cheap per-layer gradient probe (no UI imports).

``summary`` / ``gradient_stats`` are for occasional inspection (they sync with the device);
``GradientProbe`` is what the engine calls every N steps right after ``loss.backward()``.
A layer is a module owning parameters directly, named by its path (``"0"``, ``"encoder.fc1"``,
root ``""``); a shared parameter belongs to its first owner in ``named_modules()`` order.
Probe cost on CPU (1 thread, batch-64 gradients, busy box): 784-256-128-10 MLP 1.1-1.9 ms (~0.8
of its training step), 64-128-64-10 MLP 0.25-0.4 ms (~0.4 step, mostly fixed per-op overhead).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._compiled import named_modules, plain_name

__all__ = ["summary", "ParameterSummary", "format_summary", "gradient_stats", "GradientProbe", "GradientSample",
           "activation_after", "flag_vanishing"]


def _owned_params(model: nn.Module):
    """Yield ``(path, module, params_counted_here, all_own_params)`` in model order."""
    seen: set[int] = set()
    for path, module in named_modules(model).items():  # plain names of a torch.compile'd model
        own = list(module.parameters(recurse=False))
        counted = [p for p in own if id(p) not in seen]
        seen.update(id(p) for p in own)
        yield path, module, counted, own


class ParameterSummary(pd.DataFrame):
    """The DataFrame :func:`summary` returns: one row per layer, and its totals shown under the
    table wherever it is displayed (``repr``, notebooks' HTML)::

        name    type  shape   params  trainable  frozen
        0     Linear  (4, 8)      36         36   False
        1     Linear  (2, 4)      10         10   False
        total params: 46 · trainable: 46 · non-trainable: 0

    Why not a "total" row: a pandas user sums, filters and indexes the rows
    (``df["params"].sum() == df.attrs["total_params"]``, ``df[df.frozen]``,
    ``df.set_index("name")``), and a totals row would be counted twice or show up as a layer.
    Anything derived from it (a filter, ``set_index``, ``copy``) is a plain ``DataFrame``.
    """

    @property
    def _constructor(self):  # derived frames are plain DataFrames: their totals would differ
        return pd.DataFrame

    def totals_line(self) -> str:
        """``"total params: 46 · trainable: 46 · non-trainable: 0"`` from ``attrs``."""
        a = self.attrs
        line = (f"total params: {a.get('total_params', 0):,} · trainable: {a.get('trainable_params', 0):,}"
                f" · non-trainable: {a.get('non_trainable_params', 0):,}")
        return line + (" (lazy parameters not counted)" if a.get("has_uninitialized") else "")

    def __repr__(self) -> str:
        return f"{super().__repr__()}\n{self.totals_line()}"

    def _repr_html_(self) -> str | None:
        body = super()._repr_html_()
        return None if body is None else f"{body}<p><b>{html.escape(self.totals_line())}</b></p>"


def summary(model: nn.Module, input_size: Sequence[int] | None = None) -> "ParameterSummary":
    """Parameter-count table, one row per module that owns parameters or is a leaf.

    Args:
        model: any ``nn.Module``.
        input_size: shape of one input batch, e.g. ``(1, 8)``: if given, one forward pass of
            ``torch.zeros(input_size)`` (model's device and float dtype) under ``no_grad`` in
            eval mode materialises lazy modules; the training mode is restored afterwards.

    Returns:
        :class:`ParameterSummary` (a ``pandas.DataFrame`` whose display ends with the totals) with
        columns ``name`` (module path), ``type`` (class name), ``shape`` (str of
        the weight shape, ``""`` if none, ``"uninitialized"`` for lazy parameters), ``params``
        (int, parameters owned here; tied ones counted once, by the first owner, and buffers
        not at all, as torchinfo does), ``trainable`` (int), ``frozen`` (bool: has parameters,
        none requires grad). ``df.attrs``: ``total_params``, ``trainable_params``,
        ``non_trainable_params`` (ints) and ``has_uninitialized`` (bool).

    Raises:
        ValueError: the forward pass with ``input_size`` failed (message says why).

    Example:
        >>> summary(nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2))).attrs["total_params"]
        46
    """
    if input_size is not None:
        ref = next((t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()),
                   torch.zeros(()))
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(torch.zeros(tuple(input_size), device=ref.device, dtype=ref.dtype))
        except Exception as exc:
            raise ValueError(f"summary: forward pass with torch.zeros({tuple(input_size)}) "
                             f"failed: {type(exc).__name__}: {exc}") from exc
        finally:
            model.train(was_training)
    rows = []
    for path, module, counted, own in _owned_params(model):
        if not own and next(module.children(), None) is not None:
            continue  # container without own parameters
        own_lazy = any(nn.parameter.is_lazy(p) for p in own)
        sized = [p for p in counted if not nn.parameter.is_lazy(p)]
        n = sum(p.numel() for p in sized)
        n_train = sum(p.numel() for p in sized if p.requires_grad)
        w = getattr(module, "weight", None) if own else None
        w = w if isinstance(w, torch.Tensor) else (own[0] if own else None)
        shape = "" if w is None else "uninitialized" if own_lazy else str(tuple(w.shape))
        rows.append({"name": path, "type": type(module).__name__, "shape": shape,
                     "params": int(n), "trainable": int(n_train),
                     "frozen": bool(own) and not any(p.requires_grad for p in own)})
    df = pd.DataFrame(rows, columns=["name", "type", "shape", "params", "trainable", "frozen"])
    df = ParameterSummary(df.astype({"params": "int64", "trainable": "int64", "frozen": "bool"}))
    total, trainable = int(df["params"].sum()), int(df["trainable"].sum())
    df.attrs.update(total_params=total, trainable_params=trainable,
                    non_trainable_params=total - trainable,
                    has_uninitialized=any(nn.parameter.is_lazy(p) for p in model.parameters()))
    return df


def format_summary(df: pd.DataFrame) -> str:
    """Render a :func:`summary` DataFrame as fixed-width text followed by the totals.

    Args:
        df: the DataFrame returned by :func:`summary`.

    Returns:
        Multi-line str without trailing newline; counts with thousands separators.
    """
    head = ["Layer", "Type", "Shape", "Params", "Trainable", "Frozen"]
    body = [[r.name or "(root)", r.type, r.shape, f"{r.params:,}", f"{r.trainable:,}",
             "yes" if r.frozen else ""] for r in df.itertuples(index=False)]
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]

    def line(cells):  # counts right-aligned
        return "  ".join(c.rjust(w) if i in (3, 4) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(head))
    out = [line(head), rule] + [line(r) for r in body] + [rule]
    out += [f"{label} params: {df.attrs.get(key, 0):,}" for label, key in [
        ("Total", "total_params"), ("Trainable", "trainable_params"),
        ("Non-trainable", "non_trainable_params")]]
    if df.attrs.get("has_uninitialized"):
        out.append("Uninitialized (lazy) parameters not counted: pass input_size to summary().")
    return "\n".join(out)


def _dense(g: torch.Tensor) -> torch.Tensor:
    """Flat view of a gradient; sparse gradients contribute their stored values."""
    return g.coalesce().values().reshape(-1) if g.is_sparse else g.reshape(-1)


def gradient_stats(model: nn.Module) -> pd.DataFrame:
    """Per-parameter gradient statistics, safe for frozen and unused parameters.

    Never reads ``.grad`` of a parameter whose gradient is None (the crash of case C21);
    syncs with the device once per parameter, so not for the hot path.

    Args:
        model: a module after ``loss.backward()`` (or before: every row is then "no gradient").

    Returns:
        DataFrame, one row per ``model.named_parameters()`` entry: ``name``, ``layer`` (module
        path), ``shape`` (str), ``norm`` (L2 norm of the gradient), ``mean_abs``, ``max_abs``
        (floats, NaN without a gradient), ``has_grad`` (bool), ``status``: ``"frozen"``
        (requires_grad False), ``"no gradient"`` (requires_grad True, grad None) or ``"ok"``.
    """
    rows = []
    for name, p in model.named_parameters():
        name = plain_name(name)
        g = p.grad
        a = torch.empty(0) if g is None else _dense(g.detach()).abs().float()
        norm, mean_abs, max_abs = (torch.stack([a.norm(), a.mean(), a.max()]).tolist()
                                   if a.numel() else [math.nan] * 3)
        status = "frozen" if not p.requires_grad else ("no gradient" if g is None else "ok")
        rows.append({"name": name, "layer": name.rpartition(".")[0], "shape": str(tuple(p.shape)),
                     "norm": norm, "mean_abs": mean_abs, "max_abs": max_abs,
                     "has_grad": g is not None, "status": status})
    return pd.DataFrame(rows, columns=["name", "layer", "shape", "norm", "mean_abs", "max_abs",
                                       "has_grad", "status"])


@dataclass
class GradientSample:
    """One gradient snapshot on the host.

    Attributes:
        norms: float32 ``(L,)`` per-layer gradient L2 norm, NaN for a layer without gradient.
        hist: float32 ``(L, bins)`` counts of log10(|g|) per layer (zeros excluded).
        edges: float64 ``(bins + 1,)`` bin edges in log10 units.
    """
    norms: np.ndarray
    hist: np.ndarray
    edges: np.ndarray


class GradientProbe:
    """Per-layer gradient norms and log10(|g|) histograms, computed on the device.

    Layers (modules owning a trainable parameter, model order) are fixed at construction and
    by :meth:`refresh`; gradients are re-collected by every :meth:`compute` (stale grads of
    frozen parameters ignored): only a layer fully frozen at construction and unfrozen later
    needs ``refresh()``.

    Norm: ``sqrt(sum_t ||g_t||_2^2)`` = L2 norm of the layer's concatenated gradients, one
    ``torch._foreach_norm`` call (``torch.linalg.vector_norm`` loop if it is missing).
    Histogram of log10(|g|) over all gradient elements: exact zeros and NaN are left out,
    non-zero values outside ``log10_range`` are clamped into the end bins. The gradients are
    concatenated once (float32) and all layers counted in one call (see ``_count_slots``).

    Args:
        model: the module being trained.
        bins: number of histogram bins per layer (>= 1).
        log10_range: ``(low, high)`` in log10 units, -37 <= low < high <= 38.

    Raises:
        ValueError: bins < 1 or ``log10_range`` outside those bounds.

    Example:
        >>> probe = GradientProbe(model); loss.backward()
        >>> probe.to_host(probe.compute()).norms  # (L,), for probe.layer_names
    """

    def __init__(self, model: nn.Module, bins: int = 40,
                 log10_range: tuple[float, float] = (-12.0, 2.0)) -> None:
        lo, hi = float(log10_range[0]), float(log10_range[1])
        if bins < 1 or not -37.0 <= lo < hi <= 38.0:  # float32 normal range
            raise ValueError(f"GradientProbe: need bins >= 1 and -37 <= low < high <= 38, got "
                             f"bins={bins}, log10_range={log10_range}")
        self.model, self.bins, self.lo, self.hi = model, int(bins), lo, hi
        self.edges = np.linspace(lo, hi, self.bins + 1, dtype=np.float64)
        self.refresh()

    def refresh(self) -> None:
        """Re-derive the layers from the requires_grad flags (call it on the compute thread)."""
        layers = [(path, m, counted) for path, m, counted, _ in _owned_params(self.model)
                  if any(p.requires_grad for p in counted)]
        self.layer_names = [path for path, _, _ in layers]
        self.layer_kinds = [type(m).__name__ for _, m, _ in layers]
        self._params = [counted for _, _, counted in layers]
        self._cache: tuple = ((), None, None)  # (key, present index, shift), see compute

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute norms and histograms on the gradients' device, without a host sync.

        Returns:
            ``(norms, hist)``: float32 ``(L,)`` and float32 ``(L, bins)`` tensors on the
            gradients' device; ``hist`` is on the CPU (after one sync) on MPS and on CUDA under
            ``torch.use_deterministic_algorithms``.
        """
        grads, sizes, present, layers = [], [], [], self._params
        for k, params in enumerate(layers):
            gs = [_dense(p.grad) for p in params if p.requires_grad and p.grad is not None]
            if gs:
                grads += gs
                sizes.append(sum(g.numel() for g in gs))
                present.append(k)
        L, bins, f32 = len(layers), self.bins, torch.float32
        if not grads:
            dev = layers[0][0].device if L else None
            return (torch.full((L,), math.nan, dtype=f32, device=dev),
                    torch.zeros(L, bins, dtype=f32, device=dev))
        dev = grads[0].device
        scale = bins / (self.hi - self.lo)
        key = (tuple(present), dev)
        if self._cache[0] != key:  # device tensors built once per pattern: no H2D copy later
            self._cache = (key, torch.tensor(present, device=dev),
                           torch.tensor(1.0 - self.lo * scale, device=dev))
        _, present_idx, shift = self._cache
        flat = torch.cat([g if g.device == dev else g.to(dev) for g in grads]).to(f32)  # (N,)
        views = flat.split_with_sizes(sizes)  # one contiguous view per layer with gradients
        foreach_norm = getattr(torch, "_foreach_norm", None)  # ||cat(g_t)|| = sqrt(sum ||g_t||^2)
        layer_norms = torch.stack(foreach_norm(views) if foreach_norm is not None
                                  else [torch.linalg.vector_norm(v) for v in views])
        norms = layer_norms if len(present) == L else torch.full(
            (L,), math.nan, dtype=f32, device=dev).index_copy_(0, present_idx, layer_norms)
        # u = (log10|g| - lo) * bins / width as w = u + 1: trunc(w) puts bin b of layer k in slot
        # k*(bins+1) + 1+b, zeros and NaN (w := 0) in k*(bins+1). Clamping |g| to the end-bin
        # centres first spares CPU log10 its 3-20x slower path for 0 and subnormals.
        nonzero = torch.sign(flat.abs_())  # 1; 0 for exact zeros; NaN for NaN
        flat.clamp_(10 ** (self.lo + 0.5 / scale), 10 ** (self.hi - 0.5 / scale))
        w = torch.add(shift, flat.log10_(), alpha=scale, out=flat).mul_(nonzero).nan_to_num_(0.0)
        counts = _count_slots(w, sizes, [k * (bins + 1) for k in present], L * (bins + 1))
        return norms, counts.view(L, bins + 1)[:, 1:]

    def to_host(self, out: tuple[torch.Tensor, torch.Tensor]) -> GradientSample:
        """One device-to-host transfer of ``out = (norms, hist)`` from :meth:`compute`.

        Returns:
            GradientSample with numpy arrays (see its attributes).
        """
        norms, hist = out  # hist may already be on the CPU (see compute)
        host, L = torch.cat([norms.to(hist.device), hist.reshape(-1)]).cpu().numpy(), len(norms)
        return GradientSample(host[:L], host[L:].reshape(L, self.bins), self.edges)


def _count_slots(u: torch.Tensor, sizes: list, offsets: list, n: int,
                 use_histc: bool | None = None) -> torch.Tensor:
    """Float32 ``(n,)`` counts of slot ``trunc(u) + offsets[i]`` over segment i of ``u``.

    ``histc`` on CUDA (CUDA ``bincount`` syncs with the host), else int32 ``bincount``: ~6x
    faster than ``histc`` on CPU; no ``histc`` on MPS, whose ``u`` is counted on the CPU.
    """
    if use_histc is None:  # CUDA histc is non-deterministic: not under deterministic algorithms
        use_histc = u.is_cuda and not torch.are_deterministic_algorithms_enabled()
    if use_histc:  # slot centres: integers + 0.5, exact in float32
        u, offsets = u.trunc_(), [o + 0.5 for o in offsets]
    else:
        u = u.cpu().int()  # truncates, like trunc_
    views = list(u.split_with_sizes(sizes))
    if hasattr(torch, "_foreach_add_"):  # one call for all segments
        torch._foreach_add_(views, offsets)
    else:
        for v, off in zip(views, offsets):
            v.add_(off)
    if use_histc:
        return torch.histc(u, bins=n, min=0, max=n)
    return torch.bincount(u, minlength=n).float()


def activation_after(model: nn.Module) -> dict[str, str]:
    """Map each parameter-owning module to the class name of the activation that follows it.

    That is the first ``torch.nn.modules.activation`` module (Sigmoid, ReLU, ...) after the layer
    in registration order, before the next parameter-owning module other than a ``*Norm*``
    layer. Activations applied in ``forward`` (``F.relu``) are invisible: ``""``.

    Returns:
        ``{layer_path: activation class name or ""}``.
    """
    mods = [(path, m, bool(counted)) for path, m, counted, _ in _owned_params(model)
            if counted or next(m.children(), None) is None]

    def follower(i: int) -> str:
        for _, m, owns in mods[i + 1:]:
            if type(m).__module__ == "torch.nn.modules.activation":
                return type(m).__name__
            if owns and "Norm" not in type(m).__name__:
                break
        return ""
    return {path: follower(i) for i, (path, _, owns) in enumerate(mods) if owns}


def flag_vanishing(norms: Sequence[float] | np.ndarray, layer_names: Sequence[str],
                   activations: Mapping[str, str] | Sequence[str],
                   ratio: float = 1e-4) -> list[str]:
    """Messages for layers whose gradient norm is below ``ratio`` × the last layer's norm.

    The 1e-4 default separates case C13: 10 Linear+Sigmoid layers give first/last ~1e-8, the
    same net with ReLU ~3e-3.

    Args:
        norms: ``(L,)`` per-layer gradient norms (NaN entries are skipped).
        layer_names: ``(L,)`` layer names, last entry = output layer (the reference).
        activations: ``{layer: activation}`` (e.g. from :func:`activation_after`) or a sequence
            aligned with ``layer_names``; empty names are left out of the message.
        ratio: threshold relative to the last layer's norm.

    Returns:
        One message per flagged layer; ``[]`` if none or if the last layer's norm is NaN or 0.

    Raises:
        ValueError: ``norms`` and ``layer_names`` differ in length.
    """
    norms = np.asarray(norms, dtype=np.float64)
    if len(norms) != len(layer_names):
        raise ValueError(f"flag_vanishing: {len(norms)} norms for {len(layer_names)} layers")
    if len(norms) < 2 or not np.isfinite(norms[-1]) or norms[-1] <= 0:
        return []
    acts = activations if isinstance(activations, Mapping) else dict(zip(layer_names, activations))
    ref, last = norms[-1], layer_names[-1]
    return [f"Vanishing gradient: layer '{name}'"
            + (f" (followed by {acts[name]})" if acts.get(name) else "")
            + f" has gradient norm {n:.1e}, {n / ref:.1e} x that of the last layer '{last}' "
            f"({ref:.1e})." for name, n in zip(layer_names[:-1], norms[:-1])
            if np.isfinite(n) and n < ratio * ref]
