"""geom.io against hostile files: lying headers in every format, garbage and truncated bodies, array
files that are no point clouds, zip bombs. Each one is refused with a ValueError that names the file
and what is wrong, before anything of the size its header claims is allocated."""

import io
import pathlib
import re
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
import geom
import geom.io
from geom.io import read_array, read_mesh, read_points
from test_io import unit_cube, write_obj, write_off, write_pcd_binary, write_pcd_compressed, \
    write_ply_ascii, write_ply_binary

MiB = 1 << 20
CUBE = unit_cube()
V, F = np.asarray(CUBE.vertices), np.asarray(CUBE.faces)  # (8, 3), (12, 3)


def refused(path, pattern, *, peak=4 * MiB, read=read_points):
    """``read(path)`` raises ValueError naming the file, its format and ``pattern``, within ``peak`` bytes."""
    path = pathlib.Path(path)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            read(path)
        used = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message, head = str(info.value), f"obj: could not read file '{path}' as {path.suffix[1:].upper()}: "
    assert message.startswith(head) and re.search(pattern, message[len(head):]), message
    assert used < peak, f"{path.name}: {used / MiB:.1f} MiB allocated before the refusal"


def put(tmp_path, name, data: bytes) -> pathlib.Path:
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def npy_bytes(shape, descr="<f8", body=b"", version=1):
    """A .npy file whose header says ``shape`` and ``descr``, followed by ``body`` (of any length)."""
    header = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    size = "<H" if version == 1 else "<I"
    pad = -(len(header) + 1 + 8 + struct.calcsize(size)) % 64
    header += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(size, len(header)) + header + body


# ------------------------------------------------------------------------------------------------ PCD
PCD = b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH %d\nHEIGHT 1\nPOINTS %d\nDATA %s\n"


def test_pcd_the_four_ways_open3d_failed(tmp_path):
    """With open3d installed, these were read as zeros, made-up points, uninitialised memory and a 3 GB
    allocation; .pcd files now have one strict reader."""
    refused(put(tmp_path, "garbage.pcd", PCD % (2, 2, b"ascii") + b"foo bar baz\nqux quux corge\n"),
            r"point 0: expected numbers, got 'foo'")
    refused(put(tmp_path, "short.pcd", PCD % (5, 5, b"ascii") + b"1 2 3\n4 5 6\n"),
            r"the header declares 5 points \(one a line\), the body has 2 lines")
    refused(put(tmp_path, "short.pcd", PCD % (5, 5, b"binary") + np.ones((2, 3), "<f4").tobytes()),
            r"the header declares 5 points of 12 bytes \(60 B\), the body has 24 bytes")
    refused(put(tmp_path, "nodata.pcd", (PCD % (2, 2, b"")).replace(b"DATA \n", b"")), "the header has no DATA line")
    refused(put(tmp_path, "nodata.pcd", (PCD % (2, 2, b"")).replace(b"DATA \n", b"1 2 3\n4 5 6\n")),
            r"unexpected line '1 2 3' in the header \(it ends with a DATA line\)")
    huge = put(tmp_path, "huge.pcd", (PCD % (80_000_000, 80_000_000, b"binary"))[12:] + b"\0" * 16)
    assert len(huge.read_bytes()) == 115
    refused(huge, r"declares 80000000 points of 12 bytes \(916 MiB\), the body has 16 bytes", peak=MiB // 4)


def test_pcd_headers_must_agree_with_themselves(tmp_path):
    body = b"1 2 3\n4 5 6\n"
    cases = {
        b"SIZE 4 4": r"FIELDS \['x', 'y', 'z'\], SIZE \['4', '4'\].* do not match",
        b"COUNT 1 1 0": r"do not match: expected one size, type and count >= 1 per field",
        b"TYPE F F X": r"field 'z' has TYPE X and SIZE 4",
        b"SIZE 4 4 2": r"field 'z' has TYPE F and SIZE 2",
        b"FIELDS x y w": r"expected FIELDS with x y z",
        b"HEIGHT 2": r"POINTS \['2'\] is not WIDTH x HEIGHT = 2 x 2",
        b"WIDTH -2": r"expected a count of WIDTH, got '-2'",
        b"VIEWPORT 0": r"unexpected line 'VIEWPORT 0'",
        b"DATA zip": r"DATA 'zip' is unknown",
    }
    for change, pattern in cases.items():
        key = change.split()[0]
        text = re.sub(rb"(?m)^" + key + rb" .*$", change, PCD % (2, 2, b"ascii")) if key in PCD else \
            (PCD % (2, 2, b"ascii")).replace(b"POINTS", change + b"\nPOINTS")
        refused(put(tmp_path, "h.pcd", text + body), pattern)
    refused(put(tmp_path, "long.pcd", PCD % (2, 2, b"ascii") + body + b"7 8 9\n"), r"declares 2 points .* has 3 lines")
    refused(put(tmp_path, "wide.pcd", PCD % (2, 2, b"ascii") + b"1 2 3\n4 5 6 7\n"), r"point 1 has 4 values, expected")
    refused(put(tmp_path, "long.pcd", PCD % (2, 2, b"binary") + np.ones((2, 3), "<f4").tobytes() + b"\0"),
            r"declares 2 points of 12 bytes \(24 B\), the body has 25 bytes")


def test_pcd_compressed_bodies_are_bounded_and_checked(tmp_path):
    good = write_pcd_compressed(tmp_path / "good.pcd", np.ones((40, 3), np.float32)).read_bytes()
    head, sizes = good[:good.index(b"binary_compressed\n") + 18], good.index(b"binary_compressed\n") + 18
    packed, unpacked = struct.unpack_from("<II", good, sizes)
    data = good[sizes + 8:]
    hdr = (PCD % (80_000_000, 80_000_000, b"binary_compressed"))
    refused(put(tmp_path, "huge.pcd", hdr + struct.pack("<II", 4, 960_000_000) + b"abcd"),
            r"declares 80000000 points .* declares 960000000 bytes packed in 4", peak=MiB // 4)
    refused(put(tmp_path, "huge.pcd", hdr + struct.pack("<II", 4, 4) + b"abcd"), r"declares 4 bytes packed in 4")
    refused(put(tmp_path, "c.pcd", head + struct.pack("<II", packed, unpacked + 8) + data), "bytes packed in")
    refused(put(tmp_path, "c.pcd", head + struct.pack("<II", packed + 1, unpacked) + data), "bytes packed in")
    refused(put(tmp_path, "c.pcd", head + b"\0\0\0"), r"the compressed body has 3 bytes")
    # LZF streams of the right sizes that lie inside
    n_raw = unpacked
    back = bytes([0x20 | 0x1F, 0xFF])  # a 3-byte copy from 8192 bytes back, before the start
    run = bytes([31]) + b"\0" * 32  # a literal run of 32 bytes
    for stream, pattern in ((back + b"\0" * (len(data) - 2), "LZF: a back reference at byte 0 points before the start"),
                            (run[:-1], "LZF: a literal run of 32 bytes at byte 0 runs past the end"),
                            (run + bytes([0xE0]), "LZF: the data ends inside a back reference"),
                            (run, f"LZF: the data unpack to 32 bytes, the header declares {n_raw}")):
        refused(put(tmp_path, "lzf.pcd", head + struct.pack("<II", len(stream), n_raw) + stream), pattern)


# ------------------------------------------------------------------------------------------- .npy .npz
def test_npy_headers_are_checked_before_allocating(tmp_path):
    refused(put(tmp_path, "huge.npy", npy_bytes((2_000_000_000, 3), body=b"\0" * 48)),
            r"the file declares an array of shape \(2000000000, 3\) and dtype float64 \(44.7 GiB\), "
            r"but 48 bytes follow its header", peak=MiB // 4)
    refused(put(tmp_path, "huge2.npy", npy_bytes((2_000_000_000, 3), version=2)), "44.7 GiB", peak=MiB // 4)
    refused(put(tmp_path, "short.npy", npy_bytes((4, 3), body=b"\0" * 95)), r"\(4, 3\) .* but 95 bytes follow")
    refused(put(tmp_path, "long.npy", npy_bytes((4, 3), body=b"\0" * 97)), r"\(4, 3\) .* but 97 bytes follow")
    refused(put(tmp_path, "neg.npy", npy_bytes((-4, -3), body=b"\0" * 96)), r"declares the invalid shape \(-4, -3\)")
    refused(put(tmp_path, "magic.npy", b"\x93NUMPX\x01\x00" + b"\0" * 100), "magic string is not correct")
    refused(put(tmp_path, "v3.npy", npy_bytes((4, 3)).replace(b"NUMPY\x01", b"NUMPY\x03")), "format version 3.0")
    for name in ("huge.npy", "short.npy", "neg.npy"):  # the same checks for every kind
        refused(tmp_path / name, "declares", read=read_array)
        with pytest.raises(ValueError, match=re.escape(name)):
            geom.measure(tmp_path / name, kind="spd")


@pytest.mark.parametrize("array, holds", [
    (np.ones((4, 3), bool), r"booleans \(dtype bool\)"),
    (np.ones((4, 3), np.complex64), r"complex numbers \(dtype complex64\)"),
    (np.array(["a", "b"]), r"text \(dtype <U1\)"),
    (np.array([b"a", b"b"]), r"bytes \(dtype \|S1\)"),
    (np.zeros(4, [("x", "<f4"), ("y", "<f4")]), r"raw or structured records \(dtype \[\('x', '<f4'\), .*\]\)"),
    (np.zeros((4, 3), "M8[D]"), r"dates \(dtype datetime64\[D\]\)"),
    (np.zeros((4, 3), np.longdouble), r"a structured or extended-precision type \(dtype float128\)"),
])
def test_npy_dtypes_other_than_real_numbers_are_refused(tmp_path, array, holds):
    np.save(tmp_path / "a.npy", array)
    refused(tmp_path / "a.npy", rf"the file holds {holds}; expected real numbers")
    refused(tmp_path / "a.npy", rf"the file holds {holds}", read=read_array)
    np.savez(tmp_path / "a.npz", points=array)
    refused(tmp_path / "a.npz", rf"its member 'points.npy' holds {holds}")


def test_pickled_npy_is_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return pathlib.Path.touch, (marker,)

    np.save(tmp_path / "evil.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "evil.npz", points=np.array([Payload()], dtype=object))
    assert not marker.exists()
    for path in (tmp_path / "evil.npy", tmp_path / "evil.npz"):
        refused(path, r"holds Python objects \(dtype object\)")
        refused(path, r"holds Python objects", read=read_array)
    assert not marker.exists()


def test_npy_one_dimensional_is_points_on_the_line(tmp_path):
    x = np.array([3.0, -1.0, 2.5, 0.0])
    np.save(tmp_path / "line.npy", x)
    np.savez(tmp_path / "line.npz", points=x)
    for name in ("line.npy", "line.npz"):
        np.testing.assert_array_equal(read_points(tmp_path / name), x[:, None].astype(np.float32))
        from_file = geom.measure(tmp_path / name)
        assert from_file.support.shape == (1, 4, 1)
        assert geom.sliced_wasserstein(from_file, geom.measure(x), seed=0).item() == 0.0
    assert read_array(tmp_path / "line.npy").shape == (4,)  # other kinds get the array as stored


def zip_bytes(name: str, payload: bytes, method=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr(name, payload)
    return buffer.getvalue()


def patch_sizes(data: bytes, file_size: int) -> bytes:
    """The zip with its one member's uncompressed size set to ``file_size`` (local and central headers)."""
    data = bytearray(data)
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, file_size)
    struct.pack_into("<I", data, central + 24, file_size)
    return bytes(data)


def test_npz_members_are_bounded(tmp_path, monkeypatch):
    refused(put(tmp_path, "huge.npz", zip_bytes("points.npy", npy_bytes((2_000_000_000, 3), body=b"\0" * 48))),
            r"its member 'points.npy' declares an array of shape \(2000000000, 3\) .* but 48 bytes follow",
            peak=MiB // 4)
    deflated = zip_bytes("points.npy", npy_bytes((2000, 3), body=b"\0" * 48000), zipfile.ZIP_DEFLATED)
    refused(put(tmp_path, "inflate.npz", patch_sizes(deflated, 1 << 31)),
            r"its member 'points.npy' declares 2147483648 bytes inflated from \d+ compressed bytes, more than deflate")
    refused(put(tmp_path, "stored.npz", patch_sizes(zip_bytes("points.npy", npy_bytes((4, 3), body=b"\0" * 96)), 999)),
            r"stored uncompressed in 224 bytes but declares 999")
    refused(put(tmp_path, "lzma.npz", zip_bytes("points.npy", npy_bytes((4, 3), body=b"\0" * 96), zipfile.ZIP_LZMA)),
            r"uses zip compression method 14; expected stored or deflated")
    # a bomb: 32 MiB of zeros in a few KiB, more than the memory this process may use
    bomb = put(tmp_path, "bomb.npz", zip_bytes("points.npy", npy_bytes((1 << 22,), body=bytes(1 << 25)),
                                                zipfile.ZIP_DEFLATED))
    assert bomb.stat().st_size < 64 << 10
    monkeypatch.setattr(geom.io, "available_memory", lambda: 16 * MiB)
    refused(bomb, r"its member 'points.npy' declares an array of 32 MiB, more than the 16 MiB of memory available",
            peak=MiB)


def test_broken_zips_are_value_errors_naming_the_file(tmp_path):
    good = zip_bytes("points.npy", npy_bytes((4, 3), body=np.ones((4, 3)).tobytes()), zipfile.ZIP_DEFLATED)
    flipped = bytearray(good)
    flipped[good.index(b"PK\x01\x02") - 20] ^= 0xFF  # inside the deflated data: a bad stream or a bad CRC
    for name, data, pattern in (
        ("garbage.npz", b"PK\x03\x04 not really a zip", r"BadZipFile: File is not a zip file"),
        ("truncated.npz", good[:len(good) // 2], r"BadZipFile"),
        ("flipped.npz", bytes(flipped), r"(BadZipFile|error): .*"),
        ("text.npz", zip_bytes("readme.txt", b"hello"), r"EOF: reading magic string"),
    ):
        refused(put(tmp_path, name, data), pattern)
        refused(tmp_path / name, pattern, read=read_array)


# ------------------------------------------------------------------------------------------------ PLY
def ply_lines(path):
    return path.read_bytes().split(b"\n")


def test_ply_binary_counts_are_checked_against_the_bytes(tmp_path):
    data = write_ply_binary(tmp_path / "c.ply", V, F).read_bytes()
    cases = {
        "vertices.ply": (data.replace(b"vertex 8", b"vertex 2000000000"),
                         r"declares 2000000000 'vertex' records of 12 bytes \(22.4 GiB\), 252 bytes are left"),
        "faces.ply": (data.replace(b"face 12", b"face 2000000000"),
                      r"declares 2000000000 'face' records of at least 1 bytes \(1.86 GiB\), 156 bytes are left"),
        "fewer.ply": (data.replace(b"face 12", b"face 11"), r"13 bytes follow the last record the header declares"),
        "truncated.ply": (data[:-7], r"'face' record 11 runs past the end of the file \(truncated\?\)"),
        "list.ply": (data.replace(b"list uchar int", b"list uint int"), r"'face' record \d+ runs past the end"),
        "index.ply": (data[:-4] + struct.pack("<i", 8), r"face 11 refers to vertex 8, outside \[0, 8\)"),
        "negative.ply": (data[:-4] + struct.pack("<i", -1), r"face 11 refers to vertex -1, outside \[0, 8\)"),
        "two.ply": (data[:-13] + bytes([2]) + data[-12:-4], r"face 11 has 2 vertices, expected at least 3"),
    }
    for name, (bad, pattern) in cases.items():
        refused(put(tmp_path, name, bad), pattern, peak=MiB // 4)


def test_ply_headers_are_strict(tmp_path):
    data = write_ply_ascii(tmp_path / "c.ply", V, F).read_bytes()
    cases = {
        b"format ascii 1.0": (b"format ascii 2.0", r"unexpected header line 'format ascii 2.0'"),
        b"end_header": (b"end_headr", r"unexpected header line 'end_headr'"),
        b"property float x": (b"property float128 x", r"unexpected header line 'property float128 x'"),
        b"property float y": (b"property list float int y", r"unexpected header line"),
        b"element vertex 8": (b"element vertex -8", r"expected a count of 'vertex' records, got '-8'"),
        b"property float z": (b"property float w", r"no element 'vertex' with properties x, y and z"),
        b"vertex_indices": (b"corners", r"the element 'face' has no list property vertex_indices of integers"),
    }
    for old, (new, pattern) in cases.items():
        refused(put(tmp_path, "h.ply", data.replace(old, new, 1)), pattern)
    refused(put(tmp_path, "h.ply", data.split(b"end_header")[0]), r"the header has no 'end_header' line")
    refused(put(tmp_path, "h.ply", b"PLY\n" + data[4:]), r"it does not start with the line 'ply'")
    refused(put(tmp_path, "h.ply", data.replace(b"format ascii 1.0\n", b"")), r"the header has no line 'format")


def test_ply_ascii_body_must_match_its_header(tmp_path):
    data = write_ply_ascii(tmp_path / "c.ply", V, F).read_bytes()
    head, body = data.split(b"end_header\n")
    rows = body.split(b"\n")[:-1]  # 8 vertex lines, 12 face lines

    def ply(lines, header=head):
        return header + b"end_header\n" + b"\n".join(lines) + b"\n"

    cases = {
        "more.ply": (ply(rows + [b"3 0 1 2"]), r"declares 8 vertex and 12 face records \(20 lines\), the body has 21"),
        "fewer.ply": (ply(rows[:-1]), r"declares 8 vertex and 12 face records \(20 lines\), the body has 19 lines"),
        "huge.ply": (ply(rows, head.replace(b"vertex 8", b"vertex 2000000000")),
                     r"\(2000000012 lines\), the body has at most 21 lines"),
        "garbage.ply": (ply(rows[:2] + [b"0 foo 1"] + rows[3:]), r"vertex record 2: expected numbers, got 'foo'"),
        "narrow.ply": (ply(rows[:2] + [b"0 1"] + rows[3:]), r"vertex record 2 has 2 values, expected 3"),
        "index.ply": (ply(rows[:8] + [b"3 0 1 8"] + rows[9:]), r"face 0 refers to vertex 8, outside \[0, 8\)"),
        "float.ply": (ply(rows[:8] + [b"3 0 1 2.5"] + rows[9:]), r"face vertex_indices: expected integers, got '2.5'"),
        "count.ply": (ply(rows[:8] + [b"4 0 1 2"] + rows[9:]), r"face record 0 ends inside its list vertex_indices"),
        "extra.ply": (ply(rows[:8] + [b"3 0 1 2 5"] + rows[9:]), r"face record 0 has 5 values, its properties take 4"),
    }
    for name, (bad, pattern) in cases.items():
        refused(put(tmp_path, name, bad), pattern)


# ------------------------------------------------------------------------------------------------ OFF
def test_off_counts_must_agree_with_the_body(tmp_path):
    good = write_off(tmp_path / "good.off", V, F)
    text = good.read_text()
    np.testing.assert_array_equal(read_mesh(good)[1], F)
    merged = put(tmp_path, "merged.off", text.replace("OFF\n8 12 0", "OFF8 12 0").encode())  # ModelNet's variant
    np.testing.assert_array_equal(read_mesh(merged)[0], read_mesh(good)[0])
    cases = {
        "9 12 0": r"declares 9 vertices and 12 faces \(21 lines\), the body has 20 lines",
        "8 11 0": r"declares 8 vertices and 11 faces \(19 lines\), the body has 20 lines",
        "9 11 0": r"vertex 8 has 4 values, expected 3: '3 ",  # a face line read as a vertex
        "7 13 0": r"face 0 has 1 vertices, expected at least 3",  # the vertex line '1 1 1' read as a face
        "2000000000 2000000000 0": r"declares 2000000000 vertices and 2000000000 faces \(4000000000 lines\)",
        "8 -12 0": r"expected a count of faces, got b'-12'",
        "8 12": r"expected the counts line 'V F E' after 'OFF', got '8 12'",
    }
    for counts, pattern in cases.items():
        refused(put(tmp_path, "bad.off", text.replace("8 12 0", counts, 1).encode()), pattern, peak=MiB)
    lines = text.splitlines()
    for k, (face, pattern) in enumerate((("3 0 1 8", r"face 0 refers to vertex 8, outside \[0, 8\)"),
                                         ("3 0 1 x", r"face indices: expected integers, got 'x'"),
                                         ("2 0 1", r"face 0 has 2 vertices, expected at least 3"),
                                         ("4 0 1 2", r"face 0 is not 'n i_1 .. i_n'"))):
        refused(put(tmp_path, f"face{k}.off", "\n".join(lines[:10] + [face] + lines[11:]).encode()), pattern)
    refused(put(tmp_path, "vertex.off", "\n".join(lines[:2] + ["0 0 zero"] + lines[3:]).encode()),
            r"vertex 0: expected numbers, got 'zero'")
    refused(put(tmp_path, "header.off", text.replace("OFF", "OFX", 1).encode()), r"expected the header line 'OFF'")


# ------------------------------------------------------------------------------------------------ STL
def test_stl_sizes_and_grammar(tmp_path):
    CUBE.export(tmp_path / "b.stl")
    CUBE.export(tmp_path / "a.stl", file_type="stl_ascii")
    binary, ascii_ = (tmp_path / "b.stl").read_bytes(), (tmp_path / "a.stl").read_bytes()
    assert len(binary) == 84 + 50 * 12
    cases = {
        "huge.stl": (binary[:80] + struct.pack("<I", 2_000_000_000) + binary[84:],
                     r"a binary STL of 2000000000 triangles has 84 \+ 50 x 2000000000 = 100000000084 bytes, "
                     r"the file has 684"),
        "truncated.stl": (binary[:-10], r"a binary STL of 12 triangles has .* = 684 bytes, the file has 674"),
        "longer.stl": (binary + b"\0", r"the file has 685"),
        "tiny.stl": (binary[:50], r"a binary STL has at least 84 bytes, the file has 50"),
        "atruncated.stl": (ascii_[:-40], r"a solid has no 'endsolid' line \(truncated\?\)"),
        "aword.stl": (ascii_.replace(b"endloop", b"endlop", 1), r"facet 0: expected 'endloop', got 'endlop'"),
        "anumber.stl": (re.sub(rb"vertex +\S+", b"vertex nope", ascii_, count=1), r"expected numbers, got 'nope'"),
        "amissing.stl": (re.sub(rb"vertex +\S+", b"vertex", ascii_, count=1), r"not whole facets of 21"),
        "aempty.stl": (b"solid empty\nendsolid empty\n", r"it holds no triangles"),
        "atail.stl": (ascii_ + b"garbage\n", r"expected 'solid name', got 'garbage'"),
    }
    for name, (bad, pattern) in cases.items():
        refused(put(tmp_path, name, bad), pattern, peak=MiB)


# ------------------------------------------------------------------------------------------- OBJ, .xyz
def test_obj_indices_and_numbers(tmp_path):
    text = write_obj(tmp_path / "good.obj", V, F).read_text()
    np.testing.assert_array_equal(read_mesh(tmp_path / "good.obj")[1], F)
    cases = {
        "zero.obj": (text + "f 0 1 2\n", r"face 12 has the vertex index 0 \(OBJ indices start at 1\)"),
        "far.obj": (text + "f 1 2 9\n", r"face 12 refers to vertex 8, outside \[0, 8\)"),
        "back.obj": (text + "f -1 -2 -9\n", r"face 12 refers to vertex -1, outside \[0, 8\)"),
        "huge.obj": (text + "f 1 2 99999999999999999999\n", r"face indices: expected integers, got '9{20}'"),
        "garbage.obj": (text.replace("v ", "v x", 1), r"vertex 0: expected numbers, got 'x0'"),
        "short.obj": (text + "v 1 2\n", r"vertex 8 has fewer than 3 coordinates"),
        "line.obj": (text + "f 1 2\n", r"face 12 has fewer than 3 vertices"),
        "novertex.obj": ("# nothing\nf 1 2 3\n", r"it holds no vertex line"),
    }
    for name, (bad, pattern) in cases.items():
        refused(put(tmp_path, name, bad.encode()), pattern)
    negative = read_mesh(put(tmp_path, "relative.obj", (text + "f -8 -7 -6\n").encode()))[1]
    np.testing.assert_array_equal(negative[-1], [0, 1, 2])  # counted back from the last vertex


def test_xyz_garbage_lines_are_errors(tmp_path):
    for body, pattern in ((b"1 2 3\n4 5 6 foo\n", r"point 1 has 4 values, expected 3: '4 5 6 foo'"),
                          (b"1 2 3 0\n4 5 6 foo\n", r"point 1: expected numbers, got 'foo'"),
                          (b"1 2 3\n4 5\n", r"point 1 has 2 values, expected 3"),
                          (b"1 2\n", r"point 0 has 2 values, expected at least 3"),
                          (b"1,2,3\n", r"point 0 has 1 values, expected at least 3")):
        refused(put(tmp_path, "g.xyz", body), pattern)
    np.testing.assert_array_equal(read_points(put(tmp_path, "ok.xyz", b"# x y z w\n1 2 3 9\n4 5 6 9 # a point\n")),
                                  [[1, 2, 3], [4, 5, 6]])


def test_coordinates_beyond_float32_are_errors_not_inf(tmp_path):
    np.save(tmp_path / "big.npy", np.array([[0.0, 0.0, 0.0], [1e300, 0.0, 0.0]]))
    (tmp_path / "big.xyz").write_text("0 0 0\n0 -1e39 0\n")
    for name in ("big.npy", "big.xyz"):
        with pytest.raises(ValueError, match=rf"^obj: file '.*{name}' has a coordinate beyond the float32 range "
                                             r"at point 1"):
            read_points(tmp_path / name)


# ------------------------------------------------------------------------------------- every reader
@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("std::bad_alloc"), np.linalg.LinAlgError("Singular"),
                                   struct.error("unpack"), OverflowError("big"), KeyError("x")])
def test_any_parser_failure_is_a_value_error_naming_the_file(tmp_path, monkeypatch, error):
    path = write_ply_binary(tmp_path / "c.ply", V, F)

    def fail(self):
        raise error

    monkeypatch.setattr(pathlib.Path, "read_bytes", fail)
    with pytest.raises(ValueError, match=rf"^obj: could not read file '.*c\.ply' as PLY: {type(error).__name__}"):
        read_points(path)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_interrupts_pass_through(tmp_path, monkeypatch, stop):
    path = write_pcd_binary(tmp_path / "c.pcd", V.astype(np.float32))

    def interrupted(self):
        raise stop()

    monkeypatch.setattr(pathlib.Path, "read_bytes", interrupted)
    with pytest.raises(stop):
        read_points(path)
