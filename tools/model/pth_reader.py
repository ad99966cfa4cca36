"""Read (and, for tests, write) PyTorch ``.pth`` state dicts without torch.

torch cannot be installed in this project, and ``torch.load`` would run
arbitrary pickle code anyway.  So this module reads the two on-disk formats
itself, with a *restricted* unpickler that only resolves an explicit
allow-list of globals; anything else (``os.system``, ``builtins.eval``, ...)
raises before it can be called.

Formats handled:

* zip (torch >= 1.6): ``<top>/data.pkl`` plus one ``<top>/data/<key>`` entry
  per storage.  ``<top>`` is usually ``archive`` but is whatever name the
  file was saved under, so it is discovered, not assumed.
* legacy (torch < 1.6, e.g. the 2018 MobileNetV2 weights): a stream of
  pickles -- magic number, protocol version, sys info, the object, the list
  of storage keys -- followed by each storage as ``int64 numel`` + raw bytes.
  Tensors can only be materialised after the whole stream is read, which is
  why tensors are first built as lazy ``_TensorRef`` records.

``read_pth(path)`` returns ``OrderedDict[name -> numpy.ndarray]``.
``write_pth(path, tensors)`` writes either format from numpy arrays, so tests
can make torchvision-shaped state dicts without torch.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

# Legacy format constants, from torch/serialization.py.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class PthError(Exception):
    """The file is not a state dict we can read safely."""


@dataclass(frozen=True)
class StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: just a dtype."""

    name: str
    dtype: np.dtype | None  # None: bfloat16, widened to float32 by hand


# Storage classes that may appear in a state dict.  Only data types: no
# storage class can run code, they only tell us how to view the bytes.
_STORAGE_TYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": None,
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass
class _Storage:
    """A storage referenced by a persistent id; its bytes arrive later."""

    stype: StorageType
    key: str
    numel: int
    data: np.ndarray | None = None  # flat array of numel elements
    view_of: "_Storage | None" = None  # legacy storage views
    view_offset: int = 0

    def array(self) -> np.ndarray:
        if self.view_of is not None:
            base = self.view_of.array()
            return base[self.view_offset : self.view_offset + self.numel]
        if self.data is None:
            raise PthError(f"storage {self.key!r} has no data in the file")
        return self.data


@dataclass
class _TensorRef:
    """What ``_rebuild_tensor_v2`` produced: resolved once storages are read."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    # _ignored: requires_grad, backward_hooks, metadata -- irrelevant here.
    if not isinstance(storage, _Storage):
        raise PthError("tensor rebuilt from something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    # A Parameter is a tensor plus requires_grad/hooks/state we do not need.
    return data


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


# The allow-list.  Values are *our* harmless replacements, never the real
# torch objects, so even an allowed name cannot reach torch or the OS.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
_ALLOWED.update(
    {("torch", name): StorageType(name, dt) for name, dt in _STORAGE_TYPES.items()}
)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals.

    ``find_class`` is the single place a pickle can name a callable (GLOBAL,
    STACK_GLOBAL, INST, OBJ and EXT* all go through it), so refusing here
    means a malicious pickle fails before REDUCE can call anything.
    """

    def __init__(self, file, storages: dict[str, _Storage] | None = None):
        super().__init__(file)
        self.storages = storages if storages is not None else {}

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: not on the allow-list"
            ) from None

    def persistent_load(self, pid):
        # zip:    ('storage', type, key, location, numel)
        # legacy: ('storage', type, key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, StorageType):
            raise pickle.UnpicklingError("persistent id without a storage type")
        key = str(key)
        storage = self.storages.get(key)
        if storage is None:
            storage = _Storage(stype, key, int(numel))
            self.storages[key] = storage
        view = pid[5] if len(pid) == 6 else None
        return self._view(storage, view) if view is not None else storage

    def _view(self, base: _Storage, view) -> _Storage:
        view_key, offset, view_numel = view
        view_key = str(view_key)
        if view_key not in self.storages:
            self.storages[view_key] = _Storage(
                base.stype, view_key, int(view_numel), view_of=base, view_offset=int(offset)
            )
        return self.storages[view_key]


def _restricted_load(data: bytes | io.BytesIO, storages=None):
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return RestrictedUnpickler(f, storages).load()


# ---------------------------------------------------------------- reading --


def _bytes_to_array(raw: bytes, stype: StorageType, numel: int, big_endian=False) -> np.ndarray:
    if stype.dtype is None:  # bfloat16: the top half of a float32
        u16 = np.frombuffer(raw, dtype=">u2" if big_endian else "<u2", count=numel)
        return (u16.astype(np.uint32) << 16).view(np.float32)
    dtype = stype.dtype.newbyteorder(">") if big_endian else stype.dtype
    need = numel * dtype.itemsize
    if len(raw) < need:
        raise PthError(f"storage has {len(raw)} bytes, needs {need}")
    return np.frombuffer(raw, dtype=dtype, count=numel).astype(dtype.newbyteorder("="))


def _find_zip_prefix(zf: zipfile.ZipFile) -> str:
    pkls = [n for n in zf.namelist() if n.endswith("data.pkl")]
    if len(pkls) != 1:
        raise PthError(f"expected one data.pkl in the archive, found {len(pkls)}")
    return pkls[0][: -len("data.pkl")]  # e.g. "archive/"


def _load_zip(path) -> Any:
    with zipfile.ZipFile(path) as zf:
        prefix = _find_zip_prefix(zf)
        names = set(zf.namelist())
        big = prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() == b"big"
        storages: dict[str, _Storage] = {}
        obj = _restricted_load(zf.read(prefix + "data.pkl"), storages)
        for key, st in storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise PthError(f"storage {key!r} missing from the archive")
            st.data = _bytes_to_array(zf.read(entry), st.stype, st.numel, big)
    return obj


def _load_legacy(raw: bytes) -> Any:
    f = io.BytesIO(raw)
    try:
        magic = _restricted_load(f)
    except Exception as e:  # not a pickle at all
        raise PthError(f"neither a zip nor a legacy torch file: {e}") from None
    if magic != LEGACY_MAGIC:
        raise PthError("bad magic number: not a torch file")
    if _restricted_load(f) != LEGACY_PROTOCOL:
        raise PthError("unsupported legacy protocol version")
    sys_info = _restricted_load(f)
    if not sys_info.get("little_endian", True):
        raise PthError("big-endian legacy files are not supported")
    storages: dict[str, _Storage] = {}
    obj = _restricted_load(f, storages)
    for key in _restricted_load(f):
        _read_legacy_storage(f, storages[str(key)])
    return obj


def _read_legacy_storage(f: io.BytesIO, st: _Storage) -> None:
    (numel,) = struct.unpack("<q", f.read(8))
    if numel != st.numel:
        raise PthError(f"storage {st.key!r}: header says {numel}, pickle said {st.numel}")
    itemsize = 2 if st.stype.dtype is None else st.stype.dtype.itemsize
    st.data = _bytes_to_array(f.read(numel * itemsize), st.stype, numel)


def _materialise(ref: _TensorRef) -> np.ndarray:
    base = ref.storage.array()
    if not ref.size:  # 0-d tensor
        return base[ref.offset : ref.offset + 1].reshape(()).copy()
    # Bounds check first: as_strided would happily read past the buffer.
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride) if n > 0)
    if ref.offset < 0 or (min(ref.size) > 0 and last >= base.size):
        raise PthError("tensor runs past the end of its storage")
    item = base.itemsize
    view = np.lib.stride_tricks.as_strided(
        base[ref.offset :], shape=ref.size, strides=[s * item for s in ref.stride]
    )
    return np.ascontiguousarray(view).copy()


def _pick_state_dict(obj: Any) -> Mapping:
    # Training checkpoints wrap the weights; plain state dicts are the norm.
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    if isinstance(obj, dict):
        return obj
    raise PthError(f"top-level object is {type(obj).__name__}, not a state dict")


def read_pth(path) -> "collections.OrderedDict[str, np.ndarray]":
    """Read a torch state dict into ``OrderedDict[name -> numpy array]``.

    Non-tensor entries (e.g. ``_metadata``) are dropped.
    """
    with open(path, "rb") as f:
        raw = f.read()
    obj = _load_zip(path) if zipfile.is_zipfile(io.BytesIO(raw)) else _load_legacy(raw)
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for name, value in _pick_state_dict(obj).items():
        if isinstance(value, _TensorRef):
            out[str(name)] = _materialise(value)
    return out


# ---------------------------------------------------------------- writing --
# A hand-rolled protocol-2 pickle emitter.  pickle.Pickler cannot be used:
# it insists on importing "torch._utils" to check the globals it names.


@dataclass(frozen=True)
class StridedTensor:
    """A tensor view over ``base`` (flat), for testing stride handling."""

    base: np.ndarray
    offset: int
    shape: tuple
    stride: tuple


_DTYPE_TO_STORAGE = {np.dtype(v).str: k for k, v in _STORAGE_TYPES.items() if v is not None}


class _Emitter:
    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def op(self, code: bytes, payload: bytes = b""):
        self.out += code + payload

    def global_(self, module: str, name: str):
        self.op(b"c", f"{module}\n{name}\n".encode())

    def str_(self, s: str):
        b = s.encode()
        self.op(b"X", struct.pack("<I", len(b)) + b)

    def int_(self, n: int):
        if -(2**31) <= n < 2**31:
            self.op(b"J", struct.pack("<i", n))
        else:
            b = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            self.op(b"\x8a", bytes([len(b)]) + b)

    def tuple_(self, items):
        self.op(b"(")
        for x in items:
            self.value(x)
        self.op(b"t")

    def value(self, x):
        if isinstance(x, bool):
            self.op(b"\x88" if x else b"\x89")
        elif isinstance(x, int):
            self.int_(x)
        elif isinstance(x, str):
            self.str_(x)
        elif x is None:
            self.op(b"N")
        elif isinstance(x, tuple):
            self.tuple_(x)
        else:
            raise TypeError(type(x))

    def empty_ordered_dict(self):
        self.global_("collections", "OrderedDict")
        self.op(b")R")  # EMPTY_TUPLE, REDUCE

    def finish(self) -> bytes:
        return bytes(self.out + b".")


def _as_strided_spec(t) -> StridedTensor:
    if isinstance(t, StridedTensor):
        return t
    # np.ascontiguousarray would turn a 0-d array into 1-d, so reshape back.
    a = np.ascontiguousarray(t).reshape(np.shape(t))
    stride = tuple(int(s // a.itemsize) for s in a.strides) if a.ndim else ()
    return StridedTensor(a.reshape(-1), 0, tuple(a.shape), stride)


def _emit_state_dict(tensors: Mapping[str, Any], legacy: bool):
    """Return (pickle bytes, [(key, flat storage array)]) for ``tensors``."""
    em, storages = _Emitter(), []
    em.empty_ordered_dict()
    em.op(b"(")  # MARK for SETITEMS
    for i, (name, t) in enumerate(tensors.items()):
        spec = _as_strided_spec(t)
        stype = _DTYPE_TO_STORAGE[spec.base.dtype.newbyteorder("<").str]
        key = str(i)
        storages.append((key, spec.base))
        em.str_(name)
        em.global_("torch._utils", "_rebuild_tensor_v2")
        em.op(b"(")  # args tuple
        em.op(b"(")  # persistent id tuple
        em.str_("storage")
        em.global_("torch", stype)
        em.str_(key)
        em.str_("cpu")
        em.int_(int(spec.base.size))
        if legacy:
            em.op(b"N")  # no view metadata
        em.op(b"t")
        em.op(b"Q")  # BINPERSID
        em.int_(spec.offset)
        em.tuple_(spec.shape)
        em.tuple_(spec.stride)
        em.value(False)  # requires_grad
        em.empty_ordered_dict()  # backward_hooks
        em.op(b"tR")  # close args, REDUCE
    em.op(b"u")  # SETITEMS
    return em.finish(), storages


def _write_zip(path, pkl: bytes, storages, top: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/data.pkl", pkl)
        zf.writestr(f"{top}/byteorder", "little")
        for key, base in storages:
            zf.writestr(f"{top}/data/{key}", base.astype(base.dtype.newbyteorder("<")).tobytes())
        zf.writestr(f"{top}/version", "3\n")


def _write_legacy(path, pkl: bytes, storages) -> None:
    def small(x) -> bytes:
        return pickle.dumps(x, protocol=2)

    with open(path, "wb") as f:
        f.write(small(LEGACY_MAGIC))
        f.write(small(LEGACY_PROTOCOL))
        f.write(small({"protocol_version": LEGACY_PROTOCOL, "little_endian": True}))
        f.write(pkl)
        f.write(small([key for key, _ in storages]))
        for _key, base in storages:
            f.write(struct.pack("<q", base.size))
            f.write(base.astype(base.dtype.newbyteorder("<")).tobytes())


def write_pth(path, tensors: Mapping[str, Any], legacy: bool = False, top: str = "archive") -> None:
    """Write ``tensors`` (name -> ndarray or StridedTensor) as a torch file.

    ``legacy=False`` writes the zip format, ``True`` the pre-1.6 stream.
    Each tensor gets its own storage.
    """
    pkl, storages = _emit_state_dict(tensors, legacy)
    if legacy:
        _write_legacy(path, pkl, storages)
    else:
        _write_zip(path, pkl, storages, top)
