"""Kornblith et al.'s sanity check on real networks: CKA matches each layer of one trained
network to the same layer of another trained from a different seed."""

import numpy as np
import torch
from sklearn.datasets import load_digits

from cka_hydra.cka import linear_cka

N_TRAIN = 1400


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)  # ships inside scikit-learn: 1797 8x8 images
    x = (x - x.mean(0)) / (x.std(0) + 1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def train_mlp(seed: int, x: torch.Tensor, y: torch.Tensor) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    widths = [64, 256, 256, 256, 256]
    layers = []
    for d_in, d_out in zip(widths, widths[1:]):
        layers += [torch.nn.Linear(d_in, d_out), torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 10))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    order = torch.Generator().manual_seed(seed)
    for _ in range(30):
        for rows in torch.randperm(N_TRAIN, generator=order).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
            optimizer.step()
    return net


def layer_outputs(net: torch.nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Each linear layer's output (the logits last)."""
    outputs = []
    with torch.no_grad():
        for module in net:
            x = module(x)
            if isinstance(module, torch.nn.Linear):
                outputs.append(x)
    return outputs


def test_cka_finds_corresponding_layers_of_two_trained_networks():
    x, y = digits()
    nets = [train_mlp(seed, x, y) for seed in (0, 1)]
    held_out = x[N_TRAIN:]
    for net in nets:  # both learned the task
        assert (net(held_out).argmax(1) == y[N_TRAIN:]).float().mean() > 0.85
    a, b = (layer_outputs(net, held_out) for net in nets)
    similarity = np.array([[float(linear_cka(la, lb)) for lb in b] for la in a])
    assert list(similarity.argmax(axis=1)) == list(range(len(a)))
    assert list(similarity.argmax(axis=0)) == list(range(len(b)))
