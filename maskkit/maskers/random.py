"""MAE's random masking: argsort of uniform noise, the same count for every sample."""

from __future__ import annotations

from maskkit.maskers.base import MaskContext, Masker, MaskPlan


def random_plan(ctx: MaskContext) -> MaskPlan:
    """MAE's construction: argsort of uniform noise, the first ``n_keep`` stay visible. The one place
    random masks are drawn (the ``random`` masker, self-guided's warm-up, the lab's shared masks)."""
    noise = ctx.uniform(ctx.batch_size, ctx.num_tokens)
    return MaskPlan.from_shuffle(noise.argsort(dim=1), ctx.n_keep)  # ascending: small noise is kept


class RandomMasker(Masker):
    name = "random"
    design_budget = (400, "MAE recipes use 400-1600 epochs (He et al. 2022: 800 in the"
                     " ViT-L recipe, 1600 for the best numbers)")
    description = "Uniform random masking, same count per sample (argsort of uniform noise)."
    reference = "He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022"

    def plan(self, ctx: MaskContext) -> MaskPlan:
        return random_plan(ctx)
