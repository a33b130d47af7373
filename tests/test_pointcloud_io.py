"""Point-cloud files (every format), corrupt-file reports, folders, datasets and the embedded shapes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from maskkit.modalities.pointcloud import PointCloudConfig, PointCloudModality
from maskkit.modalities.pointcloud.data import load_folder, resample
from maskkit.modalities.pointcloud.io import load_points, read_geometry
from maskkit.modalities.pointcloud.shapes import SHAPES, generate_shapes
from maskkit.modality import DataError

RNG = np.random.default_rng(0)
PTS = RNG.normal(size=(50, 3)).round(4)

# unit cube [-1, 1]^3 as 8 vertices and 6 quads (exercises polygon triangulation)
CUBE_V = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
CUBE_Q = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


def on_cube_surface(pts: np.ndarray) -> bool:
    return bool(np.allclose(np.abs(pts).max(axis=1), 1.0, atol=1e-6) and (np.abs(pts) <= 1 + 1e-6).all())


def write_ply_ascii(path: Path, verts: np.ndarray, faces: list[list[int]] | None = None) -> Path:
    lines = ["ply", "format ascii 1.0", "comment test", f"element vertex {len(verts)}",
             "property float x", "property float y", "property float z", "property uchar red"]
    if faces:
        lines += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    lines.append("end_header")
    lines += [f"{v[0]} {v[1]} {v[2]} 7" for v in verts]
    lines += [f"{len(f)} " + " ".join(map(str, f)) for f in faces or []]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ply_binary(path: Path, verts: np.ndarray, faces: list[list[int]] | None = None) -> Path:
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(verts)}",
              "property float x", "property float y", "property float z", "property float nx"]
    if faces:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices",
                   "property uchar flags"]
    header.append("end_header")
    body = b"".join(struct.pack("<4f", *v, 0.5) for v in verts)
    for f in faces or []:
        body += struct.pack(f"<B{len(f)}iB", len(f), *f, 1)
    path.write_bytes(("\n".join(header) + "\n").encode() + body)
    return path


def write_off(path: Path, verts: np.ndarray, faces: list[list[int]], glued: bool = False) -> Path:
    head = f"OFF{len(verts)} {len(faces)} 0\n" if glued else f"OFF\n# comment\n{len(verts)} {len(faces)} 0\n"
    body = "".join(f"{v[0]} {v[1]} {v[2]}\n" for v in verts) + "".join(
        f"{len(f)} {' '.join(map(str, f))}\n" for f in faces)
    path.write_text(head + body)
    return path


def write_obj(path: Path, verts: np.ndarray, faces: list[list[int]] | None) -> Path:
    text = "# test\no cube\n" + "".join(f"v {v[0]} {v[1]} {v[2]}\n" for v in verts)
    text += "vn 0 0 1\n" + "".join("f " + " ".join(f"{i + 1}//1" for i in f) + "\n" for f in faces or [])
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- formats
def test_point_formats_round_trip(tmp_path: Path) -> None:
    feats = np.concatenate([PTS, RNG.normal(size=(50, 3))], axis=1)
    np.save(tmp_path / "a.npy", feats)
    np.savez(tmp_path / "b.npz", points=PTS, label=np.array(3))
    np.savetxt(tmp_path / "c.txt", feats, delimiter=",", fmt="%.6f")  # ModelNet: x,y,z,nx,ny,nz
    np.savetxt(tmp_path / "d.xyz", PTS, fmt="%.6f")
    write_ply_ascii(tmp_path / "e.ply", PTS)
    write_ply_binary(tmp_path / "f.ply", PTS)
    write_obj(tmp_path / "g.obj", PTS, None)
    for name in ("a.npy", "b.npz", "c.txt", "d.xyz", "e.ply", "f.ply", "g.obj"):
        got = load_points(tmp_path / name, max_points=100)
        np.testing.assert_allclose(got, PTS, atol=1e-5, err_msg=name)
    # more points than the cap: a fixed random subset of the original points
    sub = load_points(tmp_path / "a.npy", max_points=20)
    assert sub.shape == (20, 3) and np.array_equal(sub, load_points(tmp_path / "a.npy", max_points=20))
    assert {tuple(p) for p in sub.round(4)} <= {tuple(p) for p in PTS.astype(np.float32).round(4)}


@pytest.mark.parametrize("writer", ["ply_ascii", "ply_binary", "off", "off_glued", "obj"])
def test_mesh_formats_sample_the_surface(tmp_path: Path, writer: str) -> None:
    path = {
        "ply_ascii": lambda: write_ply_ascii(tmp_path / "m.ply", CUBE_V, CUBE_Q),
        "ply_binary": lambda: write_ply_binary(tmp_path / "m.ply", CUBE_V, CUBE_Q),
        "off": lambda: write_off(tmp_path / "m.off", CUBE_V, CUBE_Q),
        "off_glued": lambda: write_off(tmp_path / "m.off", CUBE_V, CUBE_Q, glued=True),
        "obj": lambda: write_obj(tmp_path / "m.obj", CUBE_V, CUBE_Q),
    }[writer]()
    geo = read_geometry(path)
    assert geo.faces is not None and geo.faces.shape == (12, 3)
    pts = load_points(path, max_points=3000)
    assert pts.shape == (3000, 3) and on_cube_surface(pts)
    # area weighting: the six equal faces get about equal shares
    face = np.argmax(np.abs(pts), axis=1) * 2 + (pts[np.arange(3000), np.argmax(np.abs(pts), axis=1)] > 0)
    counts = np.bincount(face, minlength=6)
    assert counts.min() > 400 and counts.max() < 600
    np.testing.assert_array_equal(pts, load_points(path, max_points=3000))  # deterministic


def test_binary_ply_written_by_trimesh(tmp_path: Path) -> None:
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.box(extents=(2, 2, 2))
    (tmp_path / "box.ply").write_bytes(trimesh.exchange.ply.export_ply(mesh, encoding="binary"))
    pts = load_points(tmp_path / "box.ply", max_points=500)
    assert pts.shape == (500, 3) and on_cube_surface(pts)


def test_npz_mesh_and_big_endian_ply(tmp_path: Path) -> None:
    tris = np.array([[0, 1, 3], [0, 3, 2]] + [[q[0], q[i], q[i + 1]] for q in CUBE_Q[1:] for i in (1, 2)])
    np.savez(tmp_path / "m.npz", vertices=CUBE_V, faces=tris)
    assert on_cube_surface(load_points(tmp_path / "m.npz", max_points=300))
    header = "ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty double x\nproperty double y\n" \
             "property double z\nend_header\n"
    (tmp_path / "be.ply").write_bytes(header.encode() + struct.pack(">6d", 1, 2, 3, 4, 5, 6))
    np.testing.assert_allclose(load_points(tmp_path / "be.ply", 10), [[1, 2, 3], [4, 5, 6]])


def test_binary_ply_mixed_polygons(tmp_path: Path) -> None:
    faces = [[0, 1, 3], [0, 3, 2], *CUBE_Q[1:]]  # triangles and quads: the slow path
    pts = load_points(write_ply_binary(tmp_path / "m.ply", CUBE_V, faces), max_points=1000)
    assert on_cube_surface(pts)


# --------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("name,content,reason", [
    ("nan.npy", np.array([[0, 0, 0], [np.nan, 1, 2]]), "NaN or inf"),
    ("inf.txt", "0 0 0\n1 inf 2\n", "NaN or inf"),
    ("cols.npy", np.zeros((10, 2)), "expected (N, 3+)"),
    ("cols.xyz", "1 2\n3 4\n", "expected (N, 3+)"),
    ("ragged.txt", "1 2 3\n4 5\n", "different column counts"),
    ("empty.txt", "", "empty"),
    ("empty.npy", np.zeros((0, 3)), "empty"),
    ("junk.xyz", "1 2 three\n", "unparsable"),
    ("junk.npy", b"not numpy at all", "cannot read .npy"),
    ("bad.ply", "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\n2\n", "x, y, z"),
    ("short.ply", "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
                  "property float z\nend_header\n1 2 3\n", "ends early"),
    ("bad.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n", "out of range"),
    ("notoff.off", "hello\n", "not an OFF file"),
    ("x.stl", "solid", "unknown point-cloud format"),
])
def test_bad_files_name_path_and_reason(tmp_path: Path, name: str, content: object, reason: str) -> None:
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
        path = path if path.suffix == ".npy" else path.with_suffix(path.suffix + ".npy")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(str(content))
    with pytest.raises(DataError) as info:
        load_points(path, max_points=64)
    msg = str(info.value)
    assert str(path) in msg and reason in msg and "\n" not in msg


def test_folder_scan_errors_or_skips(tmp_path: Path) -> None:
    for cls in ("chair", "table"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            np.save(tmp_path / cls / f"{cls}_{i}.npy", RNG.normal(size=(40, 3)))
    np.save(tmp_path / "table" / "broken.npy", np.full((40, 3), np.nan))
    with pytest.raises(DataError, match=r"broken\.npy: .*NaN"):
        load_folder(tmp_path, train=True, num_points=32)
    ds = load_folder(tmp_path, train=True, num_points=32, on_bad_file="skip")
    assert len(ds) == 6 and ds.class_names == ["chair", "table"]
    assert sorted(ds.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(ds.skipped) == 1 and ds.skipped[0][0].endswith("broken.npy") and "NaN" in ds.skipped[0][1]
    assert "1 bad files skipped" in ds.describe()
    with pytest.raises(DataError, match="no such file"):
        load_folder(tmp_path / "missing", train=True, num_points=32)
    (tmp_path / "void").mkdir()
    with pytest.raises(DataError, match="no point-cloud files"):
        load_folder(tmp_path / "void", train=True, num_points=32)


def test_modelnet_layouts(tmp_path: Path) -> None:
    # ModelNet40 OFF layout: class/train/*.off and class/test/*.off
    off = tmp_path / "off"
    for cls in ("bed", "cup"):
        for split, n in (("train", 2), ("test", 1)):
            (off / cls / split).mkdir(parents=True)
            for i in range(n):
                write_off(off / cls / split / f"{cls}_{i}.off", CUBE_V, CUBE_Q)
    assert len(load_folder(off, train=True, num_points=64)) == 4
    test = load_folder(off, train=False, num_points=64)
    assert len(test) == 2 and test.class_names == ["bed", "cup"]
    # resampled layout: class/name.txt plus top-level *_train.txt / *_test.txt lists
    res = tmp_path / "resampled"
    for cls in ("bed", "cup"):
        (res / cls).mkdir(parents=True)
        for i in range(3):
            np.savetxt(res / cls / f"{cls}_{i:04d}.txt", RNG.normal(size=(30, 6)), delimiter=",")
    (res / "m_shape_names.txt").write_text("bed\ncup\n")
    (res / "m_train.txt").write_text("bed_0000\nbed_0001\ncup_0000\ncup_0001\n")
    (res / "m_test.txt").write_text("bed_0002\ncup_0002\n")
    assert len(load_folder(res, train=True, num_points=16)) == 4
    assert sorted(load_folder(res, train=False, num_points=16).labels.tolist()) == [0, 1]


# --------------------------------------------------------------------------- datasets
def test_resample_exact_count() -> None:
    rng = np.random.default_rng(0)
    small = np.arange(30, dtype=np.float32).reshape(10, 3)
    out = resample(small, 25, rng)
    assert out.shape == (25, 3) and {tuple(r) for r in small} == {tuple(r) for r in out}
    assert resample(small, 4, rng).shape == (4, 3)


def test_dataset_determinism_and_normalisation(tmp_path: Path) -> None:
    modality = PointCloudModality(PointCloudConfig(num_points=64, num_groups=8, group_size=8))
    train = modality.build_dataset("builtin:shapes", train=True, seed=3)
    test = modality.build_dataset(None, train=False, seed=3)
    assert len(train) == 720 and len(test) == 180 and train.num_classes == 9
    assert train.augment and not test.augment
    a, la = train[5]
    b, lb = train[5]
    assert torch.equal(a, b) and la == lb and a.shape == (64, 3) and a.dtype == torch.float32
    train.set_epoch(1)
    assert not torch.equal(train[5][0], a)  # new epoch, new subset and augmentation
    x, _ = test[0]
    test.set_epoch(4)
    assert torch.equal(test[0][0], x)  # evaluation samples do not change with the epoch
    norms = torch.stack([test[i][0] for i in range(20)]).norm(dim=-1)
    assert norms.max() <= 1.0 + 1e-5 and norms.amax(dim=1).min() > 0.5
    other = PointCloudModality(PointCloudConfig(num_points=64, num_groups=8, group_size=8))
    assert torch.equal(other.build_dataset(None, train=True, seed=3)[5][0], a)
    with pytest.raises(DataError, match="builtin:shapes"):
        modality.build_dataset("builtin:nope", train=True)


def test_generate_shapes_is_fast_deterministic_and_balanced() -> None:
    import time

    t = time.perf_counter()
    clouds, labels, names = generate_shapes(10, 256, seed=0)
    assert time.perf_counter() - t < 2.0
    assert clouds.shape == (90, 256, 3) and names == list(SHAPES) and np.bincount(labels).tolist() == [10] * 9
    assert np.isfinite(clouds).all()
    again, labels2, _ = generate_shapes(10, 256, seed=0)
    assert np.array_equal(again, clouds) and np.array_equal(labels, labels2)
    assert not np.array_equal(generate_shapes(10, 256, seed=1)[0], clouds)


def test_shapes_are_separable_by_raw_features() -> None:
    """The embedded classes differ in shape, so the raw-input baseline is far above chance."""
    from sklearn.neighbors import KNeighborsClassifier

    modality = PointCloudModality(PointCloudConfig(num_points=256, num_groups=8, group_size=8))
    train = modality.build_dataset(None, train=False, seed=0)
    xs = torch.stack([train[i][0] for i in range(len(train))])
    feats = modality.raw_features(xs).numpy()
    labels = train.labels
    clf = KNeighborsClassifier(5).fit(feats[:120], labels[:120])
    assert clf.score(feats[120:], labels[120:]) > 0.6  # chance is 0.11
