"""Where a model comes from: one descriptor per form a user may name instead of a zoo model.

``count``, ``profile``, ``compare`` and ``lint`` take a model as text. Each form below is one
:class:`ModelForm` (its name, how it is recognised, how it loads); :func:`resolve_model` tries them in
order and the first that recognises the text loads it, so every error names the form that was tried:

- ``package.module:factory``: an importable callable returning an ``nn.Module``. Importing user code is
  what the user asked for by writing this form, so it is allowed here and nowhere else (YAML fields are
  never imported or evaluated). The working directory is importable, as with ``python -m``.
- ``*.pt2``: a ``torch.export`` archive (``torch.export.load``; its ``.module()`` is timed and counted).
- ``*.onnx``: an ONNX graph (:class:`OnnxGraph`); it is counted from the graph and timed under ONNX Runtime,
  never turned back into PyTorch.
- ``*.pt`` / ``*.pth`` / ``*.ts`` / ``*.torchscript``: a TorchScript archive (``torch.jit.load``).
- anything else: a zoo name, a model YAML path (or a config dict), built by :func:`latlab.ops.builder.build_model`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latlab.errors import ConfigError, UnknownModelError
from latlab.ops.builder import build_model

_FACTORY = re.compile(r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*)$")
PYTORCH_FORMS = "a zoo name, a model YAML, package.module:factory, a TorchScript or a torch.export archive"
MODEL_FORMS_HELP = ("zoo name, model YAML, package.module:factory, TorchScript archive (.pt), torch.export "
                    "archive (.pt2) or ONNX file (.onnx)")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, cut at its first sentence when long."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(text) > 160 and ". " in text:
        text = text[:text.index(". ") + 1]
    return text[:300]


@dataclass(frozen=True)
class OnnxGraph:
    """An ONNX model file: its path and parsed ``onnx.ModelProto`` (the onnx extra reads it)."""

    path: Path
    proto: Any

    def input_shape(self, imgsz: int | None = None) -> tuple[int, ...]:
        """The concrete shape of the graph's one image input: fixed dims as exported, a dynamic batch as 1
        and dynamic height/width as ``imgsz``. ``ConfigError`` when ``imgsz`` contradicts a fixed size,
        a dynamic size has no ``imgsz``, or the graph does not take exactly one float tensor."""
        init = {t.name for t in self.proto.graph.initializer}
        inputs = [i for i in self.proto.graph.input if i.name not in init]
        if len(inputs) != 1:
            raise ConfigError(f"'{self.path}': latlab times graphs with one input tensor, this one has "
                              f"{len(inputs)} ({', '.join(i.name for i in inputs)})")
        tensor = inputs[0].type.tensor_type
        if tensor.elem_type != 1:  # onnx.TensorProto.FLOAT
            raise ConfigError(f"'{self.path}': input '{inputs[0].name}' is not float32 "
                              f"(ONNX element type {tensor.elem_type})")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        shape = []
        for axis, d in enumerate(dims):
            if d is not None:
                if imgsz is not None and axis >= 2 and d != imgsz:
                    fixed = "x".join(str(x) for x in dims)
                    raise ConfigError(f"'{self.path}': the graph's input size is fixed at {fixed}; --imgsz "
                                      f"{imgsz} does not fit it (leave --imgsz out, or export with dynamic axes)")
                shape.append(d)
            elif axis == 0:
                shape.append(1)
            elif imgsz is None:
                raise ConfigError(f"'{self.path}': input '{inputs[0].name}' has a dynamic size on axis {axis}; "
                                  "pass --imgsz")
            else:
                shape.append(int(imgsz))
        return tuple(shape)

    def default_imgsz(self) -> int | None:
        """The fixed input height of the graph, or None when it is dynamic."""
        dims = self.proto.graph.input[0].type.tensor_type.shape.dim
        return int(dims[2].dim_value) if len(dims) > 2 and dims[2].HasField("dim_value") else None


@dataclass(frozen=True)
class ModelForm:
    """One way of naming a model: ``name`` (used in errors), ``written`` (how a user writes it),
    ``recognise(text)`` and ``load(text)`` (a ``ConfigError``/``UnknownModelError`` naming the form on failure)."""

    name: str
    written: str
    recognise: Callable[[str], bool]
    load: Callable[[str], nn.Module | OnnxGraph]


@dataclass(frozen=True)
class ResolvedModel:
    """A loaded model, the name it is reported under and the form it came from."""

    model: nn.Module | OnnxGraph
    name: str
    form: str

    @property
    def is_onnx(self) -> bool:
        return isinstance(self.model, OnnxGraph)


def _suffix(*suffixes: str) -> Callable[[str], bool]:
    return lambda text: text.lower().endswith(suffixes)


def _existing_file(text: str, form: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise UnknownModelError(f"'{text}': no such file (tried as {form})")
    return path


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """The working directory on ``sys.path`` for the duration of one import (as ``python -m`` has it)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def _is_factory(text: str) -> bool:
    return bool(_FACTORY.match(text)) and not Path(text).exists()


def _load_factory(text: str) -> nn.Module:
    match = _FACTORY.match(text)
    assert match is not None
    module_name, attr = match["module"], match["attr"]
    try:
        with _cwd_importable():
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UnknownModelError(f"'{text}': module '{module_name}' not found") from None
        raise ConfigError(f"'{text}': importing module '{module_name}' failed: {_first_line(exc)}") from None
    except Exception as exc:
        raise ConfigError(f"'{text}': importing module '{module_name}' failed: "
                          f"{type(exc).__name__}: {_first_line(exc)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise UnknownModelError(f"'{text}': module '{module_name}' has no attribute '{attr}'")
    if not callable(factory):
        raise ConfigError(f"'{text}': '{module_name}.{attr}' is not callable ({type(factory).__name__})")
    try:
        model = factory()
    except Exception as exc:
        raise ConfigError(f"'{text}': calling {attr}() failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"'{text}': {attr}() returned {type(model).__name__}, expected an nn.Module")
    return model


def _load_torchscript(text: str) -> nn.Module:
    path = _existing_file(text, "a TorchScript archive")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ConfigError(f"'{text}': not a TorchScript archive: {_first_line(exc)}") from None


class ExportedModel(nn.Module):
    """The module of a ``torch.export`` program. Its graph is frozen in the mode it was exported in and
    refuses ``train()``/``eval()``, which counting and timing call, so those set only this wrapper's flag."""

    def __init__(self, program_module: nn.Module):
        super().__init__()
        self.program = program_module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.program(*args, **kwargs)

    def train(self, mode: bool = True) -> ExportedModel:
        self.training = mode
        return self


def _load_exported(text: str) -> nn.Module:
    path = _existing_file(text, "a torch.export archive")
    try:
        return ExportedModel(torch.export.load(str(path)).module())
    except Exception as exc:
        raise ConfigError(f"'{text}': not a torch.export archive: {_first_line(exc)}") from None


def _load_onnx(text: str) -> OnnxGraph:
    path = _existing_file(text, "an ONNX file")
    try:
        import onnx  # optional dependency (the onnx extra): only ONNX files need it
    except ImportError:
        raise ConfigError(f"'{text}': reading ONNX files needs the onnx extra: pip install 'latlab[onnx]'"
                          ) from None
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ConfigError(f"'{text}': not an ONNX file: {_first_line(exc)}") from None
    return OnnxGraph(path, proto)


FORMS: tuple[ModelForm, ...] = (
    ModelForm("factory", "package.module:factory", _is_factory, _load_factory),
    ModelForm("torch.export", "FILE.pt2", _suffix(".pt2"), _load_exported),
    ModelForm("onnx", "FILE.onnx", _suffix(".onnx"), _load_onnx),
    ModelForm("torchscript", "FILE.pt, .pth, .ts or .torchscript", _suffix(".pt", ".pth", ".ts", ".torchscript"),
              _load_torchscript),
    ModelForm("config", "zoo name or model YAML", lambda _text: True, build_model),
)


def form_of(text: str) -> ModelForm:
    """The first form that recognises ``text`` (the config form recognises everything)."""
    return next(f for f in FORMS if f.recognise(text))


def resolve_model(spec: nn.Module | OnnxGraph | str | Path | dict[str, Any]) -> ResolvedModel:
    """Load ``spec`` through the form that recognises it; a module, ONNX graph or config dict passes through
    (the dict is built). The name is ``spec`` as written, for messages and run metadata."""
    if isinstance(spec, nn.Module):
        return ResolvedModel(spec, type(spec).__name__, "module")
    if isinstance(spec, OnnxGraph):
        return ResolvedModel(spec, str(spec.path), "onnx")
    if isinstance(spec, dict):
        return ResolvedModel(build_model(spec), "dict config", "config")
    text = str(spec)
    form = form_of(text)
    return ResolvedModel(form.load(text), text, form.name)


def as_model(spec: nn.Module | str | Path | dict[str, Any], purpose: str = "this command"
             ) -> tuple[nn.Module, str]:
    """``(module, name)`` for every form that gives a PyTorch model; an ONNX file is a ``ConfigError``
    saying that ``purpose`` needs a PyTorch model."""
    resolved = resolve_model(spec)
    if isinstance(resolved.model, OnnxGraph):
        raise ConfigError(f"'{resolved.name}' is an ONNX graph: {purpose} needs a PyTorch model "
                          f"({PYTORCH_FORMS})")
    return resolved.model, resolved.name
