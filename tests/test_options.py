"""The Trainer's argument checks: whole datasets passed where batches are expected."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import nnwidgets as nw


def test_a_dataframe_gets_the_dataloader_that_fixes_it():
    with pytest.raises(TypeError, match=r"train_data is a pandas DataFrame: nnwidgets trains on batches\. .*"
                                        r"train_data = DataLoader\(TensorDataset\(torch\.as_tensor\(X, dtype=torch\.float32\)"):
        nw.Trainer(nn.Linear(3, 2), pd.DataFrame({"a": [1.0, 2.0, 3.0]}))


def test_a_whole_x_y_pair_is_not_taken_for_two_batches():
    with pytest.raises(TypeError, match=r"val_data is a pair \(X, y\) of whole arrays \(ndarray \[10, 3\], ndarray \[10\]\)"):
        nw.Trainer(nn.Linear(3, 2), [(torch.zeros(4, 3), torch.zeros(4).long())], (np.zeros((10, 3)), np.zeros(10)))


def test_two_batches_of_one_shape_stay_a_list_of_batches():
    t = nw.Trainer(nn.Linear(3, 2), [(torch.zeros(4, 3), torch.zeros(4).long())] * 2)
    assert t.state == "idle"
    nw.Trainer(nn.Linear(3, 2), [torch.zeros(4, 3), torch.zeros(4, 3)], step=lambda m, b: m(b).sum())
