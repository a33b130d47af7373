"""Image modality: options, patches, every loader, bad files, augmentation, pictures, one step."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskkit.config_utils import ConfigError, build_dataclass, dataclass_to_dict
from maskkit.imaging import GridStyle, colourise, compose_grid, grid_size, upscale_factor
from maskkit.maskers.base import MaskContext
from maskkit.modalities.image import ImageConfig, ImageModality, ImagePatchTokenizer, patchify, unpatchify
from maskkit.modalities.image.data import digits_array
from maskkit.modalities.image.draw import MIN_CELL
from maskkit.modality import DataError, VisualBatch, collate_samples
from maskkit.registry import build_masker, get_modality

RNG = np.random.default_rng(0)


def modality(**options: object) -> ImageModality:
    return ImageModality(build_dataclass(ImageConfig, options))


def save(path: Path, array: np.ndarray, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def colour(h: int = 20, w: int = 30) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------ options
def test_registered_through_the_entry_point() -> None:
    cls = get_modality("image")
    assert cls.__name__ == "ImageModality" and cls.name == "image"
    assert cls.default_data == "builtin:digits" and cls.default_mask_ratio == 0.75
    assert set(cls.builtin_datasets) == {"digits", "photos", "objects", "textures", "hierarchy"}


@pytest.mark.parametrize("size,expected", [("32", (32, 32)), (32, (32, 32)), ("24x32", (24, 32)),
                                           ("24,32", (24, 32)), ("16x16", (16, 16))])
def test_image_size_forms(size: object, expected: tuple[int, int]) -> None:
    opts = build_dataclass(ImageConfig, {"image_size": size, "patch_size": "4"})
    assert opts.size == expected
    again = build_dataclass(ImageConfig, dataclass_to_dict(opts))  # round trip through a plain dict
    assert again.size == expected


@pytest.mark.parametrize("options,message", [
    ({"image_size": "30", "patch_size": "4"}, "`image_size` 30 is not divisible by `patch_size` 4"),
    ({"image_size": "32x30", "patch_size": "4"}, "`image_size` 32x30 is not divisible by `patch_size` 4"),
    ({"image_size": "big"}, "`image_size` expects N or HxW"),
    ({"image_size": "0"}, "`image_size` must be positive"),
    ({"patch_size": "0"}, "`patch_size`"),
    ({"channels": "0"}, "`channels`"),
    ({"channels": "3", "pixel_mean": "0.5", "pixel_std": "0.2"}, "`pixel_mean` has 1 values"),
    ({"pixel_mean": "0.5"}, "together"),
])
def test_bad_options_are_config_errors(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_dataclass(ImageConfig, options)


# ------------------------------------------------------------------------------ patches
@pytest.mark.parametrize("channels", [1, 3, 4, 5])
def test_patchify_round_trip_non_square(channels: int) -> None:
    x = torch.randn(2, channels, 12, 20)
    patches = patchify(x, 4)
    assert patches.shape == (2, 3 * 5, 16 * channels)
    assert torch.equal(unpatchify(patches, 4, (3, 5), channels), x)
    # token (row 1, col 2) holds pixels [4:8, 8:12] in (row, col, channel) order
    assert torch.equal(patches[0, 1 * 5 + 2], x[0, :, 4:8, 8:12].permute(1, 2, 0).reshape(-1))


def test_tokenizer_shapes() -> None:
    tok = ImagePatchTokenizer((12, 20), 4, 3, embed_dim=16)
    x = torch.randn(5, 3, 12, 20)
    tokens = tok.tokenize(x)
    assert tokens.embeddings.shape == (5, 15, 16)
    assert tokens.targets.shape == (5, 15, 48)
    assert tokens.layout.grid == (3, 5) and tokens.layout.axes == ("h", "w")
    assert tokens.positions.shape == (15, 2)
    assert torch.equal(tok.untokenize(tokens.targets, tokens), x)
    with pytest.raises(ValueError, match="expected images of shape"):
        tok.tokenize(torch.randn(5, 1, 12, 20))


# ------------------------------------------------------------------------------ builtins
def test_digits_build_fast_with_labels() -> None:
    digits_array.cache_clear()
    start = time.perf_counter()
    ds = modality().build_dataset("builtin:digits", train=False)
    assert time.perf_counter() - start < 1.0
    assert len(ds) == 1797 and ds.num_classes == 10 and ds.class_names == [str(d) for d in range(10)]
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and y == 0
    batch = torch.stack([ds[i][0] for i in range(0, 1797, 7)])
    assert abs(float(batch.mean())) < 0.1 and abs(float(batch.std()) - 1.0) < 0.1


def test_digits_replicated_to_three_channels_and_non_square() -> None:
    ds = modality(channels=3, image_size="16x24").build_dataset(None, train=True)
    x, _ = ds[5]
    assert x.shape == (3, 16, 24)
    assert torch.allclose(x[0], x[1]) and torch.allclose(x[1], x[2])


def test_photos_builtin() -> None:
    m = modality(image_size=24)
    ds = m.build_dataset("builtin:photos", train=False, seed=0)
    assert len(ds) == 1000 and ds.class_names == ["china", "flower"]
    assert set(np.unique(ds.labels)) == {0, 1} and ds.num_classes == 2
    assert ds[0][0].shape == (3, 24, 24)
    other = m.build_dataset("builtin:photos", train=False, seed=0)
    assert torch.equal(ds[3][0], other[3][0])  # crops are fixed by the seed
    assert not np.array_equal(ds.boxes, m.build_dataset("builtin:photos", train=False, seed=1).boxes)


def test_unknown_builtin() -> None:
    with pytest.raises(DataError, match="builtin:digits, builtin:photos"):
        modality().build_dataset("builtin:cifar", train=False)


# ------------------------------------------------------------------------------ folders
def test_folder_with_classes_png_and_jpeg(tmp_path: Path) -> None:
    save(tmp_path / "cats" / "a.png", colour())
    save(tmp_path / "cats" / "b.JPG", colour(40, 40), quality=90)
    save(tmp_path / "dogs" / "deep" / "c.jpeg", colour(64, 48), quality=90)
    save(tmp_path / "dogs" / "d.png", colour())
    (tmp_path / "dogs" / "readme.txt").write_text("ignored")
    ds = modality(image_size=16).build_dataset(str(tmp_path), train=True)
    assert len(ds) == 4 and ds.class_names == ["cats", "dogs"]
    assert list(ds.labels) == [0, 0, 1, 1] and ds.channels == 3
    for i in range(4):
        x, _ = ds[i]
        assert x.shape == (3, 16, 16) and torch.isfinite(x).all()


def test_flat_folder_is_unlabelled_and_greyscale_detected(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, (10, 10), dtype=np.uint8)
    save(tmp_path / "x.png", grey)
    save(tmp_path / "y.png", grey)
    save(tmp_path / "sub" / "z.png", grey)
    m = modality(image_size=8)
    ds = m.build_dataset(str(tmp_path), train=False)
    assert list(ds.labels) == [-1, -1, -1] and ds.class_names is None and ds.num_classes == 0
    assert ds.channels == 1 and ds[0][0].shape == (1, 8, 8)
    m.adapt_to_dataset(ds)
    assert m.config.channels == 1 and len(m.config.pixel_mean) == 1


def test_folder_rgba_and_channel_override(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (12, 12, 4), dtype=np.uint8)
    save(tmp_path / "a.png", rgba)
    assert modality(image_size=8).build_dataset(str(tmp_path), train=False).channels == 3
    for channels in (4, 1):
        ds = modality(image_size=8, channels=channels).build_dataset(str(tmp_path), train=False)
        assert ds[0][0].shape == (channels, 8, 8)


def test_sixteen_bit_greyscale_png(tmp_path: Path) -> None:
    arr = (RNG.integers(0, 65536, (10, 10))).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    ds = modality(image_size=8, normalize=False).build_dataset(str(tmp_path), train=False)
    x = ds.raw(0)
    assert ds.channels == 1 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5


def test_bad_files_are_reported_with_path_and_reason(tmp_path: Path) -> None:
    save(tmp_path / "ok.png", colour())
    jpeg = save(tmp_path / "photos" / "x.jpg", colour(64, 64), quality=95).read_bytes()
    (tmp_path / "photos" / "x.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "notes.png").write_text("this is not a picture")
    with pytest.raises(DataError) as err:
        modality().build_dataset(str(tmp_path), train=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"{tmp_path / 'photos' / 'x.jpg'}: truncated JPEG" in message
    assert f"{tmp_path / 'notes.png'}: not an image" in message
    ds = modality().build_dataset(str(tmp_path), train=False, on_bad_file="skip")
    assert len(ds) == 1
    assert sorted(Path(p).name for p, _ in ds.skipped) == ["notes.png", "x.jpg"]
    assert "2 unreadable" in ds.describe()


def test_truncated_png_is_reported(tmp_path: Path) -> None:
    data = save(tmp_path / "a.png", colour(32, 32)).read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="a.png: damaged PNG"):
        modality().build_dataset(str(tmp_path), train=False)


def test_missing_and_empty_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        modality().build_dataset(str(tmp_path / "nope"), train=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG/JPEG images found"):
        modality().build_dataset(str(tmp_path / "empty"), train=False)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="expected a folder of PNG/JPEG images"):
        modality().build_dataset(str(tmp_path / "file.txt"), train=False)


# ------------------------------------------------------------------------------ arrays
def test_npy_channels_last_uint8(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", RNG.integers(0, 256, (6, 10, 12, 3), dtype=np.uint8))
    ds = modality(image_size=8).build_dataset(str(tmp_path / "a.npy"), train=True)
    assert len(ds) == 6 and ds.channels == 3 and ds[0][0].shape == (3, 8, 8)
    assert list(ds.labels) == [-1] * 6


def test_npy_channels_first_float_and_plain(tmp_path: Path) -> None:
    np.save(tmp_path / "nchw.npy", RNG.random((5, 2, 16, 16)).astype(np.float32))
    ds = modality(image_size=8).build_dataset(str(tmp_path / "nchw.npy"), train=False)
    assert ds.channels == 2 and ds[0][0].shape == (2, 8, 8)
    np.save(tmp_path / "nhw.npy", RNG.integers(0, 256, (4, 8, 8), dtype=np.uint8))
    assert modality(image_size=8).build_dataset(str(tmp_path / "nhw.npy"), train=False).channels == 1


def test_npz_with_labels(tmp_path: Path) -> None:
    images = RNG.integers(0, 256, (9, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(9) % 3)
    ds = modality(image_size=8).build_dataset(str(tmp_path / "d.npz"), train=False)
    assert list(ds.labels) == [0, 1, 2] * 3 and ds.num_classes == 3 and ds.class_names == ["0", "1", "2"]
    np.savez(tmp_path / "y.npz", pics=images, y=np.zeros(9, dtype=np.int64))  # any single other key
    assert modality(image_size=8).build_dataset(str(tmp_path / "y.npz"), train=False).num_classes == 1


@pytest.mark.parametrize("array,message", [
    (np.zeros((5, 7)), r"a.npy: expected images shaped .* found shape \(5, 7\)"),
    (np.zeros((2, 8, 8, 8, 8)), r"found shape \(2, 8, 8, 8, 8\)"),
    (np.zeros((3, 9, 9, 9)), r"found shape \(3, 9, 9, 9\)"),
    (np.full((2, 4, 4), np.nan, dtype=np.float32), "NaN"),
])
def test_malformed_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(DataError, match=message):
        modality(image_size=8).build_dataset(str(tmp_path / "a.npy"), train=False)


def test_malformed_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "b.npz", images=np.zeros((4, 8, 8)), labels=np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match=r"b.npz: labels must be 4 integers .* shape \(3,\)"):
        modality(image_size=8).build_dataset(str(tmp_path / "b.npz"), train=False)
    np.savez(tmp_path / "c.npz", first=np.zeros((4, 8, 8)), second=np.zeros((4, 8, 8)))
    with pytest.raises(DataError, match="c.npz: cannot tell which array"):
        modality(image_size=8).build_dataset(str(tmp_path / "c.npz"), train=False)
    (tmp_path / "d.npy").write_text("garbage")
    with pytest.raises(DataError, match="d.npy: not a readable"):
        modality(image_size=8).build_dataset(str(tmp_path / "d.npy"), train=False)


# ------------------------------------------------------------------------------ augmentation
@pytest.mark.parametrize("data", ["builtin:digits", "builtin:photos"])
def test_augmentation_is_deterministic_per_seed_epoch_index(data: str) -> None:
    m = modality(image_size=16)
    a, b = m.build_dataset(data, train=True, seed=1), m.build_dataset(data, train=True, seed=1)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(5))
    c = m.build_dataset(data, train=True, seed=2)
    assert any(not torch.equal(a[i][0], c[i][0]) for i in range(5))
    before = [a[i][0] for i in range(5)]
    a.set_epoch(1)
    assert any(not torch.equal(before[i], a[i][0]) for i in range(5))
    plain = m.build_dataset(data, train=False, seed=1)
    assert all(torch.equal(plain[i][0], plain[i][0]) for i in range(3))
    assert torch.allclose(plain[0][0], (plain.raw(0) - plain.mean) / plain.std)


def test_no_augmentation_option() -> None:
    m = modality(augment=False)
    ds = m.build_dataset("builtin:photos", train=True)
    ds.set_epoch(3)
    assert torch.equal(ds[0][0], m.build_dataset("builtin:photos", train=False)[0][0])


# ------------------------------------------------------------------------------ modality glue
def test_adapt_then_tokenizer_and_raw_features() -> None:
    m = modality(image_size=16, patch_size=4)
    with pytest.raises(ConfigError, match="channels are unknown"):
        m.build_tokenizer(32)
    ds = m.build_dataset(None, train=False)
    m.adapt_to_dataset(ds)
    tok = m.build_tokenizer(32)
    assert tok.channels == 1 and tok.layout.grid == (4, 4)
    x, _ = collate_samples([ds[i] for i in range(3)])
    assert m.raw_features(x).shape == (3, 256)
    evaluation = m.build_dataset(None, train=False)  # later datasets reuse the recorded statistics
    assert torch.equal(evaluation.mean, ds.mean)


def _visual_batch(m: ImageModality, data: str, n: int, extra: bool) -> VisualBatch:
    ds = m.build_dataset(data, train=False)
    m.adapt_to_dataset(ds)
    x, _ = collate_samples([ds[i] for i in range(n)])
    tok = m.build_tokenizer(16)
    tokens = tok.tokenize(x)
    ctx = MaskContext(batch_size=n, num_tokens=tokens.num_tokens, mask_ratio=0.75, layout=tokens.layout,
                      positions=tokens.positions, generator=torch.Generator().manual_seed(0),
                      device=torch.device("cpu"))
    plan = build_masker("block")(ctx)
    pred = tokens.targets + 0.1 * torch.randn_like(tokens.targets)
    hidden = plan.mask.unsqueeze(-1)
    rows = None
    if extra:
        rows = {"cluster": torch.randint(0, 2, plan.mask.shape), "score": torch.rand(plan.mask.shape),
                "hint": torch.rand(plan.mask.shape) > 0.8}
    return VisualBatch(inputs=x, tokens=tokens, plan=plan, pred_targets=pred,
                       masked_targets=torch.where(hidden, torch.zeros_like(pred), tokens.targets),
                       pasted_targets=torch.where(hidden, pred, tokens.targets), tokenizer=tok,
                       extra_rows=rows)


@pytest.mark.parametrize("data,size,extra", [("builtin:digits", "8", False),
                                             ("builtin:photos", "24x32", True)])
def test_render_writes_png_of_expected_size(tmp_path: Path, data: str, size: str, extra: bool) -> None:
    m = modality(image_size=size, patch_size=4)
    batch = _visual_batch(m, data, 3, extra)
    path = m.render(batch, tmp_path / "sub" / "recon.png", title="test")
    h, w = m.config.size
    factor = upscale_factor(h, w, MIN_CELL)
    assert min(h, w) * factor >= MIN_CELL
    cols = 4 + (3 if extra else 0)
    expected = grid_size([h * factor] * 3, [w * factor] * cols, GridStyle(), title=True, col_titles=True)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == expected and im.mode == "RGB"


def test_imaging_helpers() -> None:
    cats = colourise(np.array([[0, 1], [-1, 2]]))
    assert cats.shape == (2, 2, 4) and cats[1, 0, 3] == 0 and cats[0, 0, 3] == 1
    heat = colourise(np.array([[0.0, 0.5], [1.0, 0.25]]))
    assert not np.allclose(heat[0, 0, :3], heat[1, 0, :3])
    hints = colourise(np.array([[True, False]]))
    assert hints[0, 0, 3] == 1 and hints[0, 1, 3] == 0
    picture = compose_grid([[np.zeros((5, 6)), None], [np.ones((5, 6, 3)), np.zeros((4, 4, 3), np.uint8)]])
    assert picture.size == grid_size([5, 5], [6, 4])


# ------------------------------------------------------------------------------ one training step
def test_one_training_step_with_block_masking() -> None:
    from maskkit.maskers.base import TrainingProgress
    from maskkit.model.mae import MaskedAutoencoder, model_preset
    from maskkit.train.step import TrainingModule

    m = modality(image_size=16, patch_size=4)
    ds = m.build_dataset(None, train=True)
    m.adapt_to_dataset(ds)
    config = model_preset("nano")
    model = MaskedAutoencoder(m.build_tokenizer(config.embed_dim), config)
    step = TrainingModule(model, build_masker("block"), m.build_loss(), mask_ratio=0.75)
    x, _ = collate_samples([ds[i] for i in range(8)])
    out = step(x, torch.Generator().manual_seed(0), TrainingProgress())
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.plan.n_mask == 12
    assert model.tokenizer.proj.weight.grad is not None


@pytest.mark.parametrize(("data", "given", "expected"), [
    ("builtin:digits", {}, (8, 2, False)),  # the digits at their own 8x8 pixels, raw-pixel target
    (None, {}, (8, 2, False)),  # no data: the default data, the digits
    ("builtin:digits", {"norm_pix_loss": True}, (8, 2, True)),  # a given option wins, the rest still apply
    ("builtin:digits", {"patch_size": 4}, (32, 4, True)),  # a given size or patch: no data default at all
    ("builtin:digits", {"image_size": 16}, (16, 4, True)),
    ("builtin:photos", {}, (32, 4, True)),  # other data: ImageConfig's defaults
])
def test_data_defaults_fill_only_what_is_not_given(data, given, expected) -> None:
    from maskkit.train.build import build_modality

    config = build_modality("image", dict(given), data).config
    assert (config.image_size, config.patch_size, config.norm_pix_loss) == expected


def test_a_run_records_the_data_defaults_it_used(tmp_path: Path) -> None:
    """The resolved options are saved, so eval/finetune/resume rebuild exactly the trained geometry."""
    import json

    from maskkit.train.config import TrainConfig
    from maskkit.train.trainer import run_training

    run_training(TrainConfig(modality="image", model="nano", epochs=1, batch_size=32, max_steps_per_epoch=2,
                             out=str(tmp_path / "run"), progress=False, device="cpu"))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["modality_options"]
    assert (saved["image_size"], saved["patch_size"], saved["norm_pix_loss"]) == (8, 2, False)
