"""The shared ONNX graph converted by onnx2tf into a TensorFlow SavedModel (and a `.tflite`), cached.

The `tensorflow` and `litert` backends run what this module writes, so they
run the same graph as every other ONNX backend, converted once:

1. the graph is made static for one batch size: onnx2tf cannot convert a
   ConvTranspose whose batch is symbolic (it passes the dimension's name to
   `tf.nn.conv2d_transpose`), so the batch dimension of the inputs is fixed,
   the exporter's value_info (which still names it) is dropped, and ONNX's
   shape inference fills the shapes in again;
2. `onnxsim` folds constants (onnx2tf runs it as a command on its PATH,
   which a bare `.../bin/python` worker does not have: it is run here instead);
3. `onnx2tf.convert` builds a Keras model. onnx2tf turns the graph NHWC
   inside; `keep_ncw_or_nchw_or_ncdhw_input_names` keeps every 3- to 5-D input
   in the ONNX layout, and an output onnx2tf left channels-last (its own
   `onnx_output_layouts` says which) is transposed back inside the saved
   function, so callers give and get the ONNX (NCHW) tensors and the
   transposes are part of the timed call. Strict mode (onnx2tf's default)
   checks ambiguous transposes against ONNX Runtime: slower to convert, but
   without it the VAE decoder's attention came out transposed wrongly;
4. the model is saved as a SavedModel with one signature, `serving_default`,
   whose arguments are the ONNX inputs in graph order (names made
   identifiers). The Keras model itself is not tracked by the saved module,
   only its variables: saving the Keras object graph cost seconds per layer.

Entries live in `cache_dir()/tensorflow/<key>/`, keyed by the ONNX graph's
sha256, the batch, strict mode, and the onnx2tf, onnxsim and TensorFlow
versions; a manifest lists every file's sha256 and an entry that does not
match it is rebuilt. The `.tflite` file is derived from an entry on demand
(`<key>-tflite/`), so the tensorflow backend's cold start does not pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ..bench.cache import cache_dir, publish_entry

if TYPE_CHECKING:
    import onnx

    from .onnx_export import OnnxGraph

ENVIRONMENT = "tensorflow"
# What the conversion imports, by distribution (for versions) and module (for presence).
NEEDS = {"tensorflow": "tensorflow", "onnx2tf": "onnx2tf", "onnxsim": "onnxsim", "tf_keras": "tf-keras"}
SAVED_MODEL = "saved_model"
TFLITE_FILE = "model.tflite"
MANIFEST = "manifest.json"
SIGNATURE = "serving_default"
# Bump when what this module writes for the same inputs changes, so cached entries are redone.
REVISION = 1


def missing(modules: Mapping[str, str]) -> str | None:
    """Why this Python cannot run the backend, naming the command that builds its environment; None if it can.

    Only looks the modules up (no import): TensorFlow takes seconds to import and
    availability is asked before every cell and by `aigcbench list backends`.
    """
    absent = [module for module in modules if find_spec(module) is None]
    if not absent:
        return None
    # The clash behind the separate environment: onnx2tf pins onnx, onnxruntime and numpy (envs/tensorflow.txt).
    return (f"{', '.join(absent)} not installed in this Python: the backend runs in its own environment; "
            f"build it with `make env-{ENVIRONMENT}`")


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter (CUDA probing, cpu_feature_guard) off the cell's stderr.

    Must run before TensorFlow is first imported; an explicit TF_CPP_MIN_LOG_LEVEL wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class Converted:
    """A SavedModel for one graph and batch, as the sessions load it."""

    folder: Path  # the cache entry
    key: str
    manifest: Mapping[str, Any]
    cache_hit: bool

    @property
    def saved_model(self) -> Path:
        return self.folder / SAVED_MODEL

    def describe(self) -> dict[str, Any]:
        """What a record keeps about the conversion."""
        m = self.manifest
        return {"cache_hit": self.cache_hit, "path": str(self.saved_model), "batch": m["batch"],
                "strict_mode": m["strict_mode"], "onnxsim": m["onnxsim"], "onnx2tf": m["onnx2tf"],
                "output_transposed": m["output_transposed"], "signature": m["arguments"]}


def versions() -> dict[str, str]:
    return {module: metadata.version(distribution) for module, distribution in NEEDS.items()}


def entry_key(graph: "OnnxGraph", batch: int, strict: bool) -> str:
    material = {"onnx_sha256": graph.sha256, "batch": batch, "strict": strict, "versions": versions(),
                "revision": REVISION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def saved_model(graph: "OnnxGraph", batch: int, strict: bool = True) -> Converted:
    """The cached SavedModel of `graph` at `batch`, converting it first when needed."""
    key = entry_key(graph, batch, strict)
    entry = cache_dir() / "tensorflow" / key
    manifest = _valid_manifest(entry)
    if manifest is not None:
        return Converted(entry, key, manifest, cache_hit=True)

    def build(staging: Path) -> dict[str, Any]:
        described = _convert(graph, batch, strict, staging)
        manifest = {**described, "batch": batch, "strict_mode": strict, "onnx_sha256": graph.sha256,
                    "files": tree_hashes(staging)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return manifest

    manifest = publish_entry(entry, build, lambda: _valid_manifest(entry))
    return Converted(entry, key, manifest, cache_hit=False)


def tflite(converted: Converted) -> tuple[Path, bool]:
    """The `.tflite` file of a converted entry (TFLite builtin ops only), and whether it was cached."""
    entry = converted.folder.with_name(f"{converted.key}-tflite")
    if _valid_manifest(entry) is not None:
        return entry / TFLITE_FILE, True

    def build(staging: Path) -> dict[str, Any]:
        quiet_tensorflow()
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_saved_model(str(converted.saved_model), signature_keys=[SIGNATURE])
        # LiteRT's interpreter has no Flex delegate: a model that needs TensorFlow ops must fail here, not at load.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        with _captured("TFLite conversion"):
            (staging / TFLITE_FILE).write_bytes(converter.convert())
        manifest = {"source": converted.key, "files": tree_hashes(staging)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return manifest

    publish_entry(entry, build, lambda: _valid_manifest(entry))
    return entry / TFLITE_FILE, False


def _convert(graph: "OnnxGraph", batch: int, strict: bool, staging: Path) -> dict[str, Any]:
    """onnx2tf on the static graph, then the wrapped model saved under `staging/saved_model`."""
    quiet_tensorflow()
    import onnx2tf  # imports TensorFlow

    model, simplified = static_graph(graph.path, batch)
    keep = [i.name for i in model.graph.input if 3 <= len(i.type.tensor_type.shape.dim) <= 5]
    scratch = staging / "onnx2tf"
    with _captured("onnx2tf"):
        keras_model = onnx2tf.convert(
            onnx_graph=model, output_folder_path=str(scratch), disable_model_save=True, not_use_onnxsim=True,
            keep_ncw_or_nchw_or_ncdhw_input_names=keep or None, disable_strict_mode=not strict, non_verbose=True,
        )
    shutil.rmtree(scratch, ignore_errors=True)
    output = model.graph.output[0].name
    transposed = bool(getattr(keras_model, "onnx_output_layouts", {}).get(output, False))
    arguments = _save(keras_model, model, transposed, staging / SAVED_MODEL)
    return {"arguments": arguments, "output": output, "output_transposed": transposed, "onnxsim": simplified,
            "onnx2tf": onnx2tf.__version__, "kept_input_layout": keep}


def static_graph(path: Path, batch: int) -> tuple["onnx.ModelProto", str]:
    """The graph with its batch fixed and shapes inferred again, simplified by onnxsim where it can."""
    import onnx

    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    del model.graph.value_info[:]  # the exporter's shapes still name the symbolic batch
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    try:
        import onnxsim

        simplified, valid = onnxsim.simplify(model)
    except Exception as exc:  # noqa: BLE001 - onnx2tf treats a failed simplification as a warning too
        return model, f"skipped: {type(exc).__name__}: {_first_line(exc)}"
    return (simplified, "applied") if valid else (model, "skipped: its check failed")


def _save(keras_model: Any, model: "onnx.ModelProto", transposed: bool, folder: Path) -> list[str]:
    """Save a module whose one function takes the ONNX inputs in graph order and returns the ONNX output."""
    import onnx
    import tensorflow as tf

    names = [_identifier(i.name, n) for n, i in enumerate(model.graph.input)]
    specs = [
        tf.TensorSpec([d.dim_value for d in i.type.tensor_type.shape.dim],
                      tf.as_dtype(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)), name=name)
        for name, i in zip(names, model.graph.input)
    ]
    keras_dtypes = [t.dtype for t in _in_graph_order(keras_model.inputs, model)]
    call = keras_model.__call__  # a bound method: the module must not track the Keras object graph

    class _Signature(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = list(keras_model.variables)

        @tf.function(input_signature=specs)
        def run(self, *inputs: Any) -> dict[str, Any]:
            cast = [tf.cast(x, dtype) if x.dtype != dtype else x for x, dtype in zip(inputs, keras_dtypes)]
            out = call(cast if len(cast) > 1 else cast[0])
            if transposed:  # channels-last back to the ONNX layout: (N, ..., C) -> (N, C, ...)
                rank = len(out.shape)
                out = tf.transpose(out, [0, rank - 1, *range(1, rank - 1)])
            return {"output": out}

    module = _Signature()
    function = module.run.get_concrete_function()
    _check_output_shape(function.structured_outputs["output"].shape.as_list(), model)
    tf.saved_model.save(module, str(folder), signatures={SIGNATURE: function})
    return names


def _check_output_shape(produced: list[int | None], model: "onnx.ModelProto") -> None:
    """Refuse a conversion whose output shape is not the graph's: onnx2tf lost track of a layout.

    Caught here, the cell fails with what went wrong instead of a shape error deep in the pipeline.
    """
    expected = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if produced != expected:
        raise RuntimeError(
            f"onnx2tf's conversion returns shape {tuple(produced)} where the ONNX graph's output is "
            f"{tuple(expected)}: it mistook a layout in this graph (nothing was cached)"
        )


def _in_graph_order(keras_inputs: list[Any], model: "onnx.ModelProto") -> list[Any]:
    """Keras inputs in the ONNX graph's input order (onnx2tf names them after the ONNX inputs)."""
    by_name = {t.name.split(":")[0]: t for t in keras_inputs}
    wanted = [i.name.replace(":", "__") for i in model.graph.input]
    return [by_name[n] for n in wanted] if all(n in by_name for n in wanted) else list(keras_inputs)


def _identifier(name: str, index: int) -> str:
    cleaned = re.sub(r"\W", "_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"input_{index}"


@contextlib.contextmanager
def _captured(what: str) -> Iterator[None]:
    """Keep a converter's prints off the terminal (the CLI owns it); an error carries what it printed.

    onnx2tf prints the ONNX node it failed on (`onnx_op_name: ...`) before raising, and on some graphs
    calls `sys.exit`: both become one exception that names the node.
    """
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    except SystemExit as exc:
        raise RuntimeError(f"{what} gave up (exit {exc.code}): {_tail(buffer.getvalue())}") from None
    except Exception as exc:
        raise RuntimeError(f"{what} failed: {type(exc).__name__}: {_first_line(exc)} "
                           f"({_tail(buffer.getvalue())})") from exc


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` but the manifest, by relative path."""
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        hashes[str(path.relative_to(folder))] = digest.hexdigest()
    return hashes


def _valid_manifest(entry: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        return manifest if manifest.get("files") and tree_hashes(entry) == manifest["files"] else None
    except (OSError, ValueError, AttributeError):
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _tail(text: str) -> str:
    """The printed lines that say where a conversion failed: onnx2tf's `onnx_op_name: ...`, else the last ones."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if "onnx_op_name" in line]
    return " | ".join(named[-1:] or lines[-3:])[:500] or "it printed nothing"
