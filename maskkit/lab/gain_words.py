"""What pretraining bought, in words: the eval table's pretrained rows read against random-init.

A user's first question after ``maskkit eval`` is whether the pretrained encoder is better than the
same network untrained. The tables give the numbers; these sentences say which way each probe went
and whether the difference is larger than the spread over cross-validation folds (smaller
differences are called "about equal": the folds alone move the numbers that much).
"""

from __future__ import annotations

from collections.abc import Sequence

from maskkit.lab.evaluate import ProbeResult


def _compare(name: str, mine: float, mine_sd: float, base: float, base_sd: float) -> tuple[str, int]:
    """('k-NN 0.842 vs 0.830 (+0.012)', +1 / 0 / -1)."""
    diff = mine - base
    noise = max(mine_sd, base_sd)
    sign = 0 if abs(diff) <= noise else (1 if diff > 0 else -1)
    return f"{name} {mine:.3f} vs {base:.3f} ({diff:+.3f})", sign


def gain_sentences(rows: Sequence[ProbeResult]) -> list[str]:
    """One sentence per feature that has both a pretrained and a random-init row."""
    base = {r.feature: r for r in rows if r.arm == "random-init"}
    out = []
    for r in rows:
        ref = base.get(r.feature)
        if r.arm != "pretrained" or ref is None:
            continue
        parts = [_compare("linear probe", r.linear_acc, r.linear_std, ref.linear_acc, ref.linear_std),
                 _compare("k-NN", r.knn_acc, r.knn_std, ref.knn_acc, ref.knn_std)]
        signs = {s for _, s in parts}
        if signs == {1}:
            verdict = "pretraining helped on both probes"
        elif signs == {-1}:
            verdict = "pretraining left the encoder worse than untrained on both probes (train longer, or " \
                      "see docs/recipe-study for budgets that help)"
        elif signs == {0}:
            verdict = "pretraining made no difference larger than the fold spread on either probe"
        elif -1 not in signs:
            verdict = "pretraining helped on one probe and made no clear difference on the other"
        elif 1 not in signs:
            verdict = "pretraining was worse on one probe and made no clear difference on the other"
        else:
            verdict = "pretraining helped on one probe and hurt the other"
        details = "; ".join(text for text, _ in parts)
        out.append(f"{r.feature} features, pretrained vs random-init: {details}: {verdict}.")
    return out


__all__ = ["gain_sentences"]
