"""Image super-resolution (the paper's appendix D): L1 to the high-resolution image and to the
teacher's detached image; PSNR on Y with a border crop of the scale, beside bicubic upsampling's."""

from __future__ import annotations

from paradis.tasks.base import Objective, Task, register_task


@register_task
class SuperResolution(Task):
    name = "super-resolution"
    measure = "psnr"
    heading = "PSNR (dB)"
    long_heading = "PSNR (dB, Y channel, border = scale)"
    # The paper saw distillation hurt super-resolution: off unless asked, and so no wide model either.
    default_distillation = "none"
    distils_only_from_wide = True

    def objective(self, *, label_smoothing: float = 0.0) -> Objective:
        import torch.nn.functional as F

        return Objective(F.l1_loss, F.l1_loss, lambda out: out.detach().float())

    def evaluate(self, model, switch, loader, *, device=None, num_classes=None) -> dict:
        from paradis.tasks.psnr import mean_psnr

        was_training = model.training
        model.eval()
        try:
            return {"psnr": mean_psnr(lambda lr, _scale: model(lr, switch), loader, device=device)}
        finally:
            model.train(was_training)

    def baseline(self, loader, *, device=None) -> float:
        from paradis.tasks.psnr import bicubic_psnr

        return bicubic_psnr(loader, device=device)

    def cell(self, value: float) -> str:
        return f"{value:.2f}"

    def model_kwargs(self, cfg, info) -> dict:
        return {"scale": cfg.data.sr.scale}
