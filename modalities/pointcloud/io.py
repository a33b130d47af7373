"""Point-cloud and mesh file readers in numpy: .npy/.npz, .ply (ascii/binary), .off, .obj, .xyz/.txt.

Every reader returns a :class:`Geometry` (points, optional triangle faces); :func:`load_points`
turns it into an (M, 3) float32 cloud, sampling mesh surfaces by area. Problems raise
``DataError`` with the file path and the reason, so a scan can report or skip a bad file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskkit.modality import DataError

POINT_SUFFIXES = (".npy", ".npz", ".ply", ".off", ".obj", ".xyz", ".txt", ".pts")


@dataclass
class Geometry:
    points: np.ndarray  # (M, C>=3) float; columns beyond xyz are features (normals, colours...)
    faces: np.ndarray | None = None  # (F, 3) int triangles into ``points``


def _fail(path: Path, reason: str) -> DataError:
    return DataError(f"{path}: {reason}")


# --------------------------------------------------------------------------- numpy arrays
def _as_points(path: Path, arr: np.ndarray, what: str = "array") -> np.ndarray:
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise _fail(path, f"{what} has dtype {arr.dtype}, expected numbers")
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise _fail(path, f"{what} has shape {arr.shape}, expected (N, 3+) columns x y z [features]")
    return arr.astype(np.float64, copy=False)


def read_npy(path: Path) -> Geometry:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for corrupt files
        raise _fail(path, f"cannot read .npy ({exc})") from None
    return Geometry(_as_points(path, np.asarray(arr)))


NPZ_POINT_KEYS = ("points", "xyz", "pos", "pc", "data", "vertices", "arr_0")


def read_npz(path: Path) -> Geometry:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise _fail(path, f"cannot read .npz ({exc})") from None
    return _npz_geometry(path, arrays)


# --------------------------------------------------------------------------- text formats
def read_xyz(path: Path) -> Geometry:
    """ModelNet-style text: one point per line, comma or whitespace separated, '#' comments."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot read as text ({exc})") from None
    rows = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    rows = [r for r in rows if r]
    if not rows:
        raise _fail(path, "no points (empty file)")
    sep = "," if "," in rows[0] else None
    try:
        table = [[float(v) for v in (r.split(sep) if sep else r.split()) if v.strip()] for r in rows]
    except ValueError as exc:
        raise _fail(path, f"unparsable number ({exc})") from None
    widths = {len(r) for r in table}
    if len(widths) != 1:
        bad = next(i for i, r in enumerate(table) if len(r) != len(table[0]))
        raise _fail(path, f"rows have different column counts ({len(table[0])} on the first data line, "
                          f"{len(table[bad])} on data line {bad + 1})")
    return Geometry(_as_points(path, np.asarray(table, dtype=np.float64), "table"))


def _tokens(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot read as text ({exc})") from None
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines()]


def read_off(path: Path) -> Geometry:
    """OFF (and COFF/NOFF): header, counts, vertices, faces ``n i j k ...``. ModelNet's files
    sometimes glue the counts onto the header (``OFF490 518 0``); that is accepted."""
    lines = [ln for ln in _tokens(path) if ln]
    if not lines or not lines[0].upper().lstrip("CNST4").startswith("OFF"):
        raise _fail(path, "not an OFF file (first line must start with OFF)")
    head = lines[0]
    rest = head[head.upper().index("OFF") + 3:].split()
    body = lines[1:]
    if not rest:
        if not body:
            raise _fail(path, "OFF header has no vertex/face counts")
        rest, body = body[0].split(), body[1:]
    try:
        nv, nf = int(rest[0]), int(rest[1])
    except (ValueError, IndexError):
        raise _fail(path, f"bad OFF counts line {' '.join(rest)!r}") from None
    if len(body) < nv + nf:
        raise _fail(path, f"OFF promises {nv} vertices and {nf} faces but has {len(body)} data lines")
    try:
        vrows = [[float(v) for v in ln.split()[:3]] for ln in body[:nv]]
        face_rows = [[int(v) for v in ln.split()] for ln in body[nv:nv + nf]]
    except ValueError as exc:
        raise _fail(path, f"unparsable OFF data ({exc})") from None
    if any(len(r) != 3 for r in vrows):
        raise _fail(path, "OFF vertex lines need 3 coordinates each")
    verts = np.asarray(vrows, dtype=np.float64).reshape(-1, 3)
    faces = _triangulate(path, [r[1:1 + r[0]] for r in face_rows if r])
    return Geometry(verts, _check_faces(path, faces, nv) if faces is not None else None)


def read_obj(path: Path) -> Geometry:
    """Wavefront OBJ: ``v x y z`` vertices and ``f a/b/c ...`` polygons (1-based or negative indices)."""
    verts: list[list[float]] = []
    polys: list[list[int]] = []
    try:
        for ln in _tokens(path):
            if ln.startswith("v "):
                verts.append([float(v) for v in ln.split()[1:4]])
            elif ln.startswith("f "):
                idx = [int(tok.split("/")[0]) for tok in ln.split()[1:]]
                polys.append([i - 1 if i > 0 else len(verts) + i for i in idx])
    except ValueError as exc:
        raise _fail(path, f"unparsable OBJ line ({exc})") from None
    if any(len(v) != 3 for v in verts):
        raise _fail(path, "OBJ vertex lines need 3 coordinates each")
    pts = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    faces = _triangulate(path, polys)
    return Geometry(pts, _check_faces(path, faces, len(pts)) if faces is not None else None)


def _triangulate(path: Path, polys: list[list[int]]) -> np.ndarray | None:
    """Fan-triangulate polygons; None when there are none."""
    tris = [[p[0], p[i], p[i + 1]] for p in polys for i in range(1, len(p) - 1)]
    if polys and not tris:
        raise _fail(path, "faces need at least 3 vertices")
    return np.asarray(tris, dtype=np.int64) if tris else None


def _check_faces(path: Path, faces: np.ndarray, num_vertices: int) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise _fail(path, f"faces have shape {faces.shape} / dtype {faces.dtype}, expected (F, 3) integers")
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise _fail(path, f"face index out of range (vertices: {num_vertices})")
    return faces.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- PLY
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass
class _PlyElement:
    name: str
    count: int
    props: list[tuple[str, str, str | None]]  # (name, value type, list-count type or None)


def _parse_ply_header(path: Path, data: bytes) -> tuple[str, list[_PlyElement], int]:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise _fail(path, "not a PLY file (needs 'ply' ... 'end_header')")
    nl = data.find(b"\n", end)
    body_start = len(data) if nl < 0 else nl + 1
    fmt = ""
    elements: list[_PlyElement] = []
    for raw in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        parts = raw.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        try:
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                elements.append(_PlyElement(parts[1], int(parts[2]), []))
            elif parts[0] == "property":
                if not elements:
                    raise ValueError("property before element")
                if parts[1] == "list":
                    elements[-1].props.append((parts[4], _PLY_TYPES[parts[3]], _PLY_TYPES[parts[2]]))
                else:
                    elements[-1].props.append((parts[2], _PLY_TYPES[parts[1]], None))
        except (IndexError, KeyError, ValueError):
            raise _fail(path, f"bad PLY header line {raw.strip()!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise _fail(path, f"unsupported PLY format {fmt!r} (ascii, binary_little_endian, binary_big_endian)")
    return fmt, elements, body_start


def _ply_vertices(path: Path, elem: _PlyElement, table: np.ndarray | dict) -> np.ndarray:
    names = [p[0] for p in elem.props]
    if not all(a in names for a in "xyz"):
        raise _fail(path, f"PLY vertex element has properties {names}, expected x, y, z")
    cols = ["x", "y", "z"] + [n for n, _, lt in elem.props if n not in "xyz" and lt is None]
    return np.stack([np.asarray(table[c], dtype=np.float64) for c in cols], axis=1)


def read_ply(path: Path) -> Geometry:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc})") from None
    return ply_from_bytes(path, data)


def ply_from_bytes(path: Path, data: bytes) -> Geometry:
    """A PLY file's bytes -> geometry; ``path`` names it in errors."""
    fmt, elements, pos = _parse_ply_header(path, data)
    if not any(e.name == "vertex" for e in elements):
        raise _fail(path, "PLY has no vertex element")
    if fmt == "ascii":
        return _read_ply_ascii(path, data[pos:], elements)
    return _read_ply_binary(path, data, pos, elements, "<" if fmt == "binary_little_endian" else ">")


def _read_ply_ascii(path: Path, body: bytes, elements: list[_PlyElement]) -> Geometry:
    lines = [ln for ln in body.decode("ascii", errors="replace").splitlines() if ln.strip()]
    verts = faces = None
    at = 0
    for elem in elements:
        rows = lines[at:at + elem.count]
        at += elem.count
        if len(rows) < elem.count:
            raise _fail(path, f"PLY promises {elem.count} {elem.name} lines but the file ends early")
        if elem.name == "vertex":
            ncol = len(elem.props)
            try:
                arr = np.asarray([[float(v) for v in r.split()[:ncol]] for r in rows], dtype=np.float64)
            except ValueError as exc:
                raise _fail(path, f"unparsable PLY vertex line ({exc})") from None
            if arr.size and arr.shape[1] != ncol:
                raise _fail(path, f"PLY vertex lines need {ncol} values")
            arr = arr.reshape(-1, ncol)
            verts = _ply_vertices(path, elem, {p[0]: arr[:, i] for i, p in enumerate(elem.props)})
        elif elem.name == "face":
            try:
                polys = [_ascii_first_list(elem, r.split()) for r in rows]
            except (ValueError, IndexError) as exc:
                raise _fail(path, f"unparsable PLY face line ({exc})") from None
            faces = _triangulate(path, polys)
    assert verts is not None
    return Geometry(verts, _check_faces(path, faces, len(verts)) if faces is not None else None)


def _ascii_first_list(elem: _PlyElement, values: list[str]) -> list[int]:
    """The first list property of one ascii row (e.g. vertex_indices), skipping scalar properties."""
    at = 0
    for _, _, lt in elem.props:
        if lt is None:
            at += 1
            continue
        n = int(float(values[at]))
        if at + 1 + n > len(values):
            raise ValueError(f"list of {n} values on a row of {len(values)}")
        return [int(float(v)) for v in values[at + 1:at + 1 + n]]
    return []


def _read_ply_binary(path: Path, data: bytes, pos: int, elements: list[_PlyElement], order: str) -> Geometry:
    verts = faces = None
    for elem in elements:
        if all(lt is None for _, _, lt in elem.props):
            dtype = np.dtype([(n, order + t) for n, t, _ in elem.props])
            need = dtype.itemsize * elem.count
            if pos + need > len(data):
                raise _fail(path, f"PLY {elem.name} data is truncated")
            table = np.frombuffer(data, dtype=dtype, count=elem.count, offset=pos)
            pos += need
            if elem.name == "vertex":
                verts = _ply_vertices(path, elem, table)
            continue
        polys, pos = _read_ply_lists(path, data, pos, elem, order)
        if elem.name == "face":
            faces = _triangulate(path, polys)
    assert verts is not None
    return Geometry(verts, _check_faces(path, faces, len(verts)) if faces is not None else None)


def _read_ply_lists(path: Path, data: bytes, pos: int, elem: _PlyElement,
                    order: str) -> tuple[list[list[int]], int]:
    """Rows of an element with list properties; returns the first list property per row.

    Fast path: every row's lists have the length of the first row's (all triangles), read with one
    structured dtype; otherwise rows are walked one by one.
    """
    if elem.count == 0:
        return [], pos

    def fixed_dtype(lengths: list[int]) -> np.dtype:
        fields = []
        for (name, t, lt), n in zip(elem.props, lengths, strict=True):
            if lt is None:
                fields.append((name, order + t))
            else:
                fields.append((name + "_n", order + lt))
                fields.append((name, order + t, (n,)))
        return np.dtype(fields)

    lengths: list[int] = []
    probe = pos
    try:
        for _, t, lt in elem.props:
            if lt is None:
                probe += np.dtype(t).itemsize
                lengths.append(0)
            else:
                n = int(np.frombuffer(data, dtype=order + lt, count=1, offset=probe)[0])
                lengths.append(n)
                probe += np.dtype(lt).itemsize + n * np.dtype(t).itemsize
    except ValueError:
        raise _fail(path, f"PLY {elem.name} data is truncated") from None
    dtype = fixed_dtype(lengths)
    list_name = next(n for n, _, lt in elem.props if lt is not None)
    if pos + dtype.itemsize * elem.count <= len(data):
        table = np.frombuffer(data, dtype=dtype, count=elem.count, offset=pos)
        same = all((table[n + "_n"] == k).all() for (n, _, lt), k in zip(elem.props, lengths, strict=True)
                   if lt is not None)
        if same:
            return table[list_name].astype(np.int64).tolist(), pos + dtype.itemsize * elem.count
    rows: list[list[int]] = []
    try:
        for _ in range(elem.count):
            first: list[int] | None = None
            for _, t, lt in elem.props:
                if lt is None:
                    pos += np.dtype(t).itemsize
                    continue
                n = int(np.frombuffer(data, dtype=order + lt, count=1, offset=pos)[0])
                pos += np.dtype(lt).itemsize
                vals = np.frombuffer(data, dtype=order + t, count=n, offset=pos)
                pos += n * np.dtype(t).itemsize
                if first is None:
                    first = vals.astype(np.int64).tolist()
            rows.append(first or [])
    except ValueError:
        raise _fail(path, f"PLY {elem.name} data is truncated") from None
    return rows, pos


# --------------------------------------------------------------------------- sampling and dispatch
READERS = {".npy": read_npy, ".npz": read_npz, ".ply": read_ply, ".off": read_off, ".obj": read_obj,
           ".xyz": read_xyz, ".txt": read_xyz, ".pts": read_xyz}


def read_geometry(path: str | Path) -> Geometry:
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise _fail(path, f"unknown point-cloud format {path.suffix!r}; expected one of {', '.join(READERS)}")
    return reader(path)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform samples on a triangle mesh: (count, 3)."""
    tri = vertices[faces]  # (F, 3, 3)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = area.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("mesh has zero surface area")
    cdf = np.cumsum(area) / total
    pick = np.minimum(np.searchsorted(cdf, rng.random(count), side="right"), len(faces) - 1)
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    return a[pick] + u[:, None] * (b[pick] - a[pick]) + v[:, None] * (c[pick] - a[pick])


def file_seed(path: Path) -> int:
    """A stable per-file seed (mesh sampling and subsets do not depend on scan order)."""
    return zlib.crc32(str(path.name).encode())


def load_points(path: str | Path, max_points: int, seed: int | None = None) -> np.ndarray:
    """Read one file -> (M, 3) float32 xyz, M <= ``max_points``, validated.

    Meshes (faces present) are sampled on their surface with ``max_points`` points; larger clouds
    are reduced to a fixed random subset. Extra columns (normals, colours) are dropped.
    """
    path = Path(path)
    return points_of(path, read_geometry(path), max_points, seed)


def geometry_from_bytes(data: bytes, ext: str, name: str) -> Geometry:
    """A record's bytes (``npy``, ``npz`` or ``ply``) -> geometry; ``name`` is what errors call it."""
    path = Path(name)
    ext = ext.lower().lstrip(".")
    if ext == "ply":
        return ply_from_bytes(path, data)
    if ext in ("npy", "npz", "points"):
        import io

        try:
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # numpy raises several types for corrupt data
            raise _fail(path, f"cannot read {ext} ({exc})") from None
        if isinstance(loaded, np.ndarray):
            return Geometry(_as_points(path, loaded))
        with loaded as z:
            arrays = {k: z[k] for k in z.files}
        return _npz_geometry(path, arrays)
    raise _fail(path, f"unknown point-cloud record type {ext!r}; expected npy, npz or ply")


def points_of(path: Path, geo: Geometry, max_points: int, seed: int | None = None) -> np.ndarray:
    """Validated (M, 3) float32 xyz of a geometry (see ``load_points``)."""
    pts = geo.points
    if pts.shape[0] == 0:
        raise _fail(path, "no points (empty)")
    xyz = pts[:, :3]
    bad = ~np.isfinite(xyz).all(axis=1)
    if bad.any():
        raise _fail(path, f"{int(bad.sum())} of {len(xyz)} points have NaN or inf coordinates")
    rng = np.random.default_rng(file_seed(path) if seed is None else seed)
    if geo.faces is not None and len(geo.faces):
        try:
            return sample_surface(xyz, geo.faces, max_points, rng).astype(np.float32)
        except ValueError:
            pass  # degenerate mesh: fall back to its vertices
    if len(xyz) > max_points:
        xyz = xyz[rng.choice(len(xyz), max_points, replace=False)]
    return xyz.astype(np.float32)


__all__ = ["POINT_SUFFIXES", "Geometry", "geometry_from_bytes", "load_points", "ply_from_bytes", "points_of",
           "read_geometry", "sample_surface"]


def _npz_geometry(path: Path, arrays: dict[str, np.ndarray]) -> Geometry:
    """Points (the first of ``NPZ_POINT_KEYS`` present, else the first array) and optional faces of
    an .npz archive, from a file or a shard record."""
    if not arrays:
        raise _fail(path, "empty .npz archive")
    key = next((k for k in NPZ_POINT_KEYS if k in arrays), next(iter(arrays)))
    pts = _as_points(path, arrays[key], f"array {key!r}")
    faces = arrays.get("faces")
    return Geometry(pts, _check_faces(path, faces, len(pts)) if faces is not None else None)
