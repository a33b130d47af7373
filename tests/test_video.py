"""Video modality: tubelet tokenizer, tube/frame maskers, loaders (mp4/avi, frame folders, arrays,
generated digits), bad-file reports, determinism and pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from maskkit.config_utils import ConfigError, build_dataclass
from maskkit.maskers.base import MaskContext, MaskPlan, num_visible
from maskkit.modalities.video import TubeletTokenizer, VideoConfig, VideoModality, tubeletify, untubeletify
from maskkit.modalities.video.data import frame_indices
from maskkit.modalities.video.io import write_video
from maskkit.modalities.video.maskers import FrameMasker, TubeMasker
from maskkit.modalities.video.synthetic import MOTIONS
from maskkit.modality import DataError, VisualBatch
from maskkit.registry import get_masker, get_modality
from maskkit.tokens import TokenLayout


def small_modality(**kw) -> VideoModality:
    opts = dict(num_frames=8, image_size=16, tubelet_size=2, patch_size=8, builtin_clips=24)
    opts.update(kw)
    return VideoModality(build_dataclass(VideoConfig, opts))


def ctx_for(grid, ratio=0.9, batch=6, seed=0, axes=("t", "h", "w")) -> MaskContext:
    layout = TokenLayout.from_grid(grid, axes)
    g = torch.Generator().manual_seed(seed)
    return MaskContext(batch_size=batch, num_tokens=layout.num_tokens, mask_ratio=ratio, layout=layout,
                       positions=layout.grid_coordinates().float(), generator=g, device=torch.device("cpu"))


# --- tokenizer ----------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_tubelet_round_trip_and_shapes(channels):
    tok = TubeletTokenizer(8, (16, 24), tubelet_size=2, patch_size=8, channels=channels, embed_dim=32)
    x = torch.rand(3, channels, 8, 16, 24)
    tb = tok.tokenize(x)
    assert tb.layout.grid == (4, 2, 3) and tb.layout.axes == ("t", "h", "w")
    assert tb.embeddings.shape == (3, 24, 32) and tb.targets.shape == (3, 24, 2 * 8 * 8 * channels)
    assert torch.equal(tok.untokenize(tb.targets, tb), x)
    assert tb.positions.shape == (24, 3)
    assert torch.allclose(tb.positions[0], torch.tensor([1.0, 4.0, 4.0]))  # tubelet centre (frame, row, col)
    pos = tok.build_position_embedding(48)(tb.positions)
    assert pos.shape == (1, 24, 48) and torch.unique(pos[0], dim=0).shape[0] == 24


def test_tubelet_targets_hold_one_cube_and_match_conv3d():
    x = torch.arange(1 * 1 * 4 * 4 * 4, dtype=torch.float32).reshape(1, 1, 4, 4, 4)
    t = tubeletify(x, 2, 2)
    # token 0 = frames 0-1, rows 0-1, cols 0-1
    expect = x[0, 0, 0:2, 0:2, 0:2].reshape(-1)
    assert torch.equal(t[0, 0], expect)
    assert torch.equal(untubeletify(t, 2, 2, (2, 2, 2), 1), x)
    tok = TubeletTokenizer(4, (4, 4), 2, 2, 1, 8)
    emb = tok.tokenize(x).embeddings  # the Conv3d on a cube equals a linear map of its pixels
    w = tok.proj.weight.reshape(8, -1)
    assert torch.allclose(emb[0, 0], w @ expect + tok.proj.bias, atol=1e-4)


def test_tokenizer_rejects_wrong_shape():
    tok = TubeletTokenizer(8, (16, 16), 2, 8, 1, 16)
    with pytest.raises(ValueError, match="expected clips"):
        tok.tokenize(torch.rand(2, 1, 6, 16, 16))


# --- maskers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid,ratio", [((8, 4, 4), 0.9), ((8, 14, 14), 0.9), ((3, 5, 7), 0.75),
                                        ((4, 2, 2), 0.5)])
def test_tube_exact_count_and_structure(grid, ratio):
    ctx = ctx_for(grid, ratio)
    plan = TubeMasker()(ctx)
    plan.validate(ctx.num_tokens)
    n_mask = ctx.num_tokens - num_visible(ctx.num_tokens, ratio)
    assert plan.n_mask == n_mask
    t = grid[0]
    per_position = plan.mask.view(ctx.batch_size, t, -1).sum(1)  # (B, H*W) masked count over time
    full, rest = divmod(n_mask, t)
    for row in per_position:
        assert int((row == t).sum()) == full  # whole tubes
        partial = row[(row > 0) & (row < t)]
        assert partial.numel() == (1 if rest else 0) and (not rest or int(partial[0]) == rest)


def test_tube_same_spatial_mask_every_slice_when_divisible():
    ctx = ctx_for((8, 4, 4), ratio=0.75)  # 128 tokens, 96 hidden = 12 tubes of 8
    plan = TubeMasker()(ctx)
    m = plan.mask.view(ctx.batch_size, 8, 16)
    assert bool((m == m[:, :1]).all())
    assert not bool((m[0] == m[1]).all())  # samples differ


@pytest.mark.parametrize("grid,ratio", [((8, 4, 4), 0.9), ((5, 3, 3), 0.6)])
def test_frame_exact_count_and_structure(grid, ratio):
    ctx = ctx_for(grid, ratio)
    plan = FrameMasker()(ctx)
    plan.validate(ctx.num_tokens)
    s = grid[1] * grid[2]
    per_slice = plan.mask.view(ctx.batch_size, grid[0], s).sum(2)
    full, rest = divmod(plan.n_mask, s)
    for row in per_slice:
        assert int((row == s).sum()) == full
        assert int(((row > 0) & (row < s)).sum()) == (1 if rest else 0)


def test_maskers_are_deterministic_and_registered():
    for cls in (TubeMasker, FrameMasker):
        a, b = cls()(ctx_for((8, 4, 4), seed=3)), cls()(ctx_for((8, 4, 4), seed=3))
        assert torch.equal(a.mask, b.mask)
        assert not torch.equal(a.mask, cls()(ctx_for((8, 4, 4), seed=4)).mask)
        assert get_masker(cls.name) is cls
    with pytest.raises(ValueError, match="rank"):
        TubeMasker()(ctx_for((4, 4), axes=("h", "w")))


def test_core_random_masker_runs_on_space_time_grid():
    plan: MaskPlan = get_masker("random")()(ctx_for((8, 4, 4)))
    plan.validate(128)
    assert plan.n_keep == num_visible(128, 0.9) == 12


# --- options ------------------------------------------------------------------------------------
def test_options_presets_and_errors():
    o = VideoConfig()
    assert (o.num_frames, o.image_size, o.tubelet_size, o.patch_size) == (16, 32, 2, 8)
    assert o.grid == (8, 4, 4)
    big = VideoConfig(preset="videomae")
    assert big.grid == (8, 14, 14) and big.frame_stride == 4
    assert build_dataclass(VideoConfig, {"image_size": "16x32", "patch_size": "8"}).size == (16, 32)
    with pytest.raises(ConfigError, match="num_frames` 15 is not divisible by `tubelet_size` 2"):
        build_dataclass(VideoConfig, {"num_frames": "15"})
    with pytest.raises(ConfigError, match="image_size` 30 is not divisible by `patch_size` 8"):
        build_dataclass(VideoConfig, {"image_size": "30"})
    with pytest.raises(ConfigError, match="channels"):
        VideoConfig(channels=2)
    assert get_modality("video") is VideoModality


# --- data ---------------------------------------------------------------------------------------
def test_moving_digits_labels_determinism_and_augmentation():
    m = small_modality()
    train, clean = m.build_dataset(None, train=True, seed=0), m.build_dataset(None, train=False, seed=0)
    m.adapt_to_dataset(train)
    assert m.config.channels == 1 and train.class_names == MOTIONS and train.num_classes == len(MOTIONS)
    x, y = train[7]
    assert x.shape == (1, 8, 16, 16) and x.dtype == torch.float32
    assert 0 <= float(x.min()) <= float(x.max()) <= 1
    assert y == 7 % len(MOTIONS)
    assert torch.equal(train[7][0], train[7][0])
    assert torch.equal(clean[7][0], small_modality().build_dataset(None, train=False)[7][0])
    train.set_epoch(1)
    assert not torch.equal(train[7][0], clean[7][0])  # brightness jitter
    # "right" moves right, "static" stays
    x0 = clean[0][0][0]
    cols = torch.arange(16.0)
    com = (x0.sum(1) * cols).sum(-1) / x0.sum((1, 2))
    assert float(com[-1] - com[0]) > 2
    xs = clean[4][0][0]
    assert torch.allclose(xs[0], xs[-1])


def test_unknown_builtin_and_missing_path(tmp_path):
    m = small_modality()
    with pytest.raises(DataError, match="builtin:moving-digits"):
        m.build_dataset("builtin:nope", train=False)
    with pytest.raises(DataError, match="no such file"):
        m.build_dataset(str(tmp_path / "missing"), train=False)


def gradient_clip(t=10, h=24, w=32, shift=2) -> np.ndarray:
    """(T, H, W, 3) uint8 clip whose frame k has a bright vertical bar at column 4 + shift*k."""
    frames = np.zeros((t, h, w, 3), dtype=np.uint8)
    for k in range(t):
        frames[k, :, 4 + shift * k: 8 + shift * k, :] = 230
        frames[k, :, :, 2] = 40
    return frames


def test_mp4_and_avi_files_decode(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    write_video(root / "a" / "one.mp4", gradient_clip(), codec="libx264")
    write_video(root / "b" / "two.avi", gradient_clip(t=5), codec="mpeg4")
    m = small_modality(num_frames=4, frame_stride=2, image_size="24x32")
    ds = m.build_dataset(str(root), train=False)
    m.adapt_to_dataset(ds)
    assert len(ds) == 2 and ds.class_names == ["a", "b"] and list(ds.labels) == [0, 1]
    assert ds.counts == [10, 5] and m.config.channels == 3
    x, y = ds[0]
    assert x.shape == (3, 4, 24, 32) and y == 0
    # centred clip of frames 1,3,5,7: the bar sits at column 4 + 2k
    for j, k in enumerate([1, 3, 5, 7]):
        col = x[0, j].mean(0)
        assert int(col.argmax()) in range(4 + 2 * k, 8 + 2 * k)
    assert abs(float(x[2].mean()) - 40 / 255) < 0.05
    x2, _ = ds[1]  # 5 frames < 7 needed: frames 0, 2, 4, 4
    assert torch.allclose(x2[:, -1], x2[:, -2], atol=0.02)
    aug = m.build_dataset(str(root), train=True, seed=1)
    a, b = aug[0][0], aug[0][0]
    assert torch.equal(a, b) and a.shape == x.shape


def test_single_video_file_and_grey_conversion(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, gradient_clip())
    m = small_modality(num_frames=4, frame_stride=1, image_size=16, channels=1)
    ds = m.build_dataset(str(path), train=False)
    assert len(ds) == 1 and ds.labels[0] == -1 and ds[0][0].shape == (1, 4, 16, 16)


def test_frame_folders(tmp_path):
    clip = gradient_clip(t=5, h=16, w=16, shift=1)
    for cls in ("left", "right"):
        for n in range(2):
            d = tmp_path / "frames" / cls / f"clip{n}"
            d.mkdir(parents=True)
            for k, f in enumerate(clip):
                Image.fromarray(f).save(d / f"{k:03d}.png")
    m = small_modality(num_frames=4, frame_stride=1, image_size=16)
    ds = m.build_dataset(str(tmp_path / "frames"), train=False)
    assert len(ds) == 4 and list(ds.labels) == [0, 0, 1, 1] and ds.class_names == ["left", "right"]
    x, _ = ds[2]
    assert x.shape == (3, 4, 16, 16)
    assert torch.allclose(x[0, 0], torch.from_numpy(clip[0, :, :, 0]).float() / 255, atol=1e-6)


def test_arrays_npy_npz_and_single_clip(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(5, 8, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "grey.npy", grey)
    m = small_modality(num_frames=8, frame_stride=1, image_size=16)
    ds = m.build_dataset(str(tmp_path / "grey.npy"), train=False)
    assert len(ds) == 5 and ds.channels == 1 and ds.labels.tolist() == [-1] * 5
    assert torch.allclose(ds[3][0][0], torch.from_numpy(grey[3]).float() / 255)
    rgb = rng.random((4, 8, 16, 16, 3), dtype=np.float32)
    np.savez(tmp_path / "rgb.npz", videos=rgb, labels=np.array([0, 1, 0, 1]))
    ds = m.build_dataset(str(tmp_path / "rgb.npz"), train=False)
    assert ds.channels == 3 and ds.labels.tolist() == [0, 1, 0, 1]
    assert torch.allclose(ds[1][0], torch.from_numpy(rgb[1]).permute(3, 0, 1, 2))
    np.save(tmp_path / "one.npy", rgb[0])  # one clip (T, H, W, C)
    assert len(m.build_dataset(str(tmp_path / "one.npy"), train=False)) == 1
    np.save(tmp_path / "bad.npy", np.zeros((4, 4)))
    with pytest.raises(DataError, match="bad.npy.*expected clips"):
        m.build_dataset(str(tmp_path / "bad.npy"), train=False)


def test_bad_videos_are_reported_or_skipped(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    write_video(root / "good.mp4", gradient_clip())
    (root / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 100)
    (root / "empty.mkv").write_bytes(b"")
    (root / "noframes").mkdir()
    (root / "noframes" / "notes.txt").write_text("not a frame")
    m = small_modality(num_frames=4, frame_stride=1, image_size=16)
    with pytest.raises(DataError) as err:
        m.build_dataset(str(root), train=False)
    msg = str(err.value)
    assert "corrupt.mp4" in msg and "not a readable video" in msg and "\n" not in msg
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = m.build_dataset(str(root), train=False, on_bad_file="skip")
    assert len(ds) == 1 and {p.rsplit("/", 1)[-1] for p, _ in ds.skipped} == {"corrupt.mp4", "empty.mkv"}
    assert all(reason for _, reason in ds.skipped)
    (root / "good.mp4").unlink()
    with pytest.raises(DataError, match="none of the 2 clips"):
        m.build_dataset(str(root), train=False, on_bad_file="skip")


def test_zero_frame_video_is_reported(tmp_path):
    import av

    m = small_modality(num_frames=4, frame_stride=1, image_size=16)
    for suffix in (".avi", ".mkv"):
        path = tmp_path / f"zero{suffix}"
        with av.open(str(path), mode="w") as c:  # a header and a stream, but no frames
            s = c.add_stream("mpeg4", rate=8)
            s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
            c.start_encoding()
        assert path.stat().st_size > 0
        # avi: opens, then no frame decodes; mkv: the demuxer already hits end of file
        reason = "the video has no decodable frames" if suffix == ".avi" else "not a readable video"
        with pytest.raises(DataError, match=f"zero{suffix}: {reason}"):
            m.build_dataset(str(path), train=False)


def test_frame_indices_sampling():
    assert frame_indices(100, 4, 2, None).tolist() == [46, 48, 50, 52]
    assert frame_indices(3, 4, 2, None).tolist() == [0, 2, 2, 2]
    rng = np.random.default_rng(0)
    starts = {int(frame_indices(20, 4, 2, rng)[0]) for _ in range(50)}
    assert min(starts) >= 0 and max(starts) <= 20 - 7 and len(starts) > 3


# --- model pieces and pictures --------------------------------------------------------------------
def test_render_and_raw_features(tmp_path):
    m = small_modality()
    ds = m.build_dataset(None, train=False)
    m.adapt_to_dataset(ds)
    tok = m.build_tokenizer(24)
    x = torch.stack([ds[i][0] for i in range(3)])
    tokens = tok.tokenize(x)
    ctx = ctx_for(tokens.layout.grid, ratio=0.75, batch=3)
    plan = TubeMasker()(ctx)
    hidden = plan.mask.unsqueeze(-1)
    pred = torch.rand_like(tokens.targets)
    batch = VisualBatch(inputs=x, tokens=tokens, plan=plan, pred_targets=pred,
                        masked_targets=torch.where(hidden, 0.0, tokens.targets),
                        pasted_targets=torch.where(hidden, pred, tokens.targets), tokenizer=tok,
                        extra_rows={"cluster": (torch.arange(tokens.num_tokens) % 2).expand(3, -1).float()})
    path = m.render(batch, tmp_path / "video.png", title="tube masking")
    img = Image.open(path)
    assert img.format == "PNG" and img.width > 8 * 16 and img.height > 3 * 5 * 16
    feats = m.raw_features(x)
    assert feats.shape == (3, 8 * 8 * 8)


@settings(max_examples=40, deadline=None)
@given(t=st.integers(1, 8), h=st.integers(1, 6), w=st.integers(1, 6), batch=st.integers(1, 4),
       ratio=st.floats(0.05, 0.95), seed=st.integers(0, 10_000), name=st.sampled_from(["tube", "frame"]))
def test_structured_video_maskers_exact_on_any_grid(t, h, w, batch, ratio, seed, name):
    ctx = ctx_for((t, h, w), ratio, batch=batch, seed=seed)
    plan = get_masker(name)()(ctx)
    plan.validate(ctx.num_tokens)
    assert plan.n_keep == num_visible(ctx.num_tokens, ratio)
