"""Audio modality: resampling, mel filterbank and log-mel against numpy references, WAV/FLAC loaders,
bad-file reports, the embedded data, augmentation determinism, the time-freq masker and pictures."""

from __future__ import annotations

import math
import wave

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from maskkit.config_utils import ConfigError, build_dataclass
from maskkit.maskers.base import MaskContext, num_visible
from maskkit.modalities.audio import (
    AudioConfig,
    AudioModality,
    LogMel,
    SpectrogramPatchTokenizer,
    mel_filterbank,
    resample,
)
from maskkit.modalities.audio.features import hz_to_mel, mel_to_hz
from maskkit.modalities.audio.io import pcm_to_float, read_audio, write_wav
from maskkit.modalities.audio.maskers import TimeFreqMasker
from maskkit.modalities.audio.sources import TONE_CLASSES
from maskkit.modality import DataError, VisualBatch
from maskkit.registry import get_masker, get_modality
from maskkit.tokens import TokenLayout


def tones_modality(**kw) -> AudioModality:
    opts = dict(num_frames=48, n_mels=32, patch_size=8, builtin_samples=24)
    opts.update(kw)
    return AudioModality(build_dataclass(AudioConfig, opts))


def sine(freq: float, sr: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


# --- features -----------------------------------------------------------------------------------
def numpy_mel_filterbank(n_mels, n_fft, sr, f_min, f_max):
    """Reference written independently: HTK mel, triangles in Hz, peak 1, explicit loops."""
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)  # = 2595 log10(1 + f/700)

    def hz(m):
        return 700.0 * (math.exp(m / 1127.0) - 1.0)

    lo, hi = mel(f_min), mel(f_max)
    points = [hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for k in range(n_fft // 2 + 1):
        f = k * sr / n_fft
        for m in range(n_mels):
            left, centre, right = points[m], points[m + 1], points[m + 2]
            if left < f <= centre:
                fb[k, m] = (f - left) / (centre - left)
            elif centre < f < right:
                fb[k, m] = (right - f) / (right - centre)
    return fb


@pytest.mark.parametrize("n_mels,n_fft,sr,fmin,fmax", [
    (64, 256, 8000, 0.0, 4000.0), (128, 1024, 16000, 20.0, 7600.0), (40, 512, 22050, 50.0, 8000.0)])
def test_mel_filterbank_matches_numpy_reference(n_mels, n_fft, sr, fmin, fmax):
    ours = mel_filterbank(n_mels, n_fft, sr, fmin, fmax).numpy()
    ref = numpy_mel_filterbank(n_mels, n_fft, sr, fmin, fmax)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5


def test_mel_scales():
    assert abs(float(hz_to_mel(1000.0)) - 1000.0) < 0.1  # HTK: 1 kHz ~ 1000 mel
    assert abs(float(hz_to_mel(1000.0, "slaney")) - 15.0) < 1e-9  # Slaney: 3 mel per 200 Hz below 1 kHz
    f = torch.tensor([0.0, 300.0, 1000.0, 3000.0, 7000.0])
    for scale in ("htk", "slaney"):
        assert torch.allclose(mel_to_hz(hz_to_mel(f, scale), scale), f.double(), atol=1e-6)
    slaney = mel_filterbank(20, 512, 16000, scale="slaney").numpy()
    areas = slaney.sum(0) * 16000 / 512  # equal area: height 2/(upper-lower) x half the base = 1
    assert np.allclose(areas, 1.0, rtol=0.05)


def test_logmel_matches_numpy_pipeline_and_finds_the_tone():
    sr = 8000
    lm = LogMel(sr, n_mels=40, win_ms=25, hop_ms=10)
    assert (lm.win_length, lm.hop_length, lm.n_fft) == (200, 80, 256)
    x = sine(1000.0, sr, 0.3) + 0.01 * np.random.default_rng(0).standard_normal(2400).astype(np.float32)
    ours = lm(torch.from_numpy(x)).numpy()
    n_frames = 1 + (len(x) - 200) // 80
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(200) / 199)  # symmetric Hann
    frames = np.stack([x[i * 80: i * 80 + 200] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, n=256, axis=1)) ** 2
    ref = np.log(power @ numpy_mel_filterbank(40, 256, sr, 0.0, sr / 2) + 1e-6)
    assert ours.shape == (n_frames, 40)
    assert np.abs(ours - ref).max() < 1e-3
    centres = mel_to_hz(torch.linspace(0, float(hz_to_mel(4000.0)), 42)[1:-1]).numpy()
    assert abs(centres[ours.mean(0).argmax()] - 1000.0) < 100.0
    assert lm(torch.from_numpy(x).expand(3, -1)).shape == (3, n_frames, 40)  # batched
    assert lm.num_samples(n_frames) <= len(x) < lm.num_samples(n_frames + 1)


def test_auto_n_fft_leaves_no_empty_filter():
    lm = LogMel(16000, n_mels=128)
    assert lm.n_fft >= 400 and bool((lm.filters.max(0).values > 0).all())


# --- resampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("orig,new", [(22050, 8000), (8000, 16000), (44100, 16000), (16000, 16000)])
def test_resample_keeps_in_band_tones(orig, new):
    x = sine(440.0, orig, 0.5) + sine(1800.0, orig, 0.5, amp=0.25)
    y = resample(x, orig, new).numpy()
    assert len(y) == math.ceil(len(x) * new / orig)
    t = np.arange(len(y)) / new
    ideal = 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.25 * np.sin(2 * np.pi * 1800.0 * t)
    edge = int(0.02 * new)
    assert np.abs(y - ideal)[edge:-edge].max() < 0.01


def test_resample_removes_aliases_and_matches_scipy():
    from scipy.signal import resample_poly

    alias = sine(6000.0, 22050, 0.5)  # above the 4 kHz Nyquist of 8 kHz
    y = resample(alias, 22050, 8000).numpy()
    assert np.sqrt(np.mean(y[100:-100] ** 2)) < 0.01
    x = sine(700.0, 22050, 0.5)
    ref = resample_poly(x, 160, 441)
    assert np.abs(resample(x, 22050, 8000).numpy() - ref)[100:-100].max() < 0.01
    batch = resample(np.stack([x, 2 * x]), 22050, 8000)
    assert batch.shape == (2, len(ref)) and torch.allclose(batch[1], 2 * batch[0], atol=1e-5)


# --- file loaders -------------------------------------------------------------------------------
@pytest.mark.parametrize("width,tol", [(1, 1 / 100), (2, 1e-4), (3, 1e-6), (4, 1e-6)])
def test_wav_bit_depths_round_trip(tmp_path, width, tol):
    x = sine(300.0, 8000, 0.1, amp=0.8)
    path = tmp_path / f"pcm{width}.wav"
    write_wav(path, x, 8000, sample_width=width)
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == width
    y, sr = read_audio(path)
    assert sr == 8000 and y.dtype == np.float32 and len(y) == len(x)
    assert np.abs(y - x).max() < tol


def test_float_wav_falls_back_to_soundfile(tmp_path):
    import soundfile

    x = sine(440.0, 16000, 0.1)
    soundfile.write(tmp_path / "float.wav", x, 16000, subtype="FLOAT")  # format 3: not for `wave`
    y, sr = read_audio(tmp_path / "float.wav")
    assert sr == 16000 and np.allclose(y, x, atol=1e-6)


def test_pcm_decoding_by_hand():
    raw24 = bytes([0xFF, 0xFF, 0x7F, 0x00, 0x00, 0x80])  # +max, -max
    assert np.allclose(pcm_to_float(raw24, 3, 1)[:, 0], [1 - 2**-23, -1.0])
    assert np.allclose(pcm_to_float(bytes([0, 128, 255]), 1, 1)[:, 0], [-1.0, 0.0, 127 / 128])


def test_stereo_mixdown_flac_and_resampling_in_dataset(tmp_path):
    import soundfile

    root = tmp_path / "sounds"
    (root / "low").mkdir(parents=True)
    (root / "high").mkdir()
    left, right = sine(250.0, 16000, 0.6), sine(250.0, 16000, 0.6, amp=0.1)
    write_wav(root / "low" / "a.wav", np.stack([left, right], axis=1), 16000)
    y, sr = read_audio(root / "low" / "a.wav")
    assert sr == 16000 and np.allclose(y, (left + right) / 2, atol=1e-3)
    soundfile.write(root / "high" / "b.flac", sine(2500.0, 22050, 0.4), 22050, subtype="PCM_16")
    m = tones_modality(num_frames=48)
    ds = m.build_dataset(str(root), train=False)
    assert len(ds) == 2 and ds.class_names == ["high", "low"] and list(ds.labels) == [0, 1]
    x, label = ds[0]  # high/b.flac, resampled 22.05 kHz -> 8 kHz
    assert x.shape == (1, 48, 32) and label == 0
    low = ds[1][0][0].mean(0)
    high = x[0].mean(0)
    assert int(high.argmax()) > int(low.argmax()) + 5  # energy lands in higher mel bins


def test_bad_audio_is_reported_or_skipped(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    write_wav(root / "good.wav", sine(440.0, 8000, 0.3), 8000)
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    (root / "broken.flac").write_bytes(b"not flac at all")
    with wave.open(str(root / "empty.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
    m = tones_modality()
    with pytest.raises(DataError) as err:
        m.build_dataset(str(root), train=False)
    assert "broken.flac" in str(err.value) and "not a readable audio file" in str(err.value)
    with pytest.warns(UserWarning, match="skipped 3"):
        ds = m.build_dataset(str(root), train=False, on_bad_file="skip")
    assert len(ds) == 1
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in ds.skipped}
    assert set(reasons) == {"corrupt.wav", "broken.flac", "empty.wav"}
    assert "holds no audio samples" in reasons["empty.wav"]
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio")
    with pytest.raises(DataError, match="nothing: no audio files"):
        m.build_dataset(str(empty), train=False)


def test_clip_npz_source(tmp_path):
    clips = [sine(300.0, 8000, 0.2), sine(900.0, 8000, 0.3)]
    audio = np.concatenate(clips)
    offsets = np.array([0, len(clips[0]), len(audio)])
    np.savez(tmp_path / "bank.npz", audio=(audio * 32767).astype(np.int16), offsets=offsets,
             sample_rate=np.int64(8000), labels=np.array([0, 1]), class_names=np.array(["low", "high"]))
    ds = tones_modality().build_dataset(str(tmp_path / "bank.npz"), train=False)
    assert len(ds) == 2 and ds.class_names == ["low", "high"]
    np.savez(tmp_path / "bad.npz", audio=audio)
    with pytest.raises(DataError, match="bad.npz.*sample_rate"):
        tones_modality().build_dataset(str(tmp_path / "bad.npz"), train=False)


# --- embedded data and augmentation -------------------------------------------------------------
def test_spoken_digits_embedded_set():
    m = AudioModality()
    ds = m.build_dataset(None, train=False)
    m.adapt_to_dataset(ds)
    assert len(ds) == 1000 and ds.num_classes == 10 and ds.class_names[7] == "seven"
    assert np.bincount(ds.labels).tolist() == [100] * 10
    bank = ds.wave_source
    assert bank.sample_rate == 8000 and len(set(bank.extras["speaker"].tolist())) == 100
    x, y = ds[123]
    assert x.shape == (1, 96, 64) and y == int(ds.labels[123])
    assert abs(m.config.norm_mean - ds.mean) < 1e-9 and m.config.norm_std > 0
    # normalisation: clean features have ~zero mean and unit spread over the set
    feats = torch.stack([ds[i][0] for i in range(0, 1000, 50)])
    assert abs(float(feats.mean())) < 0.3 and 0.6 < float(feats.std()) < 1.4
    # a second build reuses the recorded statistics
    assert m.build_dataset(None, train=True).mean == ds.mean


def test_augmentation_is_deterministic_and_changes_per_epoch():
    m = tones_modality()
    train = m.build_dataset("builtin:tones", train=True, seed=5)
    clean = m.build_dataset("builtin:tones", train=False)
    a, b = train[3][0], train[3][0]
    assert torch.equal(a, b)
    assert not torch.equal(a, clean[3][0])
    train.set_epoch(1)
    assert not torch.equal(train[3][0], a)
    other_seed = m.build_dataset("builtin:tones", train=True, seed=6)
    assert not torch.equal(other_seed[3][0], a)
    assert train.class_names == TONE_CLASSES and train.labels[:6].tolist() == list(range(6))


def test_options_presets_and_errors():
    o = AudioConfig()
    assert (o.sample_rate, o.n_mels, o.num_frames, o.patch) == (8000, 64, 96, (8, 8))
    big = AudioConfig(preset="audiomae")
    assert (big.sample_rate, big.n_mels, big.num_frames, big.patch) == (16000, 128, 1024, (16, 16))
    assert build_dataclass(AudioConfig, {"patch_size": "16x8", "num_frames": "96"}).patch == (16, 8)
    assert build_dataclass(AudioConfig, {"patch_size": [16, 8]}).patch_size == "16x8"
    assert build_dataclass(AudioConfig, {"patch_size": "16"}).patch == (16, 16)
    with pytest.raises(ConfigError, match="96 frames x 64 mels is not divisible by `patch_size` 10x8"):
        build_dataclass(AudioConfig, {"patch_size": "10x8"})
    with pytest.raises(ConfigError, match="`f_max`"):
        AudioConfig(f_max=5000.0)
    with pytest.raises(ConfigError, match="given together"):
        AudioConfig(norm_mean=1.0)
    with pytest.raises(DataError, match="builtin:spoken-digits, builtin:tones"):
        tones_modality().build_dataset("builtin:nope", train=False)
    assert get_modality("audio") is AudioModality


# --- tokenizer and masker -----------------------------------------------------------------------
@pytest.mark.parametrize("patch", [(8, 8), (16, 4), (4, 16)])
def test_spectrogram_tokenizer_round_trip(patch):
    tok = SpectrogramPatchTokenizer(96, 64, patch, embed_dim=16)
    x = torch.randn(2, 1, 96, 64)
    tb = tok.tokenize(x)
    assert tb.layout.axes == ("time", "freq") and tb.layout.grid == (96 // patch[0], 64 // patch[1])
    assert tb.targets.shape == (2, tb.layout.num_tokens, patch[0] * patch[1])
    assert torch.equal(tok.untokenize(tb.targets, tb), x)
    # token 1 is the second frequency patch of the first time step
    assert torch.equal(tb.targets[0, 1], x[0, 0, :patch[0], patch[1]:2 * patch[1]].reshape(-1))


def ctx_for(grid, ratio=0.8, batch=8, seed=0, axes=("time", "freq")) -> MaskContext:
    layout = TokenLayout.from_grid(grid, axes)
    return MaskContext(batch_size=batch, num_tokens=layout.num_tokens, mask_ratio=ratio, layout=layout,
                       positions=layout.grid_coordinates().float(),
                       generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))


def stripe_stats(mask: torch.Tensor, grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: masked tokens outside any fully hidden row/column, and the count of full stripes."""
    m = mask.view(mask.shape[0], *grid)
    full_t = m.all(dim=2)  # whole time columns
    full_f = m.all(dim=1)  # whole frequency rows
    covered = full_t.unsqueeze(2) | full_f.unsqueeze(1)
    return (m & ~covered).flatten(1).sum(1), full_t.sum(1) + full_f.sum(1)


@pytest.mark.parametrize("grid,ratio", [((64, 8), 0.8), ((12, 8), 0.8), ((16, 16), 0.5), ((7, 3), 0.6),
                                        ((3, 40), 0.3)])
def test_time_freq_exact_count_and_stripes(grid, ratio):
    ctx = ctx_for(grid, ratio)
    plan = TimeFreqMasker()(ctx)
    plan.validate(ctx.num_tokens)
    assert plan.n_keep == num_visible(ctx.num_tokens, ratio)
    loose, stripes = stripe_stats(plan.mask, grid)
    assert bool((loose <= max(grid)).all())  # only one partial stripe outside full rows/columns
    if plan.n_mask >= max(grid):  # room for at least one whole stripe of either kind
        assert bool((stripes >= 1).all())
    # random masking of the same count is not striped
    rand = get_masker("random")()(ctx_for(grid, ratio))
    loose_r, _ = stripe_stats(rand.mask, grid)
    assert float(loose.float().mean()) < float(loose_r.float().mean())
    assert float(plan.logs["stripe_fixup"]) < 1.0


def test_time_freq_options_and_axis_only_masking():
    grid = (12, 8)
    only_time = TimeFreqMasker(TimeFreqMasker.Config(time_prob=0.5, freq_prob=0.0))(ctx_for(grid, 0.75))
    m = only_time.mask.view(8, *grid)
    full_cols = m.all(dim=2).sum(1)
    assert bool((full_cols == 9).all())  # 72 hidden = 9 whole time columns, no frequency rows
    with pytest.raises(ValueError, match="both be 0"):
        TimeFreqMasker.Config(time_prob=0.0, freq_prob=0.0)
    a = TimeFreqMasker()(ctx_for(grid, seed=1))
    b = TimeFreqMasker()(ctx_for(grid, seed=1))
    assert torch.equal(a.mask, b.mask)
    with pytest.raises(ValueError, match="rank"):
        TimeFreqMasker()(ctx_for((2, 2, 2), axes=("t", "h", "w")))


# --- pictures -----------------------------------------------------------------------------------
def test_render_and_raw_features(tmp_path):
    m = tones_modality()
    ds = m.build_dataset("builtin:tones", train=False)
    m.adapt_to_dataset(ds)
    tok = m.build_tokenizer(16)
    x = torch.stack([ds[i][0] for i in range(4)])
    tokens = tok.tokenize(x)
    plan = TimeFreqMasker()(ctx_for(tokens.layout.grid, batch=4))
    hidden = plan.mask.unsqueeze(-1)
    pred = torch.randn_like(tokens.targets)
    batch = VisualBatch(inputs=x, tokens=tokens, plan=plan, pred_targets=pred,
                        masked_targets=torch.where(hidden, 0.0, tokens.targets),
                        pasted_targets=torch.where(hidden, pred, tokens.targets), tokenizer=tok,
                        extra_rows={"score": torch.rand(4, tokens.num_tokens)})
    img = Image.open(m.render(batch, tmp_path / "audio.png", title="time-freq"))
    assert img.format == "PNG" and img.width > 5 * 48 and img.height > 4 * 32
    assert m.raw_features(x).shape == (4, 12 * 8)


@settings(max_examples=40, deadline=None)
@given(n_t=st.integers(1, 20), n_f=st.integers(1, 12), batch=st.integers(1, 4), ratio=st.floats(0.05, 0.95),
       seed=st.integers(0, 10_000), tp=st.sampled_from([None, 0.0, 0.3, 1.0]))
def test_time_freq_exact_on_any_grid(n_t, n_f, batch, ratio, seed, tp):
    cfg = TimeFreqMasker.Config(time_prob=tp, freq_prob=None if tp != 0.0 else 0.5)
    ctx = ctx_for((n_t, n_f), ratio, batch=batch, seed=seed)
    plan = TimeFreqMasker(cfg)(ctx)
    plan.validate(ctx.num_tokens)
    assert plan.n_keep == num_visible(ctx.num_tokens, ratio)
