"""Layer structure and a bounded sample of edge weights of a model, for the network diagram.

Pure torch + numpy, no UI. :func:`extract` decides once how a model is drawn:

* ``"mlp"``: the model is an ``nn.Linear`` or an ``nn.Sequential`` (nested Sequentials
  flattened) of Linear layers with activations, dropout, ``BatchNorm1d``/``LayerNorm``,
  ``Flatten`` and ``Identity`` between them, each Linear's ``in_features`` equal to the
  previous one's ``out_features``. Drawn as columns of neurons, input → output.
* ``"blocks"``: anything else (convolutions, custom modules, a Sequential subclass with its own
  ``forward``): one block per leaf module (and per container owning parameters directly),
  with type, parameter count and, when an example batch is given, output shape.

:func:`sample` then reads the current weights into ONE float32 array of fixed size
(:attr:`Graph.nbytes`), laid out as

* ``3 × E`` floats, edge by edge ``(src, dst, w)``: source neuron index in the previous column,
  target neuron index in this column, weight ``W[dst, src]``; the pairs of consecutive columns
  one after another, ``structure["edge_counts"][k]`` edges for pair ``k``;
* ``5 × R`` floats, row by row ``(mean, std, min, max, bias)`` of a neuron's incoming weights
  (std with ``correction=0``; bias NaN when the layer has none), ``structure["stat_rows"][k]``
  rows for column ``k + 1``: one per neuron, or a single row over the whole layer when the column
  is collapsed.

Edge budget: each pair of columns gets ``max(1, max_edges // n_pairs)`` edges. A pair whose
columns both have at most ``max_neurons`` neurons and whose ``in × out`` edges fit the budget is
sent whole; any other pair (a collapsed, i.e. wider than ``max_neurons``, column on either side)
keeps only its ``min(budget, 8 × max_neurons)`` largest ``|w|`` (``torch.topk``), as more lines
than that are unreadable. So ``E ≤ max(max_edges, n_pairs)`` (at least one edge per pair) and
the array never exceeds ``4 × (3 × max(max_edges, 63) + 5 × max_neurons × MAX_COLUMNS)`` bytes.

Reading the weights while another thread runs ``optimizer.step()`` may mix old and new values
of one step; that is harmless for a picture, and nothing here writes to the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .hyperparams import DROPOUT_TYPES
from .stats import _owned_params

__all__ = ["Graph", "extract", "sample", "layer_state", "EDGE_FIELDS", "STAT_FIELDS",
           "MAX_COLUMNS", "MAX_BLOCKS"]

EDGE_FIELDS = ("src", "dst", "weight")
STAT_FIELDS = ("mean", "std", "min", "max", "bias")
MAX_COLUMNS = 64      # more Linear layers than this are drawn as blocks
MAX_BLOCKS = 256      # blocks beyond this are counted in structure["hidden"], not drawn
_NORMS = (nn.BatchNorm1d, nn.LayerNorm)
_PASSIVE = (nn.Flatten, nn.Identity)


@dataclass
class Graph:
    """What :func:`extract` found; pass it to :func:`sample` and :func:`layer_state`.

    Attributes:
        kind: ``"mlp"`` or ``"blocks"``.
        structure: JSON-ready description. mlp: ``columns`` (list of dicts ``name``, ``type``,
            ``size``, ``collapsed``, ``activation``, ``norm``, ``dropout`` (bool), ``params``;
            column 0 is the input), ``edge_counts``, ``stat_rows``, ``total_edges`` (per pair,
            ``in × out``). blocks: ``blocks`` (dicts ``name``, ``type``, ``params``, ``shape``:
            output shape without the batch dimension or ``None``), ``hidden`` (blocks not listed).
            Both: ``kind``, ``max_neurons``, ``params`` (total), ``nbytes``.
        modules: mlp: the Linear of columns 1..C-1; blocks: the module of each block.
        names: module path per column (input: ``""``) or per block.
        dropouts: per column / block, the dropout modules attached to it.
        nbytes: size in bytes of every array :func:`sample` returns for this graph.
    """

    kind: str
    structure: dict
    modules: list = field(default_factory=list)
    names: list = field(default_factory=list)
    dropouts: list = field(default_factory=list)
    budgets: list = field(default_factory=list)
    max_neurons: int = 32
    nbytes: int = 0


def _is_activation(m: nn.Module) -> bool:
    return type(m).__module__ == "torch.nn.modules.activation" and not isinstance(m, nn.MultiheadAttention)


def _flat_sequence(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """Leaves of a (nested) plain ``nn.Sequential`` in order, or ``None`` if not one."""
    if isinstance(model, nn.Linear):
        return [("", model)]
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, seq: nn.Module) -> bool:
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            return False
        for name, child in seq.named_children():
            path = prefix + name
            if isinstance(child, nn.Sequential):
                if not walk(path + ".", child):
                    return False
            elif next(child.children(), None) is None:
                out.append((path, child))
            else:
                return False
        return True

    return out if walk("", model) else None


def _mlp(leaves: list[tuple[str, nn.Module]], max_neurons: int, max_edges: int) -> Graph | None:
    linears = [m for _, m in leaves if isinstance(m, nn.Linear)]
    if not linears or len(linears) >= MAX_COLUMNS:
        return None
    for _, m in leaves:
        allowed = isinstance(m, (nn.Linear, *DROPOUT_TYPES, *_NORMS, *_PASSIVE)) or _is_activation(m)
        if not allowed or any(nn.parameter.is_lazy(p) for p in m.parameters()):
            return None
    if any(a.out_features != b.in_features for a, b in zip(linears, linears[1:])):
        return None
    first = linears[0]
    columns = [{"name": "input", "type": "input", "size": first.in_features, "activation": "",
                "norm": "", "dropout": False, "params": 0}]
    names, modules, dropouts = [None], [], [[]]
    for path, m in leaves:
        col = columns[-1]
        if isinstance(m, nn.Linear):
            columns.append({"name": path, "type": type(m).__name__, "size": m.out_features, "activation": "",
                            "norm": "", "dropout": False, "params": sum(p.numel() for p in m.parameters())})
            names.append(path)
            modules.append(m)
            dropouts.append([])
        elif isinstance(m, DROPOUT_TYPES):
            col["dropout"] = True
            dropouts[-1].append(m)
        elif isinstance(m, _NORMS):
            col["norm"] = "+".join(filter(None, [col["norm"], type(m).__name__]))
            col["params"] += sum(p.numel() for p in m.parameters())
        elif _is_activation(m):
            col["activation"] = "+".join(filter(None, [col["activation"], type(m).__name__]))
    for col in columns:
        col["collapsed"] = col["size"] > max_neurons
    per_pair = max(1, max_edges // len(modules))
    budgets, stat_rows, totals = [], [], []
    for a, b in zip(columns, columns[1:]):
        full = a["size"] * b["size"]
        wide = a["collapsed"] or b["collapsed"]
        budgets.append(full if not wide and full <= per_pair else min(per_pair, full, 8 * max_neurons))
        stat_rows.append(1 if b["collapsed"] else b["size"])
        totals.append(full)
    nbytes = 4 * (len(EDGE_FIELDS) * sum(budgets) + len(STAT_FIELDS) * sum(stat_rows))
    structure = {"kind": "mlp", "columns": columns, "edge_counts": budgets, "stat_rows": stat_rows,
                 "total_edges": totals, "max_neurons": max_neurons, "nbytes": nbytes,
                 "params": sum(c["params"] for c in columns)}
    return Graph("mlp", structure, modules, names, dropouts, budgets, max_neurons, nbytes)


def _output_shapes(model: nn.Module, modules: list[nn.Module], example: Any) -> dict[int, list[int]]:
    """Output shape (batch dimension dropped) of each module for one forward pass of ``example``
    under ``no_grad``/``eval``; hooks removed and the training mode restored in ``finally``."""
    shapes: dict[int, list[int]] = {}

    def hook_for(i: int):
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            t = out[0] if isinstance(out, (tuple, list)) and out else out
            if torch.is_tensor(t) and i not in shapes:
                shapes[i] = [int(s) for s in t.shape[1:]]
        return hook

    ref = next((t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()), None)
    x = example
    if torch.is_tensor(x) and ref is not None:
        x = x.to(ref.device, ref.dtype if x.is_floating_point() else x.dtype)
    was_training, handles = model.training, []
    try:
        handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(modules)]
        model.eval()
        with torch.no_grad():
            model(x)
    except Exception:  # noqa: BLE001 - shapes are optional; a model that refuses the example keeps none
        shapes.clear()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return shapes


def _blocks(model: nn.Module, example: Any, max_neurons: int) -> Graph:
    items = [(path, m, counted) for path, m, counted, own in _owned_params(model)
             if own or next(m.children(), None) is None]
    shown = items[:MAX_BLOCKS]
    shapes = _output_shapes(model, [m for _, m, _ in shown], example) if example is not None else {}
    blocks, total = [], 0
    for i, (path, m, counted) in enumerate(items):
        n = sum(p.numel() for p in counted if not nn.parameter.is_lazy(p))
        total += n
        if i < MAX_BLOCKS:
            blocks.append({"name": path or "(model)", "type": type(m).__name__, "params": int(n),
                           "shape": shapes.get(i)})
    structure = {"kind": "blocks", "blocks": blocks, "hidden": len(items) - len(shown),
                 "max_neurons": max_neurons, "nbytes": 0, "params": int(total)}
    dropouts = [[m] if isinstance(m, DROPOUT_TYPES) else [] for _, m, _ in shown]
    return Graph("blocks", structure, [m for _, m, _ in shown], [p for p, _, _ in shown], dropouts,
                 [], max_neurons, 0)


def extract(model: nn.Module, example: Any = None, *, max_neurons: int = 32, max_edges: int = 1024) -> Graph:
    """Decide how ``model`` is drawn and what :func:`sample` will send.

    Args:
        model: any ``nn.Module``.
        example: optional input batch (e.g. ``(N, C, H, W)``) for output shapes in the block
            view; one forward pass with forward hooks, under ``no_grad`` and ``eval()`` (mode
            restored). Ignored for MLPs. Do not pass one while another thread trains the model.
        max_neurons: columns wider than this are drawn collapsed (>= 1).
        max_edges: edges sampled in total over all pairs of columns (>= 1).

    Returns:
        A :class:`Graph`.

    Raises:
        ValueError: ``max_neurons`` or ``max_edges`` < 1.

    Example:
        >>> g = extract(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)))
        >>> [c["size"] for c in g.structure["columns"]], g.structure["columns"][1]["activation"]
        ([2, 8, 3], 'ReLU')
    """
    if int(max_neurons) < 1 or int(max_edges) < 1:
        raise ValueError(f"max_neurons and max_edges must be >= 1, got {max_neurons} and {max_edges}")
    leaves = _flat_sequence(model)
    graph = _mlp(leaves, int(max_neurons), int(max_edges)) if leaves else None
    return graph if graph is not None else _blocks(model, example, int(max_neurons))


def _pair_numpy(w: np.ndarray, bias: np.ndarray | None, k: int, per_neuron: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sampled edges ``(k, 3)`` and stats rows ``(r, 5)`` of one Linear, numpy (CPU weights:
    numpy runs single-threaded, so it does not compete with the training thread's torch pool)."""
    n_out, n_in = w.shape
    flat = w.reshape(-1)
    idx = np.arange(flat.size) if k >= flat.size else np.argpartition(np.abs(flat), flat.size - k)[-k:]
    edges = np.stack([idx % n_in, idx // n_in, flat[idx]], 1)
    axis = 1 if per_neuron else None
    if bias is None:
        b = np.full(n_out if per_neuron else 1, np.nan)
    else:
        b = bias if per_neuron else bias.mean(keepdims=True)
    stats = np.stack([np.broadcast_to(v, np.shape(b)) for v in
                      (w.mean(axis), w.std(axis), w.min(axis), w.max(axis), b)], -1)
    return edges, stats


def _pair_torch(w: torch.Tensor, bias: torch.Tensor | None, k: int, per_neuron: bool) -> tuple[torch.Tensor, ...]:
    """As :func:`_pair_numpy`, on the weights' device (CUDA/MPS), without a host sync."""
    n_out, n_in = w.shape
    flat = w.reshape(-1)
    if k >= flat.numel():
        idx = torch.arange(flat.numel(), device=w.device)
    else:
        idx = torch.topk(flat.abs(), k, sorted=False).indices
    edges = torch.stack([(idx % n_in).float(), (idx // n_in).float(), flat[idx]], 1)
    if per_neuron:
        std, mean = torch.std_mean(w, dim=1, correction=0)
        lo, hi = torch.aminmax(w, dim=1)
        b = bias if bias is not None else torch.full((n_out,), math.nan, device=w.device)
    else:
        std, mean = torch.std_mean(w, correction=0)
        lo, hi = torch.aminmax(w)
        b = bias.mean() if bias is not None else torch.tensor(math.nan, device=w.device)
    return edges, torch.stack([mean, std, lo, hi, b], -1)


@torch.no_grad()
def sample(graph: Graph) -> np.ndarray:
    """The current sampled edges and incoming-weight statistics as one float32 array.

    CPU weights are read through numpy (no copy for float32); weights on an accelerator are
    reduced there and fetched with one transfer.

    Returns:
        float32 ``(graph.nbytes // 4,)`` laid out as in the module docstring (empty for blocks).
    """
    if graph.kind != "mlp":
        return np.zeros(0, dtype=np.float32)
    edges, stats = [], []
    for lin, k, rows in zip(graph.modules, graph.budgets, graph.structure["stat_rows"]):
        w = lin.weight.detach()                                            # (out, in)
        bias = lin.bias.detach() if lin.bias is not None else None
        per_neuron = rows == w.shape[0]
        if w.device.type == "cpu":
            e, s = _pair_numpy(w.float().numpy(), None if bias is None else bias.float().numpy(), k, per_neuron)
        else:
            e, s = _pair_torch(w.float(), None if bias is None else bias.float(), k, per_neuron)
        edges.append(e.reshape(-1))
        stats.append(s.reshape(-1))
    if all(isinstance(e, np.ndarray) for e in edges):
        return np.concatenate(edges + stats).astype(np.float32)
    parts = [torch.as_tensor(a, dtype=torch.float32, device=graph.modules[0].weight.device) for a in edges + stats]
    return torch.cat(parts).cpu().numpy().astype(np.float32, copy=False)


def _finite(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def layer_state(graph: Graph, history: Any = None) -> dict:
    """Per column (mlp) or block: gradient norm, frozen flag and dropout ``p``, read now.

    Args:
        graph: from :func:`extract`.
        history: optional :class:`nnwidgets.History`; the newest row of
            ``history.gradient_norms()`` gives the norms.

    Returns:
        JSON-ready ``{"grad_norm": [float|None], "frozen": [bool], "dropout": [float|None],
        "grad_step": int|None}``, lists aligned with the columns (input column first) or blocks;
        ``None`` where there is no value (NaN is never returned: JSON cannot carry it).
    """
    norms: dict[str, float] = {}
    grad_step = None
    if history is not None:
        steps, names, values = history.gradient_norms()
        if len(steps) and len(values):
            norms = dict(zip(names, values[-1].tolist()))
            grad_step = int(steps[-1])
    mods = ([None] + list(graph.modules)) if graph.kind == "mlp" else list(graph.modules)
    frozen = []
    for m in mods:
        params = [] if m is None else list(m.parameters(recurse=graph.kind == "mlp"))
        frozen.append(bool(params) and not any(p.requires_grad for p in params))
    return {"grad_norm": [_finite(norms[n]) if n in norms else None for n in graph.names],
            "frozen": frozen,
            "dropout": [_finite(ds[0].p) if ds else None for ds in graph.dropouts],
            "grad_step": grad_step}
