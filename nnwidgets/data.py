"""Batch checks and canonicalisation: dtypes, target shapes, one-hot, label range, loaders.

Pure torch (no UI imports). The engine calls the checks once, on the first
batch, and replays the decided operations on every batch through
:meth:`BatchPlan.apply`, which costs a few attribute checks and no host sync::

    loader, notices = safe_loader(loader)
    batch, it = first_batch(loader)
    x, y = split_batch(batch)
    x, _ = prepare_features(model, x, model_dtype)      # before the first forward
    with torch.no_grad():
        output = model(x)
    task, _ = resolve_task(task, loss_fn, output, y)
    loss_fn = make_loss(loss_fn, task)
    plan = plan_batches(model, x, y, output, task, loss_fn, model_dtype)
    x, y = plan.apply(x, y)                             # every batch, incl. the first

Inputs that are a tuple/list/dict of tensors, and outputs that are not one tensor, are planned
by :mod:`nnwidgets.checks.inputs` and replayed by ``plan.apply(x, y, device)`` / ``plan.forward(model, x)``.

Notice codes: ``cast_features``, ``labels_to_int64``, ``squeeze_target``,
``onehot_target``, ``reshape_target``, ``cast_target``, ``softmax_before_ce``,
``softmax_before_nll``, ``sigmoid_before_bce``, ``task_inferred``, ``workers_fallback``;
from the Trainer also ``inputs_call``, ``output_tuple``, ``output_logits``, ``binary_threshold``,
``unregistered_layers``, ``batchnorm_last_batch``, ``batch_skipped``, ``scheduler``,
``target_scale``, ``target_scale_stall``. Later batches are checked against the first batch's
decisions by :mod:`nnwidgets.checks.batch_guard` (error codes ``binary_target_values``,
``onehot_rows``, ``fractional_labels``, ``labels_*``, ``negative_labels``, ``target_dtype_changed``).
"""
from __future__ import annotations

import multiprocessing
import sys
import threading

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from nnwidgets.checks.input_errors import ragged_error
from nnwidgets._plan import BatchPlan, plan_batches, prepare_features
from nnwidgets.checks.targets import (_DEFAULT_LOSS, LOSS_NAMES, TASKS, DataError, Notice, _loss_key, output_width,
                                resolve_task)

__all__ = ["DataError", "Notice", "BatchPlan", "TASKS", "LOSS_NAMES", "split_batch", "resolve_task",
           "make_loss", "prepare_features", "plan_batches", "check_num_classes", "output_width",
           "safe_loader", "first_batch"]

_X_KEYS = ("x", "input", "inputs", "features")
_Y_KEYS = ("y", "target", "targets", "label", "labels")


def split_batch(batch):
    """Split a batch into features and targets.

    Args:
        batch: ``(x, y)`` tuple/list, or a dict with one key of
            ``x/input/inputs/features`` and one of ``y/target/targets/label/labels``.

    Returns:
        ``(x, y)`` as found (no copies).

    Raises:
        DataError: ``bad_batch`` naming what was found and what is expected.

    Example:
        >>> split_batch({"features": 1, "label": 2})
        (1, 2)
    """
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        found = f"a {type(batch).__name__} of {len(batch)} items"
    elif isinstance(batch, dict):
        xk = next((k for k in _X_KEYS if k in batch), None)
        yk = next((k for k in _Y_KEYS if k in batch), None)
        if xk is not None and yk is not None:
            return batch[xk], batch[yk]
        found = f"a dict with keys {sorted(map(str, batch))}"
    else:
        found = f"a single {type(batch).__name__}" + (f" of shape {list(batch.shape)}"
                                                      if isinstance(batch, torch.Tensor) else "")
    raise DataError(f"Each batch must be (features, targets), but the loader yielded {found}. Expected a pair "
                    "(x, y), e.g. TensorDataset(X, y), or a dict with keys 'x'/'input'/'features' and "
                    "'y'/'target'/'label'. Fix: return (x, y) from your Dataset's __getitem__.", "bad_batch")


def make_loss(loss, task: str):
    """Turn a loss spec into a callable ``loss_fn(output, target) -> scalar``.

    Args:
        loss: ``"auto"``/None (CrossEntropyLoss / BCEWithLogitsLoss / MSELoss by
            task), a name from ``LOSS_NAMES`` (``cross_entropy, nll, bce, mse, l1,
            smooth_l1, huber``), an ``nn.Module`` class (instantiated with
            defaults), or any module/callable (passed through).
        task: A resolved task; only read when ``loss`` is auto.

    Raises:
        DataError: ``unknown_loss`` listing the valid names; ``unknown_task`` (auto loss, no task).
    """
    if loss is None or (isinstance(loss, str) and loss.strip().lower() == "auto"):
        if task not in _DEFAULT_LOSS:
            raise DataError(f"Cannot choose a loss for task={task!r}; resolve the task first "
                            f"(one of {', '.join(map(repr, TASKS))}).", "unknown_task")
        loss = _DEFAULT_LOSS[task]
    if isinstance(loss, str):
        if _loss_key(loss) in LOSS_NAMES:
            return LOSS_NAMES[_loss_key(loss)][0]()
    elif isinstance(loss, type) and issubclass(loss, nn.Module):
        return loss()
    elif callable(loss):
        return loss
    raise DataError(f"Unknown loss {loss!r}. Valid names: 'auto', {', '.join(map(repr, LOSS_NAMES))}; "
                    "or pass an nn.Module / callable such as nn.CrossEntropyLoss().", "unknown_loss")


def check_num_classes(metrics, width: int) -> None:
    """Check user metrics against the model's output width before training.

    Args:
        metrics: A torchmetrics metric, a list/tuple, a dict or
            ``MetricCollection`` of them, or None.
        width: Values per sample the model outputs (``C`` of ``(N, C)``).

    Raises:
        DataError: ``num_classes_mismatch`` naming the metric, its
            ``num_classes`` and the output width.
    """
    if metrics is None:
        return
    items = metrics.items() if hasattr(metrics, "items") else (
        enumerate(metrics) if isinstance(metrics, (list, tuple)) else [(None, metrics)])
    for key, metric in items:
        n, kind = getattr(metric, "num_classes", None), type(metric).__name__
        if isinstance(n, int) and n != width:
            label = kind if key is None else f"{key!r} ({kind})"
            raise DataError(f"Metric {label} has num_classes={n}, but the model outputs {width} values per "
                            f"sample (output width {width}). Use {kind}(num_classes={width}), or make the last "
                            f"layer output {n} values (nn.Linear(..., {n})).", "num_classes_mismatch")


def _start_method(loader: DataLoader) -> str:
    ctx = loader.multiprocessing_context
    if ctx is not None:
        return ctx if isinstance(ctx, str) else ctx.get_start_method()
    method = torch.multiprocessing.get_start_method(allow_none=True)
    return method or multiprocessing.get_all_start_methods()[0]  # first = platform default


def _notebook_classes(loader: DataLoader) -> list[str]:
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__file__", None):
        return []
    found, todo = [], [loader.dataset]
    while todo:
        ds = todo.pop()
        if type(ds).__module__ == "__main__":
            found.append(type(ds).__name__)
        todo += [d for d in (getattr(ds, "dataset", None), *getattr(ds, "datasets", ())) if d is not None]
    fns = (loader.collate_fn, loader.worker_init_fn)
    return found + [f.__name__ for f in fns if getattr(f, "__module__", None) == "__main__"]


def safe_loader(loader):
    """Fall back to ``num_workers=0`` where workers could not import a notebook class.

    With ``num_workers > 0``, a ``spawn``/``forkserver`` start method (Windows,
    macOS, or set explicitly) and a Dataset class (or collate function) defined
    in a notebook's ``__main__`` (no ``__file__``), worker processes crash with
    "Can't get attribute ..." or hang (case C18).

    Args:
        loader: Any iterable of batches; only a ``DataLoader`` is inspected.

    Returns:
        ``(loader, notices)``: an equivalent ``DataLoader`` with
        ``num_workers=0`` (same dataset, batch size, sampler/shuffle, drop_last,
        collate_fn, pin_memory) and a ``workers_fallback`` notice, or the loader
        unchanged and ``[]``.
    """
    if not isinstance(loader, DataLoader) or loader.num_workers == 0:
        return loader, []
    method = _start_method(loader)
    names = _notebook_classes(loader) if method in ("spawn", "forkserver") else []
    if not names:
        return loader, []
    kw = dict(collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, generator=loader.generator,
              pin_memory_device=getattr(loader, "pin_memory_device", ""))
    if loader.batch_size is None and loader.batch_sampler is not None:  # the user's own batch_sampler
        kw.update(batch_sampler=loader.batch_sampler)
    else:
        kw.update(batch_size=loader.batch_size, drop_last=loader.drop_last)
        if not isinstance(loader.dataset, IterableDataset):
            kw.update(sampler=loader.sampler)  # keeps shuffle (RandomSampler) and its generator
    new = DataLoader(loader.dataset, num_workers=0, **kw)
    what = ", ".join(names)
    return new, [Notice("workers_fallback", f"{what} is defined in the notebook, and DataLoader workers started "
                        f"with '{method}' cannot import it (they crash with \"Can't get attribute '{names[0]}'\" "
                        f"or hang). Loading in the main process instead (num_workers={loader.num_workers} -> 0). "
                        f"Fix: move {what} into a .py module and import it, or pass num_workers=0.")]


def first_batch(loader, timeout_s: float = 60.0):
    """Fetch the first batch in a helper thread, so a stuck loader cannot hang the run.

    Args:
        loader: Any iterable of batches.
        timeout_s: Seconds to wait for the first batch.

    Returns:
        ``(batch, iterator)``; keep iterating ``iterator`` for the rest of epoch 0.

    Raises:
        DataError: ``first_batch_timeout`` after ``timeout_s``; ``empty_loader``
            when the loader yields nothing. Errors from the dataset propagate.
    """
    box: dict = {}

    def fetch() -> None:
        try:
            box["it"] = iter(loader)
            box["batch"] = next(box["it"])
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    worker = threading.Thread(target=fetch, name="nnwidgets-first-batch", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        workers = getattr(loader, "num_workers", 0)
        raise DataError(f"The loader produced no batch within {timeout_s:g} s" + (
            f" (num_workers={workers})" if workers else "") + ". Worker processes may have failed to start or "
            "the Dataset is stuck. Try num_workers=0, and check your Dataset's __getitem__.", "first_batch_timeout")
    if isinstance(box.get("error"), StopIteration):
        raise DataError(f"The loader yielded no batches (batch_size={getattr(loader, 'batch_size', '?')}, drop_last="
                        f"{getattr(loader, 'drop_last', '?')}). Check that the dataset is not empty and that "
                        "drop_last=True does not drop the only, smaller batch.", "empty_loader")
    if "error" in box:
        raise ragged_error(box["error"]) or box["error"]
    return box["batch"], box["it"]
