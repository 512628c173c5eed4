"""Fix texts match the dtype at hand: a float16 / bfloat16 / float64 model is told the cast it
needs (``x.half()``, ``x.bfloat16()``, ``x.double()``), never ``x.float()``."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnwidgets as nw
from nnwidgets.checks.casts import cast_expr
from nnwidgets.data import prepare_features

from _engine_util import notice, oracle, same_params
from test_engine_cases_inputs import TwoInputs  # numeric + categorical inputs (C30)

DTYPES = [(torch.float16, "half"), (torch.bfloat16, "bfloat16"), (torch.float64, "double"),
          (torch.float32, "float")]


@pytest.mark.parametrize("dtype, method", DTYPES)
def test_cast_expr_names_the_method_of_the_dtype(dtype, method):
    assert cast_expr("x", dtype) == f"x.{method}()"
    assert getattr(torch.zeros(1), method)().dtype == dtype  # the named method does cast to it


def test_cast_expr_falls_back_to_to():
    assert cast_expr("y", torch.uint8) == "y.to(torch.uint8)"


@pytest.mark.parametrize("dtype, method", DTYPES[:3])
def test_feature_notice_names_the_models_dtype(dtype, method):
    model = nn.Linear(2, 1).to(dtype)
    fixed, notices = prepare_features(model, torch.tensor([[1, 2], [3, 4]]), None)
    assert fixed.dtype == dtype
    msg = notices[0].message
    assert f"x = x.{method}()" in msg and ".float()" not in msg and f"dtype={dtype}" in msg


def test_float64_model_trains_on_int_features_and_float32_targets_with_right_fixes():
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    init = copy.deepcopy(model)
    X = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])
    y = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    t = nw.Trainer(model, [(X[:2], y[:2]), (X[2:], y[2:])], epochs=1, lr=0.001, device="cpu")
    t.fit()
    assert "x = x.double()" in notice(t, "cast_features")
    assert "y = y.double()" in notice(t, "cast_target") and ".float()" not in notice(t, "cast_target")
    ref, losses = oracle(init, [(X[:2].double(), y[:2].double()), (X[2:].double(), y[2:].double())],
                         F.mse_loss, 2, lr=0.001)
    assert np.allclose(t.history.steps.loss, losses, rtol=1e-6) and same_params(model, ref)




def test_nested_inputs_notice_names_the_bfloat16_cast():
    model = TwoInputs().to(torch.bfloat16)
    batch = ((torch.randn(4, 2), torch.tensor([0, 1, 2, 3])), torch.tensor([0, 1, 2, 1]))
    t = nw.Trainer(model, [batch], epochs=1, device="cpu")
    t.fit()
    msg = notice(t, "cast_features")
    assert "x_num.bfloat16()" in msg and ".float()" not in msg
    assert t.state == "completed"
