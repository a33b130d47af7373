"""MAE's random masking: argsort of uniform noise, the same count for every sample."""

from __future__ import annotations

from maskkit.masking.base import MaskContext, Masker, MaskPlan


class RandomMasker(Masker):
    name = "random"
    description = "Uniform random masking, same count per sample (argsort of uniform noise)."
    reference = "He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022"

    def plan(self, ctx: MaskContext) -> MaskPlan:
        noise = ctx.uniform(ctx.batch_size, ctx.num_tokens)
        ids_shuffle = noise.argsort(dim=1)  # ascending: small noise is kept, as in MAE
        return MaskPlan.from_shuffle(ids_shuffle, ctx.n_keep)
