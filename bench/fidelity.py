"""The fidelity gate: a fast backend must still compute the same images.

Every run compares its outputs on a fixed seeded batch with eager PyTorch fp32
on CPU — the reference — by relative L2 error per item,
‖out − ref‖₂ / ‖ref‖₂, and keeps the worst item. Over the workload's tolerance
for the precision, the record is `invalid` and can never be reported as a winner.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import torch

REFERENCE = "pytorch eager fp32 cpu"
# Two items show batch-dependent bugs (a backend mixing items) at little cost.
FIDELITY_BATCH = 2
# Offset from the run seed so the checked batch is not the timed one: an output
# cached by a runtime cannot pass for a computed one.
FIDELITY_SEED_OFFSET = 7919


def relative_l2(output: "torch.Tensor", reference: "torch.Tensor") -> float:
    """Worst per-item relative L2 error over the batch dimension; inf for non-finite output."""
    out, ref = (_items(t) for t in (output, reference))
    if out.shape != ref.shape:
        raise ValueError(f"output shape {tuple(output.shape)} differs from reference {tuple(reference.shape)}")
    if not bool(out.isfinite().all()):
        return math.inf
    errors = (out - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-12)
    return float(errors.max())


def _items(tensor: "torch.Tensor") -> "torch.Tensor":
    """Rows of one item each: a batch's items; a scalar (a training loss) or a vector is one item."""
    t = tensor.detach().float().cpu()
    return t.flatten(1) if t.dim() > 1 else t.reshape(1, -1)


def gate(
    outputs: Mapping[str, "torch.Tensor"],
    reference: Mapping[str, "torch.Tensor"],
    tolerance: float,
    ungated: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Compare each named output with the reference; `passed` only if every gated one is within tolerance.

    `ungated` names outputs that are reported but do not decide validity, with
    the reason (recorded next to the errors).
    """
    ungated = dict(ungated or {})
    errors = {name: relative_l2(outputs[name], reference[name]) for name in reference}
    gated = [name for name in errors if name not in ungated]
    worst = max(errors[name] for name in gated)
    finite = math.isfinite(worst)
    return {
        "max_rel_error": worst if finite else None,
        "rel_error": {name: (e if math.isfinite(e) else None) for name, e in errors.items()},
        "gated": gated,
        "ungated": ungated,
        "tolerance": tolerance,
        "passed": finite and worst <= tolerance,
        "reference": REFERENCE,
        "metric": "relative L2 error per item, worst item",
        "non_finite": not finite,
    }
