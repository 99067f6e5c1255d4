"""Lower an exported fp32 ONNX graph to fp16 or bf16, keeping fp32 inputs and outputs.

Some runtimes take precision from the graph itself rather than from a setting:
TensorRT 11 builds strongly typed networks only (its fp16/bf16 builder flags
are gone), and ONNX Runtime runs fp16 kernels only where the graph says fp16.
They get the graph that `convert` writes:

- fp16: onnxruntime's converter (`convert_float_to_float16`, keep_io_types):
  float weights and activations become fp16, except around the ops in its
  block list (no fp16 kernels) and on the integer-input path (a timestep
  embedding, see `index_path_nodes`), which keep running in fp32 between
  casts; graph inputs and outputs stay fp32, with a Cast at each boundary,
  so the session's fp32-in/fp32-out contract holds.
- bf16: the graph is first moved to opset 22 (`onnx.version_converter`), the
  first opset whose Conv, ConvTranspose, Sin... accept bf16 (ModelOpt's
  AutoCast does the same), then converted as for fp16, then every fp16 type
  is retyped to bf16. Weights and constants are re-rounded from their fp32
  originals (round to nearest even), so they get bf16's range instead of
  fp16's clamp; a value with no original (a scalar the converter made up) is
  widened from fp16 first. The result passes ONNX's strict type inference;
  ONNX Runtime's CPU kernels mostly lack bf16, so the graph is TensorRT's.

Two repairs follow the converter: it routes a value between two fp32 nodes
through the low type and back (folded away, or the kept path would be
rounded anyway), and it appends its casts at the end of the node list (put
back in topological order, as the ONNX spec and its checker require).

Converted graphs are cached next to their source in `cache_dir()/onnx/`, in a
folder `<source key>-<precision>` with a manifest naming the source's sha256
and the converter, so a re-exported source or a new converter converts again.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ..bench.cache import publish_entry
from .onnx_export import MANIFEST, MODEL_FILE, OnnxGraph, file_hashes

if TYPE_CHECKING:
    import numpy as np
    import onnx

LOWERED = ("fp16", "bf16")
# The first ONNX opset that lists bf16 for Conv, ConvTranspose and the other ops the workloads use.
BF16_OPSET = 22
# Bump when the lowering below changes, so cached conversions are redone.
REVISION = 1
EXTERNAL_DATA = MODEL_FILE + ".data"


def convert(graph: OnnxGraph, precision: str) -> OnnxGraph:
    """The graph lowered to `precision` (fp32 returns `graph` itself), converting on a cache miss."""
    if precision == "fp32":
        return graph
    if precision not in LOWERED:
        raise ValueError(f"precision must be fp32 or one of {LOWERED}, got {precision!r}")
    entry = graph.path.parent.with_name(f"{graph.key}-{precision}")
    expected = _provenance(graph, precision)
    manifest = _valid_manifest(entry, expected)
    if manifest is not None:
        return _lowered_graph(graph, entry, manifest, cache_hit=True)

    def build(staging: Path) -> dict[str, Any]:
        lowered = lower(_load(graph.path), precision)
        _save(lowered, staging / MODEL_FILE)
        built = {**expected, "opset": opset_of(lowered), "files": file_hashes(staging)}
        (staging / MANIFEST).write_text(json.dumps(built, indent=2))
        return built

    manifest = publish_entry(entry, build, lambda: _valid_manifest(entry, expected))
    return _lowered_graph(graph, entry, manifest, cache_hit=False)


def lower(model: "onnx.ModelProto", precision: str) -> "onnx.ModelProto":
    """`model` (fp32) with its float tensors in `precision` and fp32 inputs/outputs; `model` is left as it was."""
    import onnx
    from onnx import version_converter
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if precision not in LOWERED:
        raise ValueError(f"precision must be one of {LOWERED}, got {precision!r}")
    source = onnx.ModelProto()
    source.CopyFrom(model)  # the converter edits its argument in place
    if precision == "bf16" and opset_of(source) < BF16_OPSET:
        source = version_converter.convert_version(source, BF16_OPSET)
    originals = _float_originals(source.graph) if precision == "bf16" else {}
    _drop_initializer_annotations(source.graph)
    lowered = convert_float_to_float16(source, keep_io_types=True, node_block_list=index_path_nodes(source))
    _fold_round_trip_casts(lowered.graph)
    if precision == "bf16":
        _retype_to_bf16(lowered.graph, originals)
    toposort(lowered.graph)
    return lowered


def index_path_nodes(model: "onnx.ModelProto") -> list[str]:
    """Names of the nodes that compute from integer inputs (timesteps, class labels) and constants only.

    They stay in fp32. A model casts such an input to float to compute with it
    in fp32 on purpose: diffusers' sinusoidal timestep embedding multiplies t
    (up to 1000) by frequencies before sin/cos, and with fp16's 11 or bf16's
    8 significant bits the angle, and so the embedding, is off by up to
    radians (measured: 3 % and 30 % relative error). The path is small (a
    B×d embedding and its MLP), so fp32 there costs nothing measurable.
    Shapes read from activations are integers too and may join the path.
    """
    import onnx

    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.input, *inferred.value_info, *inferred.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    constant = {t.name for t in model.graph.initializer} | {""}
    derived = {i.name for i in model.graph.input if types.get(i.name) not in floats}
    kept = []
    for node in model.graph.node:  # exported graphs are in topological order
        if node.op_type == "Constant" or all(name in constant for name in node.input):
            constant.update(node.output)
            continue
        float_inputs = [name for name in node.input if types.get(name) in floats]
        if any(name in derived for name in node.input) and all(n in derived or n in constant for n in float_inputs):
            derived.update(node.output)
            kept.append(node.name)
    return kept


def _fold_round_trip_casts(graph: "onnx.GraphProto") -> None:
    """Let readers of Cast(Cast(x: fp32 → low) → fp32) read x itself, and drop the casts left unread.

    The converter puts every output of a node it keeps in fp32 through the
    low type and back when the next node is kept in fp32 too, which would
    round the fp32 path kept above at every step. Graphs with control flow
    are left alone: a subgraph may read a cast's output by name.
    """
    import onnx

    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    outputs = {o.name for o in graph.output}
    producer = {node.output[0]: node for node in graph.node if node.output}
    replaced = {}
    for node in graph.node:
        source = producer.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if (
            source is not None and source.op_type == "Cast" and _cast_target(node) == onnx.TensorProto.FLOAT
            and _cast_target(source) == onnx.TensorProto.FLOAT16 and types.get(source.input[0]) == onnx.TensorProto.FLOAT
            and node.output[0] not in outputs
        ):
            replaced[node.output[0]] = source.input[0]
    for node in graph.node:
        node.input[:] = [replaced.get(name, name) for name in node.input]
    _drop_unread_casts(graph)


def _drop_unread_casts(graph: "onnx.GraphProto") -> None:
    """Remove Cast nodes nothing reads (repeatedly: a removed cast may have been a cast's only reader)."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        kept = [n for n in graph.node if n.op_type != "Cast" or any(name in read for name in n.output)]
        if len(kept) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(kept)
    produced = {name for node in graph.node for name in node.output}
    live = [value for value in graph.value_info if value.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(live)


def _cast_target(node: "onnx.NodeProto") -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def opset_of(model: "onnx.ModelProto") -> int:
    """The model's default-domain (ai.onnx) opset version."""
    return max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=1)


def _drop_initializer_annotations(graph: "onnx.GraphProto") -> None:
    """Remove value_info entries that describe initializers.

    value_info can describe initializers too; the converter retypes every
    float entry to fp16 even where it keeps the initializer itself in fp32
    (Resize's scales, weights of nodes kept in fp32), leaving the two in
    contradiction and casting the fp32 initializer "back" to fp32. An
    initializer carries its own type, so the entry is redundant.
    """
    initializers = {tensor.name for tensor in graph.initializer}
    kept = [value for value in graph.value_info if value.name not in initializers]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def toposort(graph: "onnx.GraphProto") -> None:
    """Reorder `graph.node` so every node comes after the nodes it reads, keeping the given order where it can."""
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output}
    readers: list[list[int]] = [[] for _ in nodes]
    waiting = []
    for index, node in enumerate(nodes):
        # Names no node produces are graph inputs, initializers or outer-scope values.
        sources = {producer[name] for name in node.input if name in producer}
        for source in sources:
            readers[source].append(index)
        waiting.append(len(sources))
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers[index]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    if len(order) != len(nodes):
        raise ValueError("the ONNX graph has a cycle: it cannot be ordered")
    del graph.node[:]
    graph.node.extend(nodes[index] for index in order)


def _float_originals(graph: "onnx.GraphProto") -> dict[str, "np.ndarray"]:
    """The fp32 values of initializers (by name) and constant attributes (by `output/attribute`)."""
    import onnx
    from onnx import numpy_helper

    originals = {
        tensor.name: numpy_helper.to_array(tensor)
        for tensor in graph.initializer
        if tensor.data_type == onnx.TensorProto.FLOAT
    }
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == onnx.TensorProto.FLOAT:
                originals[_attribute_key(node, attribute)] = numpy_helper.to_array(attribute.t)
    return originals


def _attribute_key(node: "onnx.NodeProto", attribute: "onnx.AttributeProto") -> str:
    return f"{node.output[0] if node.output else node.name}/{attribute.name}"


def _retype_to_bf16(graph: "onnx.GraphProto", originals: Mapping[str, "np.ndarray"]) -> None:
    """Turn every fp16 type, tensor and cast target of an fp16-lowered graph (and its subgraphs) into bf16."""
    import onnx

    fp16, bf16 = onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.tensor_type.elem_type == fp16:
            value.type.tensor_type.elem_type = bf16
    for tensor in graph.initializer:
        if tensor.data_type == fp16:
            tensor.CopyFrom(_bf16_tensor(tensor, originals.get(tensor.name)))
    for node in graph.node:
        for attribute in node.attribute:
            # Cast's `to` and the generators' `dtype` name the element type they produce.
            if attribute.type == onnx.AttributeProto.INT and attribute.name in ("to", "dtype") and attribute.i == fp16:
                attribute.i = bf16
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == fp16:
                attribute.t.CopyFrom(_bf16_tensor(attribute.t, originals.get(_attribute_key(node, attribute))))
            for subgraph in _subgraphs(attribute):
                _retype_to_bf16(subgraph, originals)


def _subgraphs(attribute: "onnx.AttributeProto") -> Iterator["onnx.GraphProto"]:
    """The bodies of control-flow nodes (If, Loop, Scan) held by `attribute`."""
    import onnx

    if attribute.type == onnx.AttributeProto.GRAPH:
        yield attribute.g
    yield from attribute.graphs


def _bf16_tensor(tensor: "onnx.TensorProto", original: "np.ndarray | None") -> "onnx.TensorProto":
    """`tensor` (fp16) as bf16, rounded from its fp32 original when there is one."""
    import ml_dtypes
    import numpy as np
    from onnx import numpy_helper

    values = original if original is not None else numpy_helper.to_array(tensor).astype(np.float32)
    return numpy_helper.from_array(values.astype(ml_dtypes.bfloat16), tensor.name)


def _load(path: Path) -> "onnx.ModelProto":
    import onnx

    return onnx.load(str(path))  # with its external weights, which the exporter writes beside it


def _save(model: "onnx.ModelProto", path: Path) -> None:
    """Save with the weights in one external file, as the exporter does (protobuf caps a file at 2 GB)."""
    import onnx

    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=EXTERNAL_DATA)


def _provenance(graph: OnnxGraph, precision: str) -> dict[str, Any]:
    """What a cached conversion must have been made from and with to be reused."""
    import onnxruntime

    return {
        "source_sha256": graph.sha256,
        "precision": precision,
        "converter": {"onnxruntime": onnxruntime.__version__, "revision": REVISION},
    }


def _valid_manifest(entry: Path, expected: Mapping[str, Any]) -> dict[str, Any] | None:
    """The entry's manifest when it was made from `expected` and its files are intact, else None."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return None
    return manifest if manifest.get("files") and file_hashes(entry) == manifest["files"] else None


def _lowered_graph(source: OnnxGraph, entry: Path, manifest: Mapping[str, Any], cache_hit: bool) -> OnnxGraph:
    combined = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    return OnnxGraph(
        path=entry / MODEL_FILE,
        input_names=source.input_names,
        output_names=source.output_names,
        exporter=source.exporter,
        opset=int(manifest["opset"]),
        key=entry.name,
        sha256=combined,
        cache_hit=cache_hit,
        fallback_reason=source.fallback_reason,
    )
