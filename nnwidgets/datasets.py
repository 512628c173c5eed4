"""Small demo data sets that ship offline, as ready-to-train DataLoaders.

* Palmer penguins (Horst, Hill & Gorman 2020, CC0; bundled by the ``palmerpenguins``
  package): 333 complete rows of 344 after dropping rows with a missing value.
* Handwritten digits (scikit-learn's bundled ``load_digits``, 1,797 8x8 images).

Nothing is downloaded. The optional packages are imported inside the functions, so
``import nnwidgets.datasets`` is cheap and works without them; install them with
``pip install nnwidgets[demo]``.

Every loader splits the rows once, reproducibly (``seed``), into a training and a
validation part (stratified by class for classification), standardises the numeric
features with the **training** part's mean and standard deviation only, and returns
``torch.utils.data.DataLoader`` objects over ``TensorDataset``s: features ``float32 (N, F)``,
class labels ``int64 (N,)`` or regression targets ``float32 (N, 1)``.

Example:
    >>> train, val, features, classes = penguins_species(batch_size=16)  # doctest: +SKIP
    >>> classes
    ['Adelie', 'Chinstrap', 'Gentoo']
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["penguins_species", "penguins_body_mass", "digits", "load_penguins_frame"]

_INSTALL_HINT = "pip install nnwidgets[demo]"
_PENGUIN_MEASURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def _require(module: str, purpose: str) -> Any:
    """Import an optional demo dependency, or raise an ImportError that says how to get it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{purpose} needs the optional package '{module.split('.')[0]}'; "
                          f"install the demo extras with: {_INSTALL_HINT}") from e


def load_penguins_frame():
    """The Palmer penguins table without rows that have a missing value.

    Returns:
        pandas DataFrame, 333 rows; columns ``species``, ``island``, ``bill_length_mm``,
        ``bill_depth_mm``, ``flipper_length_mm``, ``body_mass_g``, ``sex``, ``year``.

    Raises:
        ImportError: ``palmerpenguins`` is not installed.
    """
    pp = _require("palmerpenguins", "the penguins demo data")
    return pp.load_penguins().dropna().reset_index(drop=True)


def _split(n: int, val_fraction: float, seed: int, strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, val)``; stratified by ``strata`` when given (same share per class)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    train, val = [], []
    for idx in groups:
        idx = rng.permutation(idx)
        k = max(1, int(round(len(idx) * val_fraction)))
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _standardise(x: np.ndarray, train_idx: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """``x`` with ``columns`` centred and scaled by the training rows' mean and std (ddof=0)."""
    x = x.astype(np.float64, copy=True)
    cols = list(columns)
    mean = x[train_idx][:, cols].mean(axis=0)
    std = x[train_idx][:, cols].std(axis=0)
    x[:, cols] = (x[:, cols] - mean) / np.where(std > 0, std, 1.0)
    return x


def _loaders(x: np.ndarray, y: torch.Tensor, train_idx: np.ndarray, val_idx: np.ndarray,
             batch_size: int, seed: int) -> tuple[DataLoader, DataLoader]:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    xt = torch.as_tensor(x, dtype=torch.float32)
    tr, va = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    gen = torch.Generator().manual_seed(int(seed))
    train = DataLoader(TensorDataset(xt[tr], y[tr]), batch_size=int(batch_size), shuffle=True, generator=gen)
    val = DataLoader(TensorDataset(xt[va], y[va]), batch_size=max(int(batch_size), 256), shuffle=False)
    return train, val


def _one_hot(frame, column: str) -> tuple[np.ndarray, list[str]]:
    levels = sorted(frame[column].unique())
    return (frame[column].to_numpy()[:, None] == np.array(levels)[None, :]).astype(np.float64), \
        [f"{column}_{v}" for v in levels]


def penguins_species(batch_size: int = 16, seed: int = 0, val_fraction: float = 0.25,
                     categorical: bool = True) -> tuple[DataLoader, DataLoader, list[str], list[str]]:
    """Classify a penguin's species (Adelie, Chinstrap, Gentoo) from its measurements.

    Args:
        batch_size: training batch size (validation batches hold up to 256 rows).
        seed: split and shuffling seed.
        val_fraction: share of each species held out for validation.
        categorical: also give the island and sex as one-hot columns.

    Returns:
        ``(train_loader, val_loader, feature_names, class_names)``: batches of features
        ``float32 (B, F)`` (F = 4 standardised measurements, + 5 one-hot columns when
        ``categorical``) and labels ``int64 (B,)`` indexing ``class_names``. With the defaults:
        250 training and 83 validation rows.

    Raises:
        ImportError: ``palmerpenguins`` is not installed.
        ValueError: ``batch_size`` < 1 or ``val_fraction`` not in (0, 1).
    """
    df = load_penguins_frame()
    class_names = sorted(df["species"].unique())
    labels = np.array(df["species"].map({c: i for i, c in enumerate(class_names)}), dtype=np.int64)
    parts, names = [df[_PENGUIN_MEASURES].to_numpy(dtype=np.float64)], list(_PENGUIN_MEASURES)
    if categorical:
        for col in ("island", "sex"):
            block, cols = _one_hot(df, col)
            parts.append(block)
            names += cols
    x = np.concatenate(parts, axis=1)
    train_idx, val_idx = _split(len(df), val_fraction, seed, strata=labels)
    x = _standardise(x, train_idx, range(len(_PENGUIN_MEASURES)))
    y = torch.as_tensor(labels, dtype=torch.int64)
    return (*_loaders(x, y, train_idx, val_idx, batch_size, seed), names, class_names)


def penguins_body_mass(batch_size: int = 16, seed: int = 0, val_fraction: float = 0.25,
                       categorical: bool = True) -> tuple[DataLoader, DataLoader, list[str], str]:
    """Predict a penguin's body mass from its bill and flipper (and species, island, sex).

    The target is the body mass in **kilograms** (mean ~4.2, std ~0.8: a scale plain SGD and
    MSE handle without standardising); multiply an MAE by 1,000 for grams.

    Args:
        batch_size: training batch size (validation batches hold up to 256 rows).
        seed: split and shuffling seed.
        val_fraction: share of the rows held out for validation.
        categorical: also give species, island and sex as one-hot columns.

    Returns:
        ``(train_loader, val_loader, feature_names, target_name)``: batches of features
        ``float32 (B, F)`` (F = 3 standardised measurements, + 8 one-hot columns when
        ``categorical``) and targets ``float32 (B, 1)``; ``target_name`` is ``"body_mass_kg"``.

    Raises:
        ImportError: ``palmerpenguins`` is not installed.
        ValueError: ``batch_size`` < 1 or ``val_fraction`` not in (0, 1).
    """
    df = load_penguins_frame()
    measures = [c for c in _PENGUIN_MEASURES if c != "body_mass_g"]
    parts, names = [df[measures].to_numpy(dtype=np.float64)], list(measures)
    if categorical:
        for col in ("species", "island", "sex"):
            block, cols = _one_hot(df, col)
            parts.append(block)
            names += cols
    x = np.concatenate(parts, axis=1)
    train_idx, val_idx = _split(len(df), val_fraction, seed)
    x = _standardise(x, train_idx, range(len(measures)))
    y = torch.as_tensor(df["body_mass_g"].to_numpy() / 1000.0, dtype=torch.float32).unsqueeze(1)
    return (*_loaders(x, y, train_idx, val_idx, batch_size, seed), names, "body_mass_kg")


def digits(batch_size: int = 64, seed: int = 0, val_fraction: float = 0.25) -> tuple[DataLoader, DataLoader, list[str], list[str]]:
    """Classify 8x8 handwritten digits (scikit-learn's bundled copy of the UCI set).

    Pixel intensities 0..16 are standardised per pixel with the training rows' statistics
    (pixels that are constant in the training part are only centred).

    Args:
        batch_size: training batch size (validation batches hold up to 256 rows).
        seed: split and shuffling seed.
        val_fraction: share of each digit held out for validation.

    Returns:
        ``(train_loader, val_loader, feature_names, class_names)``: features ``float32 (B, 64)``
        (row-major pixels ``"pixel_r_c"``), labels ``int64 (B,)``; ``class_names`` is
        ``["0", ..., "9"]``. With the defaults: 1,347 training and 450 validation images.

    Raises:
        ImportError: scikit-learn is not installed.
        ValueError: ``batch_size`` < 1 or ``val_fraction`` not in (0, 1).
    """
    sk = _require("sklearn.datasets", "the digits demo data")
    data = sk.load_digits()
    labels = np.array(data.target, dtype=np.int64)
    train_idx, val_idx = _split(len(labels), val_fraction, seed, strata=labels)
    x = _standardise(np.asarray(data.data), train_idx, range(data.data.shape[1]))
    names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    y = torch.as_tensor(labels, dtype=torch.int64)
    return (*_loaders(x, y, train_idx, val_idx, batch_size, seed), names, [str(d) for d in range(10)])
