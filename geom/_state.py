"""State without pickle: trees of tensors and plain types, stored as one ``.npz`` of arrays plus JSON.

A *tree* is ``None``, a bool, int, float or str, a :class:`torch.Tensor` or :class:`numpy.ndarray`,
or a list, tuple or dict of trees (dict keys: str, int or bool). :func:`flatten` splits a tree into
its arrays and a JSON skeleton that says where each array goes; :func:`unflatten` puts them back
(tensors come back on the CPU, in their dtype; one tensor met twice comes back as one tensor).
Skeleton grammar: plain JSON values stand for themselves and lists for lists; every other node is an
object with one tag: ``{"tensor": key}`` (plus ``"requires_grad": true``), ``{"array": key}``,
``{"tuple": [...]}``, ``{"dict": {...}}`` (string keys), ``{"items": [[key, value], ...]}`` (other
keys), ``{"float": "nan" | "inf" | "-inf"}``.

:func:`save_npz` writes arrays and a JSON document into one ``.npz`` (atomically: a temporary file,
then a rename); :func:`load_npz` reads it back through :func:`read_npz`, which reads with
``allow_pickle=False`` after checking every member's header against the bytes present, so a corrupt,
truncated or lying file is a ValueError naming it, never an allocation of what its header claims.

:func:`scheme_state` / :func:`load_scheme_state` are the defaults behind
:meth:`geom.SlicingScheme.state_dict` / :meth:`~geom.SlicingScheme.load_state_dict`: the state is
every attribute of the instance; nested schemes (a ``base``), ``torch.nn.Module`` and optimizer
attributes are stored through their own ``state_dict``, generators through their state, other
objects through their attributes, each as ``{"__kind__": ..., "class": ..., "state": ...}``. Loading
restores them onto a fresh instance built with the same options: objects are never created from the
file (a class name is compared, never imported), so an attribute the fresh instance lacks (say, a
network built lazily in ``fit``) needs an override of ``load_state_dict`` that builds it first.
"""

from __future__ import annotations

import json
import math
import numbers
import pathlib
import types
import zipfile
import zlib

import numpy as np
import torch

from ._files import atomic_write

__all__ = ["flatten", "load_npz", "load_scheme_state", "read_npz", "save_npz", "scheme_state", "unflatten"]

MAX_DEPTH = 64
"""Deepest nesting of a tree (a deeper skeleton is refused, as a file that tries to exhaust the stack)."""
META = "__meta__"
"""Name of the ``.npz`` member that holds the JSON document."""
_DTYPES = {np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16,
                                 np.float32, np.float64, np.complex64, np.complex128)}
_DEFLATE_RATIO = 1100
"""Deflate expands at most about 1032-fold: a compressed member claiming more is lying."""
_TAGS = ("tensor", "array", "tuple", "dict", "items", "float")
_KINDS = ("scheme", "module", "optimizer", "generator", "object")


# ---------------------------------------------------------------------------------------------- trees


def flatten(tree, where: str = "state") -> tuple[dict[str, np.ndarray], object]:
    """``tree -> (arrays, skeleton)``: the arrays by key (``"0"``, ``"1"``, ...) and a JSON-able skeleton.

    ValueError / TypeError naming the node (``where`` and its path) for anything that is not a tree.

    >>> arrays, skeleton = flatten({"x": torch.zeros(2), "n": (1, float("inf"))})
    >>> skeleton
    {'dict': {'x': {'tensor': '0'}, 'n': {'tuple': [1, {'float': 'inf'}]}}}
    >>> unflatten(arrays, skeleton)["n"]
    (1, inf)
    """
    arrays: dict[str, np.ndarray] = {}
    seen: dict[int, str] = {}  # id(tensor or array) -> key: one object, one array

    def array_key(obj, data: np.ndarray) -> str:
        if id(obj) not in seen:
            seen[id(obj)] = str(len(arrays))
            arrays[seen[id(obj)]] = data
        return seen[id(obj)]

    def walk(node, path: str, depth: int):
        if depth > MAX_DEPTH:
            raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels (a cycle?)")
        if node is None or isinstance(node, (bool, str)):
            return node
        if isinstance(node, numbers.Integral) and not isinstance(node, np.bool_):
            return int(node)
        if isinstance(node, np.bool_):
            return bool(node)
        if isinstance(node, numbers.Real) and not isinstance(node, torch.Tensor):
            value = float(node)
            return value if math.isfinite(value) else {"float": repr(value)}
        if isinstance(node, torch.Tensor):
            try:
                data = node.detach().cpu().numpy()
            except TypeError:  # bfloat16 and other dtypes numpy lacks
                data = None
            if data is None or data.dtype not in _DTYPES:
                raise ValueError(f"{path}: tensors of dtype {node.dtype} cannot be stored; convert to float32")
            out = {"tensor": array_key(node, np.asarray(data, order="C"))}
            return out | ({"requires_grad": True} if node.requires_grad else {})
        if isinstance(node, np.ndarray):
            if node.dtype not in _DTYPES:
                raise ValueError(f"{path}: arrays of dtype {node.dtype} cannot be stored")
            return {"array": array_key(node, np.asarray(node, order="C"))}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        if isinstance(node, tuple):
            return {"tuple": [walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]}
        if isinstance(node, dict):
            if all(isinstance(k, str) for k in node):
                return {"dict": {k: walk(v, f"{path}[{k!r}]", depth + 1) for k, v in node.items()}}
            bad = [k for k in node if not isinstance(k, (str, int))]
            if bad:
                raise TypeError(f"{path}: dict keys must be str or int, got {type(bad[0]).__name__} {bad[0]!r}")
            return {"items": [[walk(k, path, depth + 1), walk(v, f"{path}[{k!r}]", depth + 1)]
                              for k, v in node.items()]}
        raise TypeError(f"{path}: expected tensors, arrays and plain types (None, bool, int, float, str, list, "
                        f"tuple, dict), got {type(node).__module__}.{type(node).__qualname__}")

    return arrays, walk(tree, where, 0)


def unflatten(arrays: dict[str, np.ndarray], skeleton, where: str = "state"):
    """The tree that :func:`flatten` split into ``arrays`` and ``skeleton``; ValueError naming the node
    for a skeleton that is not one (unknown tags, missing or unused arrays, nesting too deep)."""
    made: dict[str, object] = {}

    def take(key, path: str, as_tensor: bool):
        if not isinstance(key, str) or key not in arrays:
            raise ValueError(f"{path}: refers to array {key!r}, which is not in the file")
        if key not in made:
            data = arrays[key]
            if data.dtype not in _DTYPES:
                raise ValueError(f"{path}: array of dtype {data.dtype}; expected a numeric or bool dtype")
            made[key] = torch.from_numpy(np.array(data)) if as_tensor else np.array(data)
        if isinstance(made[key], torch.Tensor) != as_tensor:
            raise ValueError(f"{path}: array {key!r} is used both as a tensor and as an array")
        return made[key]

    def walk(node, path: str, depth: int):
        if depth > MAX_DEPTH:
            raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        if node is None or isinstance(node, (bool, int, str)):
            return node
        if isinstance(node, float):
            if not math.isfinite(node):
                raise ValueError(f"{path}: a non-finite number must be written as {{\"float\": ...}}")
            return node
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        if not isinstance(node, dict) or not node or next(iter(node)) not in _TAGS:
            raise ValueError(f"{path}: expected a skeleton node (a JSON value, a list or an object tagged "
                             f"{', '.join(_TAGS)}), got {str(node)[:60]}")
        tag = next(iter(node))
        value = node[tag]
        extra = set(node) - {tag} - ({"requires_grad"} if tag == "tensor" else set())
        if extra:
            raise ValueError(f"{path}: unexpected keys {sorted(extra)} in a {tag!r} node")
        if tag == "tensor":
            t = take(value, path, True)
            grad = node.get("requires_grad", False)
            if grad is not False and grad is not True:
                raise ValueError(f"{path}: requires_grad must be true or false, got {grad!r}")
            if grad and not t.requires_grad:
                if not t.is_floating_point() and not t.is_complex():
                    raise ValueError(f"{path}: only floating tensors can require gradients, got {t.dtype}")
                t.requires_grad_(True)
            return t
        if tag == "array":
            return take(value, path, False)
        if tag == "float":
            if value not in ("nan", "inf", "-inf"):
                raise ValueError(f"{path}: expected 'nan', 'inf' or '-inf', got {value!r}")
            return float(value)
        if tag == "tuple":
            if not isinstance(value, list):
                raise ValueError(f"{path}: a tuple node holds a list, got {type(value).__name__}")
            return tuple(walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        if tag == "dict":
            if not isinstance(value, dict):
                raise ValueError(f"{path}: a dict node holds an object, got {type(value).__name__}")
            return {k: walk(v, f"{path}[{k!r}]", depth + 1) for k, v in value.items()}
        if not isinstance(value, list) or not all(isinstance(kv, list) and len(kv) == 2 for kv in value):
            raise ValueError(f"{path}: an items node holds [key, value] pairs")
        out = {}
        for k, v in value:
            if isinstance(k, bool) or not isinstance(k, (int, str)):
                raise ValueError(f"{path}: dict keys must be str or int, got {k!r}")
            out[k] = walk(v, f"{path}[{k!r}]", depth + 1)
        return out

    tree = walk(skeleton, where, 0)
    unused = sorted(set(arrays) - set(made))
    if unused:
        raise ValueError(f"{where}: the file holds arrays that nothing refers to: {', '.join(unused[:5])}")
    return tree


# ---------------------------------------------------------------------------------------------- files


def save_npz(file, arrays: dict[str, np.ndarray], meta) -> None:
    """Write ``arrays`` and the JSON document ``meta`` into one ``.npz``: ``file`` is a binary file
    handle, or a path, written atomically (:func:`geom._files.atomic_write`)."""
    text = json.dumps(meta, allow_nan=False, separators=(",", ":"))
    blob = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if META in arrays:
        raise ValueError(f"arrays: the name {META!r} is reserved for the JSON document")
    if hasattr(file, "write"):
        np.savez(file, **arrays, **{META: blob})
        return
    with atomic_write(file, "wb") as fh:
        np.savez(fh, **arrays, **{META: blob})


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> None:
    """Check one ``.npy`` member's header (shape and dtype) against the bytes it holds."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"member {info.filename!r} uses zip compression {info.compress_type}; "
                         f"expected none or deflate")
    stored = info.compress_type == zipfile.ZIP_STORED
    if info.header_offset + info.compress_size > size or (stored and info.file_size != info.compress_size) \
            or info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
        raise ValueError(f"member {info.filename!r} claims {info.file_size} bytes, more than the file can hold")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise ValueError(f"member {info.filename!r} has .npy format {version}; expected 1.0 or 2.0")
        shape, fortran, dtype = read[version](fh)
        header = fh.tell()
    if dtype not in _DTYPES or fortran:
        raise ValueError(f"member {info.filename!r} has dtype {dtype}{' (Fortran order)' if fortran else ''}; "
                         f"expected a plain numeric or bool array")
    need = header + math.prod(shape) * dtype.itemsize
    if need != info.file_size:
        raise ValueError(f"member {info.filename!r} claims shape {shape} of {dtype} ({need - header} bytes), "
                         f"but holds {info.file_size - header} bytes")


def read_npz(path, names=None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (those in ``names``, default all), by name, read with
    ``allow_pickle=False`` after checking each one's header against the bytes present (nothing larger
    than the file can hold is allocated).

    ValueError naming ``path`` and what is wrong: empty, not a zip archive, truncated or corrupt
    (the zip checksums), members that are not plain numeric ``.npy`` arrays or claim more than they hold.
    """
    path = pathlib.Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise ValueError("it is empty (0 bytes)")
        arrays = {}
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len({i.filename for i in infos}) != len(infos):
                raise ValueError("it holds two members of one name")
            for info in infos:
                if names is not None and info.filename[:-4] not in names:
                    continue
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not an .npy array")
                _member_header(zf, info, size)
                with zf.open(info) as fh:
                    arrays[info.filename[:-4]] = np.lib.format.read_array(fh, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"'{path}': cannot be read, it is truncated or corrupt "
                         f"({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        raise ValueError(f"'{path}': {exc}") from None
    except OSError as exc:
        raise OSError(f"'{path}': cannot be read ({exc.strerror or exc})") from None
    return arrays


def load_npz(path, *, meta_only: bool = False) -> tuple[dict[str, np.ndarray], object]:
    """``(arrays, meta)`` of a file :func:`save_npz` wrote (see :func:`read_npz` for the checks); a
    ValueError naming ``path`` when it has no JSON document or one that does not parse. With
    ``meta_only`` only the JSON document is read (the arrays come back empty)."""
    arrays = read_npz(path, {META} if meta_only else None)
    blob = arrays.pop(META, None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise ValueError(f"'{path}': it has no JSON document (a {META!r} byte string): not a file geom wrote")
    try:
        return arrays, json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"'{path}': its JSON document does not parse ({exc})") from None
    except RecursionError:
        raise ValueError(f"'{path}': its JSON document is nested too deeply") from None


# ---------------------------------------------------------------------------------------------- scheme state


def _class_name(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _is_object(value) -> bool:
    """Stored as an object record (not a tensor or plain value)."""
    return not isinstance(value, (torch.Tensor, np.ndarray, list, tuple, dict, bool, str, numbers.Number))


def _refused(value) -> bool:
    return isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType,
                              type)) or not hasattr(value, "__dict__")


def _is_scheme(value) -> bool:
    """A :class:`geom.SlicingScheme` (recognised by its class tree: this leaf module imports no contract)."""
    return any(c.__name__ == "SlicingScheme" and c.__module__ == "geom.contract" for c in type(value).__mro__)


def _encode(value, path: str, depth: int = 0):
    """One attribute value as a tree (see the module docstring)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels (a cycle?)")
    if _is_scheme(value):
        return {"__kind__": "scheme", "class": _class_name(value), "state": value.state_dict()}
    if isinstance(value, torch.nn.Module):
        return {"__kind__": "module", "class": _class_name(value),
                "state": {k: v.detach().clone() for k, v in value.state_dict().items()}}
    if isinstance(value, torch.optim.Optimizer):
        return {"__kind__": "optimizer", "class": _class_name(value),
                "state": _encode(value.state_dict(), path, depth + 1)}
    if isinstance(value, torch.Generator):
        return {"__kind__": "generator", "state": value.get_state()}
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, np.ndarray):
        return value.copy()
    if value is None or isinstance(value, (bool, str, numbers.Number)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_encode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    if isinstance(value, dict):
        if "__kind__" in value:
            raise ValueError(f"{path}: the key '__kind__' is reserved for object records (where the instance "
                             f"holds no object of that kind, override state_dict and load_state_dict)")
        return {k: _encode(v, f"{path}[{k!r}]", depth + 1) for k, v in value.items()}
    if _refused(value):
        raise TypeError(f"{path}: cannot store a {type(value).__qualname__} ({value!r:.60}); override state_dict "
                        f"and load_state_dict")
    return {"__kind__": "object", "class": _class_name(value),
            "state": {k: _encode(v, f"{path}.{k}", depth + 1) for k, v in vars(value).items()}}


def scheme_state(scheme) -> dict:
    """The default :meth:`~geom.SlicingScheme.state_dict`: every attribute of ``scheme``, encoded."""
    name = type(scheme).__name__
    return {k: _encode(v, f"{name}.{k}") for k, v in vars(scheme).items()}


def _fits(current, value, path: str):
    """``value`` (from a state) in place of ``current`` (a fresh instance's attribute): the value to set."""
    if isinstance(value, dict) and "__kind__" in value:
        return _restore_object(current, value, path)
    if current is not None and _is_object(current):
        raise ValueError(f"{path}: the instance holds a {_class_name(current)}, the state "
                         f"{type(value).__name__} {value!r:.60}")
    if value is None or current is None:
        return _encode(value, path)
    if isinstance(current, torch.Tensor):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: expected a tensor, got {type(value).__name__}")
        if value.dtype != current.dtype or value.ndim != current.ndim:
            raise ValueError(f"{path}: expected a {current.dtype} tensor with {current.ndim} dimensions, got "
                             f"{value.dtype} of shape {tuple(value.shape)}")
        return value.detach().to(current.device).clone().requires_grad_(value.requires_grad)
    if type(value) is not type(current) and not (isinstance(current, float) and type(value) is int):
        raise ValueError(f"{path}: expected {type(current).__name__}, got {type(value).__name__} {value!r:.60}")
    return _encode(value, path)


def _restore_object(current, value: dict, path: str):
    """Restore an encoded object onto ``current`` (the fresh instance's object of the same class)."""
    kind = value.get("__kind__")
    keys = {"__kind__", "state"} | ({"class"} if kind != "generator" else set())
    if kind not in _KINDS or set(value) != keys:
        raise ValueError(f"{path}: expected an object record with keys {sorted(keys)} and __kind__ in "
                         f"{', '.join(_KINDS)}, got keys {sorted(value)}")
    state = value["state"]
    if kind == "generator":
        gen = current if isinstance(current, torch.Generator) else None
        if current is not None and gen is None:
            raise ValueError(f"{path}: the state holds a generator, the instance a {type(current).__name__}")
        gen = gen or torch.Generator()
        like = gen.get_state()
        if not isinstance(state, torch.Tensor) or state.dtype != like.dtype or state.shape != like.shape:
            raise ValueError(f"{path}: expected a generator state, a uint8 tensor of shape {tuple(like.shape)}")
        gen.set_state(state.clone())
        return gen
    if current is None or _class_name(current) != value["class"]:
        have = "None" if current is None else _class_name(current)
        raise ValueError(f"{path}: the state holds a {value['class']!r} ({kind}), the instance has {have}; build "
                         f"the instance with the same options (or override load_state_dict)")
    if kind == "scheme":
        current.load_state_dict(state)
    elif kind == "module":
        own = current.state_dict()
        if not isinstance(state, dict) or set(state) != set(own):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{path}: expected the entries {sorted(own)}, got {got}")
        for k, t in state.items():
            if not isinstance(t, torch.Tensor) or t.shape != own[k].shape or t.dtype != own[k].dtype:
                raise ValueError(f"{path}: {k!r} should be a {own[k].dtype} tensor of shape {tuple(own[k].shape)}, "
                                 f"got {t.dtype if isinstance(t, torch.Tensor) else type(t).__name__} "
                                 f"{tuple(getattr(t, 'shape', ()))}")
        current.load_state_dict(state)
    elif kind == "optimizer":
        try:
            current.load_state_dict(_encode(state, path))
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"{path}: does not fit the optimizer ({exc})") from None
    else:
        _load_attributes(current, state, path)
    return current


def _load_attributes(obj, state, path: str) -> None:
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path}: expected a dict of attributes, got {type(state).__name__}")
    own = vars(obj)
    unknown, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    if unknown:
        raise ValueError(f"{path}.{unknown[0]}: unknown attribute for {type(obj).__name__} "
                         f"(it has {', '.join(sorted(own)) or 'none'})")
    if missing:
        raise ValueError(f"{path}.{missing[0]}: missing from the state")
    values = {k: _fits(own[k], v, f"{path}.{k}") for k, v in state.items()}  # nested objects load in place
    for k, v in values.items():
        setattr(obj, k, v)


def load_scheme_state(scheme, state) -> None:
    """The default :meth:`~geom.SlicingScheme.load_state_dict`: restore :func:`scheme_state`'s output onto
    ``scheme`` (built with the same options); ValueError naming the attribute that does not fit."""
    _load_attributes(scheme, state, type(scheme).__name__)
