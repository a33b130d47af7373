"""Lazy loading (video seeks to the clip, point clouds read per sample) and video / point-cloud
records from shards decoding to the same samples as the files they were packed from."""

import numpy as np
import pytest
import torch

from maskkit.lab.shard_writer import folder_samples, write_shards
from maskkit.train.build import build_dataset, build_modality

av = pytest.importorskip("av")


def write_clip(path, frames, gop=4):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        stream.codec_context.options = {"bf": "0"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def clip_frames(n=24, side=32, shift=0):
    t = np.arange(n)[:, None, None, None]
    y = np.arange(side)[None, :, None, None]
    return ((t * 9 + y * 5 + shift) % 256).astype(np.uint8).repeat(side, axis=2).repeat(3, axis=3)


def all_frames(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def test_video_read_seeks_to_the_clip_and_matches_full_decode(tmp_path):
    from maskkit.modalities.video.io import decode_frames, read_video

    path = tmp_path / "v.mp4"
    write_clip(path, clip_frames())
    reference = all_frames(path)
    for wanted in ([17, 19, 21], [0, 2, 4], [5, 6, 7, 8], [20, 22, 24, 26]):
        got = read_video(path, np.array(wanted))
        expected = reference[np.minimum(wanted, len(reference) - 1)]
        assert np.array_equal(got, expected), wanted
    with av.open(str(path)) as container:
        _, decoded = decode_frames(container, np.array([17, 19, 21]))
    assert decoded <= 8  # from the keyframe at 16, not the 22 frames from the start


def test_video_shards_decode_like_the_files(tmp_path):
    for c, name in enumerate(("up", "down")):
        (tmp_path / "clips" / name).mkdir(parents=True)
        for i in range(2):
            write_clip(tmp_path / "clips" / name / f"{i}.mp4", clip_frames(shift=40 * c + 7 * i))
    write_shards(folder_samples(tmp_path / "clips", [".mp4"]), tmp_path / "sh", max_count=3)
    mod = build_modality("video", {"image_size": 16, "num_frames": 4, "frame_stride": 2})
    files = build_dataset(mod, str(tmp_path / "clips"), train=False, seed=0)
    shards = build_dataset(mod, str(tmp_path / "sh" / "shard-{000000..000001}.tar"), train=False, seed=0)
    assert len(files) == len(shards) == 4 and shards.labels.tolist() == files.labels.tolist()
    for i in range(4):
        assert torch.equal(files[i][0], shards[i][0])


def test_point_clouds_are_read_per_sample_and_shards_match(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "pc" / name).mkdir(parents=True)
        for i in range(3):
            np.save(tmp_path / "pc" / name / f"{i}.npy", rng.normal(size=(300, 3)).astype(np.float32))
    mod = build_modality("pointcloud", {"num_points": 256, "num_groups": 8, "group_size": 16})
    files = build_dataset(mod, str(tmp_path / "pc"), train=False, seed=0)
    from maskkit.modalities.pointcloud.data import LazyClouds

    assert isinstance(files.clouds, LazyClouds)  # nothing held in memory: read when a sample is asked for
    write_shards(folder_samples(tmp_path / "pc", [".npy"]), tmp_path / "sh", max_count=4)
    shards = build_dataset(mod, str(tmp_path / "sh"), train=False, seed=0)
    assert len(shards) == 6 and shards.class_names == ["a", "b"]
    for i in range(6):
        assert torch.equal(files[i][0], shards[i][0]) and files[i][1] == shards[i][1]
