"""The offline demo data sets: sizes, dtypes, shapes, train-only standardisation, reproducibility."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from nnwidgets import datasets

pytest.importorskip("palmerpenguins")
pytest.importorskip("sklearn")


def _all(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_penguins_species():
    train, val, features, classes = datasets.penguins_species(batch_size=16, seed=0)
    assert classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert features[:4] == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    assert len(features) == 9  # + island (3) and sex (2) one-hot
    assert len(train.dataset) + len(val.dataset) == 333  # 344 rows, 11 with a missing value
    assert (len(train.dataset), len(val.dataset)) == (250, 83)
    x, y = next(iter(train))
    assert x.shape == (16, 9) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64
    xt, yt = _all(train)
    xv, yv = _all(val)
    # standardised with the training rows only: exactly mean 0 / std 1 there, not on validation
    np.testing.assert_allclose(xt[:, :4].mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(xt[:, :4].std(0, unbiased=False).numpy(), 1, atol=1e-5)
    assert not np.allclose(xv[:, :4].mean(0).numpy(), 0, atol=1e-3)
    assert set(np.unique(xt[:, 4:].numpy())) == {0.0, 1.0}
    # stratified: every species in both parts, in about the same share
    share_t = np.bincount(yt.numpy(), minlength=3) / len(yt)
    share_v = np.bincount(yv.numpy(), minlength=3) / len(yv)
    np.testing.assert_allclose(share_t, share_v, atol=0.02)


def test_penguins_without_categorical_columns():
    train, _, features, _ = datasets.penguins_species(categorical=False)
    assert len(features) == 4 and next(iter(train))[0].shape[1] == 4


def test_split_is_reproducible_and_depends_on_seed():
    a = _all(datasets.penguins_species(seed=3)[1])
    b = _all(datasets.penguins_species(seed=3)[1])
    c = _all(datasets.penguins_species(seed=4)[1])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_penguins_body_mass():
    train, val, features, target = datasets.penguins_body_mass(batch_size=32)
    assert target == "body_mass_kg"
    assert "body_mass_g" not in features and len(features) == 11
    x, y = next(iter(train))
    assert x.shape == (32, 11) and y.shape == (32, 1) and y.dtype == torch.float32
    _, yt = _all(train)
    _, yv = _all(val)
    masses = torch.cat([yt, yv]).squeeze(1)
    assert len(masses) == 333
    assert 2.6 < masses.min() < 3.0 and 6.0 < masses.max() < 6.5  # kg (2,700 g .. 6,300 g)
    assert abs(masses.mean().item() - 4.207) < 0.01


def test_digits():
    train, val, features, classes = datasets.digits(batch_size=64)
    assert classes == [str(d) for d in range(10)]
    assert len(features) == 64 and features[9] == "pixel_1_1"
    assert (len(train.dataset), len(val.dataset)) == (1347, 450)
    x, y = next(iter(train))
    assert x.shape == (64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.isfinite(_all(train)[0]).all()  # constant pixels are centred, not divided by 0


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"val_fraction": 1.0}, "val_fraction must be between 0 and 1, got 1.0"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        datasets.penguins_species(**kwargs)


def test_missing_optional_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "palmerpenguins", None)  # makes `import palmerpenguins` fail
    with pytest.raises(ImportError, match=r"needs the optional package 'palmerpenguins'; .*pip install nnwidgets\[demo\]"):
        datasets.penguins_species()
