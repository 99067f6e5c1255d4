"""The torch side every training step shares: optimizers over the trained networks, and where each check starts.

One measured call of a training workload is one optimizer step; the
workload's `run` computes its losses from the backend's sessions and calls
`Trainer.step` for each network it updates. Weights, BatchNorm statistics and
optimizer state then change from call to call, as they do in training. The
fidelity check must compare the backend's step with eager fp32's on the same
starting point, so the trainer keeps a copy of the state the networks were
built with and `restore` puts it back — in place, so that a compiled module
holding those very tensors keeps working.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn


class Trainer:
    """One Adam optimizer per trained network, and the state every check starts from."""

    def __init__(self, networks: Mapping[str, nn.Module], lr: float, betas: tuple[float, float]) -> None:
        self.networks = dict(networks)
        self.settings = {"optimizer": "Adam", "lr": lr, "betas": list(betas)}
        self.optimizers = {name: torch.optim.Adam(net.parameters(), lr=lr, betas=betas) for name, net in networks.items()}
        self._initial = {name: {k: v.detach().clone() for k, v in net.state_dict().items()} for name, net in networks.items()}

    def step(self, network: str, loss: torch.Tensor) -> torch.Tensor:
        """Backpropagate `loss`, step `network`'s optimizer; the gradient norm of its parameters before the step.

        Gradients are set to None first, not zeroed: what a previous loss left
        in this network (a generator loss backpropagates through the
        discriminator too) never leaks into this step.
        """
        optimizer = self.optimizers[network]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad.detach() for p in self.networks[network].parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        optimizer.step()
        return norm

    @torch.no_grad()
    def restore(self) -> None:
        """Weights, buffers (BatchNorm statistics) and optimizer state back to where training started."""
        for name, net in self.networks.items():
            for key, tensor in net.state_dict().items():
                tensor.copy_(self._initial[name][key])
            self.optimizers[name].state.clear()

    def describe(self) -> dict[str, Any]:
        return dict(self.settings)

