"""Image classification: cross-entropy to the labels and to the teacher's softmax (Eq. 2); top-1
(and top-5 for 100 classes or more) accuracy."""

from __future__ import annotations

from collections.abc import Iterable

from paradis.tasks.base import Objective, Task, register_task


def soft_cross_entropy(logits, target_probs):
    """Cross-entropy against a soft target distribution (Eq. 2)."""
    import torch.nn.functional as F

    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def accuracy(model, switch, loader: Iterable, *, topk=(1,), device=None) -> dict[int, float]:
    """Top-k accuracies (fractions) of ``switch`` over ``loader``; the model must be calibrated."""
    import torch

    was_training = model.training
    model.eval()
    correct = dict.fromkeys(topk, 0)
    total = 0
    try:
        with torch.no_grad():
            for x, y in loader:
                if device is not None:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                out = model(x, switch)
                pred = out.topk(min(max(topk), out.shape[1]), dim=1).indices
                hits = pred.eq(y.view(-1, 1))
                for k in topk:
                    correct[k] += int(hits[:, :k].any(dim=1).sum())
                total += y.shape[0]
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("the evaluation loader gave no samples")
    return {k: correct[k] / total for k in topk}


@register_task
class Classification(Task):
    name = "classification"
    measure = "acc"
    heading = "top-1 %"
    long_heading = "Top-1 accuracy (%)"

    def objective(self, *, label_smoothing: float = 0.0) -> Objective:
        import torch.nn.functional as F

        return Objective(
            lambda out, y: F.cross_entropy(out, y, label_smoothing=label_smoothing),
            soft_cross_entropy,
            lambda out: out.detach().float().softmax(-1),
        )

    def evaluate(self, model, switch, loader, *, device=None, num_classes=None) -> dict:
        topk = (1, 5) if (num_classes or 0) >= 100 else (1,)
        acc = accuracy(model, switch, loader, topk=topk, device=device)
        return {"top1": acc[1], "top5": acc.get(5)}

    def cell(self, value: float) -> str:
        return f"{100 * value:.2f}"

    def model_kwargs(self, cfg, info) -> dict:
        return {"num_classes": info.num_classes}  # the data set's classes, not the model's default

    def plotted(self, value: float) -> float:
        return 100 * value
