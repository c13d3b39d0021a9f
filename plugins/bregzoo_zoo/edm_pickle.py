"""Read the network out of an NVlabs/edm pickle (``edm-cifar10-32x32-uncond-vp.pkl`` ...) without running it.

An official file is ``pickle.dump(dict(ema=net, loss_fn=..., augment_pipe=..., dataset_kwargs=...))``, where
every network class is wrapped by ``torch_utils.persistence``: each module pickles as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, with ``meta`` holding the class name, the
*source code of its whole module* (which EDM's own loader executes) and the module's ``__dict__`` (parameters,
buffers, submodules, ``_init_kwargs``). Tensors pickle as torch's ``_rebuild_tensor_v2`` over storages saved
with ``torch.save``.

The reader here is reached only with an explicit trust flag (``bregzoo convert edm-pkl --trust-pickle``),
because the format is one in which a file can run code. Even then it does not run the file: its
``find_class`` resolves a fixed list of names (tensor and storage rebuilding, with storages read by
``torch.load(weights_only=True)``; ``OrderedDict``), turns the persistence hook and every other global into an
inert ``Record`` that keeps the arguments and state it is given, and never executes the embedded source.
The network is then rebuilt from bregzoo's own classes and the extracted state dict.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bregzoo import BregzooError

WHY = ("it is a Python pickle, and unpickling a file can run any code it names (the EDM pickles carry "
       "their own network source, which EDM's loader executes)")


class Record:
    """What the reader builds instead of an object: the global's name, its arguments and its state."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Record:
        self = super().__new__(cls)
        self.args, self.state, self.items, self.values = args, None, {}, []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.values.append(value)

    def extend(self, values: Any) -> None:
        self.values.extend(values)

    @property
    def class_name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


class Persistent(Record):
    """A ``torch_utils.persistence`` object: its class name and ``__dict__``; the source it carries is ignored."""

    qualname = "torch_utils.persistence"

    def __init__(self, meta: Any = None) -> None:
        meta = meta if isinstance(meta, dict) else {}
        self.qualname = f"(persistent).{meta.get('class_name', '?')}"
        self.state = meta.get("state")


@functools.lru_cache(maxsize=None)
def _record_class(module: str, name: str) -> type[Record]:
    return type(name, (Record,), {"qualname": f"{module}.{name}"})


def _storage(data: Any) -> Any:
    """A storage that torch pickled as ``torch.save`` bytes, read weights-only."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("a tensor storage is not bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _tensor(storage: Any, *args: Any) -> Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"a tensor's storage is a {type(storage).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._utils._rebuild_tensor_v2(storage, *args)


def _parameter(data: Any, *args: Any) -> Tensor:
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError(f"a parameter's data is a {type(data).__name__}")
    return data  # a plain tensor: nothing here trains


_RESOLVED = {
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("torch.storage", "_load_from_bytes"): _storage,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Persistent,
}


class _EDMPickleReader(pickle.Unpickler):
    """Resolves only ``_RESOLVED``; every other global becomes an inert Record class."""

    def find_class(self, module: str, name: str) -> Any:
        return _RESOLVED.get((module, name)) or _record_class(module, name)


@dataclass
class EDMNetwork:
    """An official network as data: its classes, init kwargs and state dict (keys as EDM's own)."""

    precond: str
    init_kwargs: dict[str, Any]
    model_type: str
    state_dict: dict[str, Tensor]
    sha256: str


def read_edm_pickle(path: str | Path, trust_pickle: bool = False, key: str = "ema") -> EDMNetwork:
    """The network stored under ``key`` of an EDM pickle (the whole file when it is a network itself)."""
    path = Path(path)
    if not path.is_file():
        raise BregzooError(f"edm-pkl: '{path}' is not a file; download the network pickle first (see docs/images.md)")
    if not trust_pickle:
        raise BregzooError(f"edm-pkl: refusing to read '{path}': {WHY}; pass --trust-pickle if it comes from a "
                           f"source you trust, such as NVIDIA's edm release")
    raw = path.read_bytes()
    try:
        data = _EDMPickleReader(io.BytesIO(raw)).load()
    except Exception as exc:  # pickle raises many types on a file that is not a pickle, or a truncated one
        raise BregzooError(f"edm-pkl: cannot read '{path}' as a pickle ({type(exc).__name__}: {exc})") from None
    net = data.get(key) if isinstance(data, dict) else data
    if net is None:
        keys = sorted(map(str, data)) if isinstance(data, dict) else []
        raise BregzooError(f"edm-pkl: '{path}' has no {key!r} entry (it has {', '.join(keys) or 'none'}); "
                           f"is it a network snapshot from NVlabs/edm?")
    if not isinstance(net, Record) or not isinstance(net.state, dict) or "_modules" not in net.state:
        raise BregzooError(f"edm-pkl: {key!r} in '{path}' is {net!r}, not a pickled network module")
    model = net.state["_modules"].get("model")
    if not isinstance(model, Record):
        raise BregzooError(f"edm-pkl: the {net.class_name} in '{path}' has no 'model' network")
    init_args, init_kwargs = net.state.get("_init_args"), net.state.get("_init_kwargs")
    if init_args or not isinstance(init_kwargs, dict):
        raise BregzooError(f"edm-pkl: the {net.class_name} in '{path}' does not record its init kwargs by name, "
                           f"so its architecture is unknown")
    kwargs = {k: _plain(v, k) for k, v in init_kwargs.items()}
    tensors: dict[str, Tensor] = {}
    _collect(net, "", tensors)
    return EDMNetwork(net.class_name, kwargs, model.class_name, tensors, hashlib.sha256(raw).hexdigest())


def _plain(value: Any, key: str) -> Any:
    """An init kwarg as JSON data (EDM's are numbers, strings and lists of numbers)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    raise BregzooError(f"edm-pkl: init kwarg {key}={value!r} is not a plain value; bregzoo cannot rebuild this network")


def _collect(record: Record, prefix: str, out: dict[str, Tensor]) -> None:
    """Parameters and persistent buffers of a pickled module tree, named as ``state_dict`` names them."""
    state = record.state
    if not isinstance(state, dict):
        raise BregzooError(f"edm-pkl: module '{prefix.rstrip('.') or 'net'}' ({record!r}) has no state")
    skip = state.get("_non_persistent_buffers_set") or set()
    named = list((state.get("_parameters") or {}).items())
    named += [(n, b) for n, b in (state.get("_buffers") or {}).items() if n not in skip]
    for name, value in named:
        if value is None:
            continue
        if not isinstance(value, Tensor):
            raise BregzooError(f"edm-pkl: '{prefix}{name}' is {value!r}, not a tensor")
        out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            if not isinstance(child, Record):
                raise BregzooError(f"edm-pkl: submodule '{prefix}{name}' is a {type(child).__name__}")
            _collect(child, f"{prefix}{name}.", out)
