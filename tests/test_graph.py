"""maskkit.maskers.graph against networkx on random weighted graphs, plus the batched helpers' contracts."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from maskkit.maskers import graph


def random_graph(seed: int, n: int, density: float) -> torch.Tensor:
    """Symmetric weights in (0, 1) on about ``density`` of the pairs, zero diagonal, connected."""
    rng = np.random.default_rng(seed)
    a = rng.random((n, n))
    a = (a + a.T) / 2
    keep = rng.random((n, n)) < density
    keep = keep | keep.T
    ring = np.zeros((n, n), dtype=bool)  # a ring keeps every graph connected
    idx = np.arange(n)
    ring[idx, (idx + 1) % n] = ring[(idx + 1) % n, idx] = True
    w = np.where(keep | ring, a, 0.0)
    np.fill_diagonal(w, 0.0)
    return torch.tensor(w, dtype=torch.float64)


def batch_of(*graphs: torch.Tensor) -> torch.Tensor:
    return torch.stack(graphs).float()


def nx_graph(w: torch.Tensor) -> nx.Graph:
    return nx.from_numpy_array(w.double().numpy())


# small sparse graphs: nx's default tracemin_pcg converges on these (checked; on some other
# graphs it never returns)
SMALL = [random_graph(s, 12, 0.3) for s in range(4)]
# larger dense graphs: tracemin_pcg can loop forever there (networkx issues #2381, #3418), so the
# oracle is tracemin_lu, which solves the same TraceMIN problem with a direct solver
DENSE = [random_graph(10 + s, 30, 0.8) for s in range(3)]


def test_laplacian_and_eigenvalues_match_networkx() -> None:
    w = batch_of(*SMALL, *[random_graph(20 + s, 12, 0.9) for s in range(2)])
    ours = graph.normalized_laplacian(w.double())
    spec = graph.fiedler_eigh(w)
    for b in range(w.shape[0]):
        ref = nx.normalized_laplacian_matrix(nx_graph(w[b])).toarray()
        np.testing.assert_allclose(ours[b].numpy(), ref, atol=1e-6)
        vals = np.linalg.eigvalsh(ref)
        assert spec.lambda2[b].item() == pytest.approx(vals[1], abs=1e-5)
        assert spec.lambda3[b].item() == pytest.approx(vals[2], abs=1e-5)


@pytest.mark.parametrize("method,graphs", [("tracemin_pcg", SMALL), ("tracemin_lu", DENSE)])
def test_fiedler_vector_matches_networkx_up_to_sign(method: str, graphs: list[torch.Tensor]) -> None:
    w = batch_of(*graphs)
    spec = graph.fiedler_eigh(w)
    power = graph.fiedler_power(w, iters=400, generator=torch.Generator().manual_seed(0))
    for b in range(w.shape[0]):
        ref = nx.fiedler_vector(nx_graph(w[b]), normalized=True, method=method, seed=0)
        ref = ref / np.linalg.norm(ref)
        assert abs(float(np.dot(ref, spec.z[b].double().numpy()))) == pytest.approx(1.0, abs=1e-4)
        assert abs(float(np.dot(ref, power.z[b].double().numpy()))) == pytest.approx(1.0, abs=1e-3)
        # the same split (up to which side is called A) and the same normalized-cut value
        ours = graph.split(spec.y, "zero")[b].numpy()
        theirs = ref > 0
        assert (ours == theirs).all() or (ours == ~theirs).all()
        side_a = [i for i in range(len(ours)) if ours[i]]
        side_b = [i for i in range(len(ours)) if not ours[i]]
        nx_cut = nx.normalized_cut_size(nx_graph(w[b]), side_a, side_b, weight="weight")
        assert graph.ncut_value(w, graph.split(spec.y, "zero"))[b].item() == pytest.approx(nx_cut, rel=1e-5)


def test_power_iteration_eigenvalues_close_to_eigh() -> None:
    w = batch_of(*DENSE)
    exact = graph.fiedler_eigh(w)
    approx = graph.fiedler_power(w, iters=400, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(approx.lambda2, exact.lambda2, atol=1e-4, rtol=0)
    assert (approx.lambda3 - exact.lambda3).abs().max() < 5e-3


def test_ncut_and_density_match_networkx_on_random_splits() -> None:
    w = batch_of(*SMALL)
    labels = torch.rand(w.shape[:2], generator=torch.Generator().manual_seed(0)) > 0.5
    labels[:, 0], labels[:, 1] = True, False
    values = graph.ncut_value(w, labels)
    for b in range(w.shape[0]):
        g = nx_graph(w[b])
        a = [i for i in range(12) if labels[b, i]]
        c = [i for i in range(12) if not labels[b, i]]
        assert values[b].item() == pytest.approx(nx.normalized_cut_size(g, a, c, weight="weight"), rel=1e-5)
    binary = (w > 0).float()
    dens = graph.graph_density(binary)
    for b in range(w.shape[0]):
        assert dens[b].item() == pytest.approx(nx.density(nx_graph(binary[b])), rel=1e-6)


def two_blob_features(b: int = 3, n: int = 40, small: int = 12, d: int = 16, noise: float = 0.05,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, d, generator=g)
    labels = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        labels[i, torch.randperm(n, generator=g)[:small]] = True
    feats = torch.where(labels.unsqueeze(-1), centres[0], centres[1]) + noise * torch.randn(b, n, d, generator=g)
    return feats, labels


@pytest.mark.parametrize("rule", ["tokencut", "knn", "clamp", "shift"])
def test_every_partition_method_recovers_two_blobs(rule: str) -> None:
    feats, labels = two_blob_features()
    x = graph.prepare_features(feats)
    quantile = 0.5 if rule == "tokencut" else None
    w = graph.affinity_from_similarity(graph.cosine_similarity(x), rule, tau_quantile=quantile)
    power = graph.bipartition(w, "power", generator=torch.Generator().manual_seed(0))
    results = [graph.bipartition(w, "ncut"), power, graph.pca_bipartition(x)]
    for bip in results:
        same = (bip.labels == labels).all(1) | (bip.labels == ~labels).all(1)
        assert bool(same.all())
    # all three put the smaller blob on the side holding the largest |y| (sign-fixed positive)
    for bip in results:
        top = bip.y.abs().argmax(1)
        assert bool(bip.labels.gather(1, top[:, None]).all())


def test_fp64_fallback_on_degenerate_spectrum() -> None:
    n = 10
    complete = torch.ones(2, n, n) - torch.eye(n)  # every non-trivial eigenvalue equal: gap 0
    spec = graph.fiedler_eigh(complete, precision="auto")
    lap = graph.normalized_laplacian(complete.double())
    z = spec.z.double()
    residual = (lap @ z.unsqueeze(-1)).squeeze(-1) - spec.lambda2.double().unsqueeze(-1) * z
    assert residual.abs().max() < 1e-6
    assert (spec.lambda3 - spec.lambda2).abs().max() < 1e-5
    spec64 = graph.fiedler_eigh(complete, precision="fp64")
    assert spec64.lambda2.dtype == torch.float32  # results stay fp32 for the caller


def test_split_never_leaves_a_side_empty() -> None:
    y = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 5.0], [3.0, 1.0, 2.0, 4.0]])
    for rule in ("zero", "mean", "median"):
        labels = graph.split(y, rule)
        counts = labels.sum(1)
        assert bool(((counts > 0) & (counts < 4)).all())
    assert graph.split(y, "mean")[2].tolist() == [True, False, False, True]
    assert graph.split(y, "zero")[1].tolist() == [False, False, False, True]


def test_tokencut_quantile_sets_density_per_sample() -> None:
    feats = torch.randn(4, 50, 8, generator=torch.Generator().manual_seed(0))
    x = graph.prepare_features(feats)
    s = graph.cosine_similarity(x)
    for q in (0.3, 0.6, 0.9):
        w = graph.affinity_from_similarity(s, "tokencut", tau_quantile=q, eps=0.0)
        torch.testing.assert_close(graph.graph_density(w), torch.full((4,), 1 - q), atol=0.01, rtol=0)
    fixed = graph.affinity_from_similarity(s, "tokencut", tau=0.2)
    assert torch.all(torch.diagonal(fixed, dim1=1, dim2=2) == 0)


def test_offdiag_quantile_matches_torch_quantile() -> None:
    s = torch.randn(3, 20, 20, generator=torch.Generator().manual_seed(2))
    for q in (0.0, 0.25, 0.5, 0.9, 1.0):
        ref = torch.quantile(graph.offdiagonal(s), q, dim=1)
        torch.testing.assert_close(graph.offdiag_quantile(s, q), ref)


def test_knn_graph_is_symmetric_with_at_least_k_neighbours() -> None:
    feats = torch.randn(2, 30, 6, generator=torch.Generator().manual_seed(3))
    s = graph.cosine_similarity(graph.prepare_features(feats))
    w = graph.affinity_from_similarity(s, "knn", knn=4, eps=0.0)
    torch.testing.assert_close(w, w.transpose(1, 2))
    assert bool(((w > 0).sum(-1) >= 4).all())


def test_batched_equals_one_by_one() -> None:
    w = batch_of(*DENSE)
    together = graph.fiedler_eigh(w)
    for b in range(w.shape[0]):
        alone = graph.fiedler_eigh(w[b:b + 1])
        torch.testing.assert_close(alone.y[0], together.y[b], atol=1e-5, rtol=0)


def test_intra_inter_gap_by_hand() -> None:
    w = torch.tensor([[[0.0, 0.9, 0.1, 0.2],
                       [0.9, 0.0, 0.3, 0.0],
                       [0.1, 0.3, 0.0, 0.7],
                       [0.2, 0.0, 0.7, 0.0]]])
    labels = torch.tensor([[True, True, False, False]])
    intra = (0.9 + 0.7) / 2
    inter = (0.1 + 0.2 + 0.3 + 0.0) / 4
    assert graph.intra_inter_gap(w, labels).item() == pytest.approx(intra - inter)


def test_prepare_features_centres_removes_position_and_normalises() -> None:
    feats = torch.randn(2, 5, 4) + 10.0
    pos = torch.full((5, 4), 10.0)
    x = graph.prepare_features(feats, centre=False, position_mean=pos)
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(2, 5))
    y = graph.prepare_features(feats, centre=True, normalize=False)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 4), atol=1e-5, rtol=0)


def test_principal_projection_uses_the_smaller_gram() -> None:
    g = torch.Generator().manual_seed(4)
    wide = torch.randn(2, 6, 20, generator=g)  # N < D: Gram route
    tall = torch.randn(2, 30, 3, generator=g)  # N > D: covariance route
    for x in (wide, tall):
        p = graph.principal_projection(x)
        xc = x - x.mean(1, keepdim=True)
        ref = torch.linalg.svd(xc, full_matrices=False)
        ref_p = ref.U[:, :, 0] * ref.S[:, :1]
        cos = (p * ref_p).sum(1).abs() / (p.norm(dim=1) * ref_p.norm(dim=1))
        torch.testing.assert_close(cos, torch.ones(2), atol=1e-4, rtol=0)


def test_offdiag_quantile_with_ties() -> None:
    s = torch.zeros(2, 6, 6)
    s[0] = 1.0  # all ties
    s[1, 0, 1:] = 2.0
    for q in (0.1, 0.5, 0.77):
        torch.testing.assert_close(graph.offdiag_quantile(s, q), torch.quantile(graph.offdiagonal(s), q, dim=1))


def test_partition_is_the_composition_the_masker_and_analysis_share() -> None:
    from maskkit.maskers import graph as g

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 20, 8, generator=gen)
    pos = torch.randn(20, 8, generator=gen)
    settings = g.PartitionSettings(tau_quantile=0.5, min_neighbours=2)
    part = g.partition(feats, settings, position_mean=pos)
    x = g.prepare_features(feats, centre=True, position_mean=pos)
    w = g.affinity_from_similarity(g.cosine_similarity(x), "tokencut", tau_quantile=0.5, min_neighbours=2)
    assert torch.allclose(part.x, x) and torch.allclose(part.w, w)
    assert torch.equal(part.bip.labels, g.bipartition(w).labels)
    assert torch.allclose(part.density, g.graph_density(w))
    # remove_position=False ignores the mean it is given; pca has no graph
    plain = g.partition(feats, g.PartitionSettings(remove_position=False), position_mean=pos)
    assert torch.allclose(plain.x, g.prepare_features(feats, centre=True))
    pca = g.partition(feats, g.PartitionSettings(method="pca"))
    assert pca.w is None and pca.density is None and pca.bip.lambda2 is None


def test_masker_and_analysis_use_the_same_settings() -> None:
    from maskkit.lab.analysis import ANALYSIS_PARTITION
    from maskkit.maskers.self_guided import SelfGuidedConfig

    assert SelfGuidedConfig().partition_settings() == ANALYSIS_PARTITION
    assert SelfGuidedConfig(preset="sgmae-spec").partition_settings().tau_quantile == 0.0


def weak_cluster_graphs(b: int, n: int, gap: float, seed: int) -> torch.Tensor:
    """Dense random graphs with a planted two-way split whose strength is bisected per graph until
    lambda3 - lambda2 of L_sym equals ``gap``: the weak-cluster case where the Fiedler vector is
    slow for power iteration (lambda3 and lambda4 sit together in the bulk)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, n, n, generator=g)
    base = 0.5 * (base + base.transpose(1, 2))
    side = torch.rand(b, n, generator=g) < 0.5
    same = (side.unsqueeze(-1) == side.unsqueeze(-2)).float()
    off = 1 - torch.eye(n)
    lo, hi = torch.zeros(b), torch.ones(b)
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        vals = torch.linalg.eigvalsh(graph.normalized_laplacian(((base + mid.view(-1, 1, 1) * same) * off).double()))
        wide = (vals[:, 2] - vals[:, 1]) > gap
        hi, lo = torch.where(wide, mid, hi), torch.where(wide, lo, mid)
    return (base + (0.5 * (lo + hi)).view(-1, 1, 1) * same) * off


def test_power_iteration_cuts_like_eigh_on_weak_clusters() -> None:
    gap = 0.01
    w = weak_cluster_graphs(10, 196, gap, seed=3)
    exact = graph.bipartition(w, "ncut", precision="fp64")
    assert torch.allclose(exact.eigengap, torch.full((10,), gap), atol=1e-4)
    spec = graph.fiedler_power(w, generator=torch.Generator().manual_seed(1))
    labels = graph.split(spec.y, "mean")
    same = (labels == exact.labels).float().mean(-1)
    agreement = torch.maximum(same, 1 - same)  # which side is called A is arbitrary
    assert agreement.min() >= 0.99, agreement
    # it stopped on convergence (every residual under the tolerance), before the cap: 2^r - 1 products
    assert spec.iterations is not None and spec.iterations < 4095 and (spec.iterations + 1) & spec.iterations == 0
    assert (spec.residual <= graph.POWER_TOL).all()
    torch.testing.assert_close(spec.lambda2, exact.lambda2, atol=1e-5, rtol=0)
    # a cap of 63 products, as the old default of 50 did, is far from it on these graphs
    capped = graph.fiedler_power(w, iters=63, generator=torch.Generator().manual_seed(1))
    assert capped.iterations == 63 and (capped.residual > graph.POWER_TOL).all()


def test_closed_form_2x2_eigh_matches_torch() -> None:
    t = torch.randn(64, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = t + t.transpose(1, 2)
    t[:4, 0, 1] = t[:4, 1, 0] = 0.0  # already diagonal, either order
    vals, vecs = graph.symmetric_2x2_eigh(t)
    ref_vals, ref_vecs = torch.linalg.eigh(t)
    torch.testing.assert_close(vals, ref_vals)
    torch.testing.assert_close((vecs * ref_vecs).sum(1).abs(), torch.ones(64, 2, dtype=torch.float64))
    torch.testing.assert_close(t @ vecs, vecs * vals.unsqueeze(1))
