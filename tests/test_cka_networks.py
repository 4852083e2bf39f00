"""Kornblith et al.'s sanity check on real networks: CKA matches each layer of one trained
network to the same layer of another trained from a different seed."""

import numpy as np
import torch
from conftest import DIGITS_TRAIN, digits, module_outputs, train_digits_mlp

from cka_hydra.cka import linear_cka


def test_cka_finds_corresponding_layers_of_two_trained_networks():
    x, y = digits()
    nets = [train_digits_mlp(seed, x, y, widths=(64, 256, 256, 256, 256), epochs=30) for seed in (0, 1)]
    held_out = x[DIGITS_TRAIN:]
    for net in nets:  # both learned the task
        assert (net(held_out).argmax(1) == y[DIGITS_TRAIN:]).float().mean() > 0.85
    a, b = (module_outputs(net, held_out, torch.nn.Linear) for net in nets)
    similarity = np.array([[float(linear_cka(la, lb)) for lb in b] for la in a])
    assert list(similarity.argmax(axis=1)) == list(range(len(a)))
    assert list(similarity.argmax(axis=0)) == list(range(len(b)))
