"""The TensorRT backend and the ONNX precision lowering it builds fp16/bf16 from on TensorRT 11.

Most machines, this one included, have no TensorRT: the backend must say so
exactly (list, run → exit 3). What does not need a GPU is tested here: the
profile and the engine cache key; the engine cache, the timing cache and the
TensorRT 10/11 precision handling, against a stand-in `tensorrt` module that
records what the backend asks of it; and the lowering of real exported graphs:
checked by ONNX's strict type inference, then run with ONNX Runtime (fp16) or
ONNX's reference evaluator (bf16, which ONNX Runtime's CPU kernels lack).
The tests marked `gpu` build and run real engines where TensorRT and a CUDA
device exist, and skip with the reason elsewhere.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aigcbench.backends import onnx_export, onnx_precision, registry
from aigcbench.backends import tensorrt as trt_backend
from aigcbench.backends.onnx_export import OnnxGraph
from aigcbench.backends.tensorrt import EngineSettings, Gpu, engine_cache_key, profile_shapes
from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.fidelity import relative_l2
from aigcbench.bench.record import Record
from aigcbench.workloads import registry as workloads

runner = CliRunner()
TENSORRT_MISSING = importlib.util.find_spec("tensorrt") is None


# --- availability, as every machine without TensorRT reports it -------------------------------------------


@pytest.mark.skipif(not TENSORRT_MISSING, reason="tensorrt is installed here")
def test_unavailable_names_the_missing_package() -> None:
    assert registry.get("tensorrt").available() == (
        "tensorrt is not installed (pip install 'aigcbench[tensorrt]'; its libraries come from NVIDIA's index)"
    )


def test_with_tensorrt_but_no_cuda_it_names_the_missing_device(monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("10.13.0.35"))
    built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    expected = f"no CUDA device visible to torch (torch {torch.__version__}, {built})"
    assert registry.get("tensorrt").available() == expected


def test_run_exits_3_with_the_reason_on_one_line() -> None:
    reason = registry.get("tensorrt").available()
    if reason is None:
        pytest.skip("tensorrt is available here")
    result = runner.invoke(app, ["run", "--workload", "ddpm", "--backend", "tensorrt", "--no-store"])
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], result.stderr


def test_list_shows_tensorrt_unavailable_with_the_same_reason() -> None:
    result = runner.invoke(app, ["list", "backends", "--json"])
    assert result.exit_code == 0
    listed = {b["name"]: b for b in json.loads(result.stdout)}["tensorrt"]
    reason = registry.get("tensorrt").available()
    assert listed["available"] is (reason is None)
    assert listed["reason"] == reason
    assert listed["precisions"] == ["fp32", "fp16", "bf16"]


@pytest.mark.parametrize("device", ["cpu", "mps", "cuda0", "gpu"])
def test_devices_other_than_cuda_are_refused(device: str) -> None:
    with pytest.raises(UserError, match=f"tensorrt runs on cuda devices only; got --device {device}$"):
        registry.get("tensorrt").check(device, "fp32")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cuda_graph": "sometimes"}, "--option cuda_graph=sometimes: expected true or false"),
        ({"workspace_gb": "-1"}, "--option workspace_gb=-1: expected a number > 0"),
        ({"builder_optimization_level": "9"}, "--option builder_optimization_level=9: choose from 0, 1, 2, 3, 4, 5"),
    ],
)
def test_bad_option_values_are_user_errors(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        EngineSettings.parse(options)


def test_option_values_and_tensorrt_defaults() -> None:
    assert EngineSettings.parse({}).build_options() == {
        "workspace_gb": "tensorrt-default", "builder_optimization_level": "tensorrt-default",
    }
    parsed = EngineSettings.parse({"cuda_graph": "true", "workspace_gb": "1.5", "builder_optimization_level": "5"})
    assert parsed == EngineSettings(cuda_graph=True, workspace_gb=1.5, builder_optimization_level=5)


# --- the pure parts ------------------------------------------------------------------------------------


def test_profile_spans_batch_one_to_at_least_two_with_the_measured_batch_optimal() -> None:
    shapes = [(8, 3, 32, 32), (8,)]
    assert profile_shapes(("sample", "timestep"), shapes, 8) == {
        "sample": ((1, 3, 32, 32), (8, 3, 32, 32), (8, 3, 32, 32)),
        "timestep": ((1,), (8,), (8,)),
    }
    # The fidelity check may run batch 2 on a batch-1 session: the profile admits it.
    assert profile_shapes(("z",), [(1, 100, 1, 1)], 1) == {"z": ((1, 100, 1, 1), (1, 100, 1, 1), (2, 100, 1, 1))}
    assert profile_shapes(("scale",), [()], 4) == {"scale": ((), (), ())}
    with pytest.raises(ValueError, match="2 graph inputs"):
        profile_shapes(("a", "b"), [(1,)], 1)


def test_engine_cache_key_changes_with_everything_that_changes_an_engine() -> None:
    gpu = Gpu("NVIDIA L4", (8, 9))
    profile = profile_shapes(("z",), [(4, 100, 1, 1)], 4)
    build = EngineSettings().build_options()
    base = engine_cache_key("a" * 64, "10.13.0", gpu, "fp16", profile, build)
    assert base == engine_cache_key("a" * 64, "10.13.0", Gpu("NVIDIA L4", (8, 9)), "fp16", dict(profile), dict(build))
    assert len(base) == 32 and int(base, 16) >= 0
    variants = [
        engine_cache_key("b" * 64, "10.13.0", gpu, "fp16", profile, build),
        engine_cache_key("a" * 64, "11.0.0", gpu, "fp16", profile, build),
        engine_cache_key("a" * 64, "10.13.0", Gpu("NVIDIA H100 80GB HBM3", (9, 0)), "fp16", profile, build),
        engine_cache_key("a" * 64, "10.13.0", Gpu("NVIDIA L4", (9, 0)), "fp16", profile, build),
        engine_cache_key("a" * 64, "10.13.0", gpu, "bf16", profile, build),
        engine_cache_key("a" * 64, "10.13.0", gpu, "fp16", profile_shapes(("z",), [(8, 100, 1, 1)], 8), build),
        engine_cache_key("a" * 64, "10.13.0", gpu, "fp16", profile, EngineSettings(workspace_gb=2).build_options()),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_gpu_slug_names_the_timing_cache_file() -> None:
    assert Gpu("NVIDIA H100 80GB HBM3", (9, 0)).slug() == "nvidia-h100-80gb-hbm3-sm90"


# --- engine building and caching, against a stand-in tensorrt module ----------------------------------


class FakeTensorRT(types.ModuleType):
    """The slice of the tensorrt module the backend uses, recording each build's network flags and config.

    TensorRT 10 has the FP16/BF16 builder flags; 11 does not (they were
    removed with weak typing). Engines are bytes starting with b"ENGINE".
    """

    def __init__(self, version: str) -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.__spec__ = ModuleSpec("tensorrt", None)
        weakly_typed = int(version.split(".")[0]) < 11
        self.BuilderFlag = enum.Enum("BuilderFlag", ["TF32", *(["FP16", "BF16"] if weakly_typed else [])])
        self.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
        self.MemoryPoolType = enum.Enum("MemoryPoolType", ["WORKSPACE"])
        self.builds: list[dict[str, Any]] = []
        fake = self

        class Logger:
            ERROR = WARNING = 0

            def __init__(self, severity: int) -> None:
                pass

        class Config:
            def __init__(self) -> None:
                self.flags = {fake.BuilderFlag.TF32}  # on by default, as in TensorRT
                self.shapes: dict[str, tuple] = {}
                self.timing: bytes | None = None

            def set_flag(self, flag: Any) -> None:
                self.flags.add(flag)

            def clear_flag(self, flag: Any) -> None:
                self.flags.discard(flag)

            def get_flag(self, flag: Any) -> bool:
                return flag in self.flags

            def add_optimization_profile(self, profile: Any) -> None:
                self.shapes = profile.shapes

            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                self.workspace = size

            def create_timing_cache(self, data: bytes) -> Any:
                return None if data == b"garbage" else types.SimpleNamespace(data=data)

            def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
                self.timing = cache.data
                return True

            def get_timing_cache(self) -> Any:
                return types.SimpleNamespace(serialize=lambda: b"TIMING")

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, tuple] = {}

            def set_shape(self, name: str, low: tuple, optimum: tuple, high: tuple) -> None:
                self.shapes[name] = (low, optimum, high)

        class Builder:
            def __init__(self, logger: Any) -> None:
                pass

            def create_network(self, flags: int) -> Any:
                return types.SimpleNamespace(flags=flags)

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Any, config: Config) -> bytes:
                fake.builds.append({"network_flags": network.flags, "flags": {f.name for f in config.flags},
                                    "profile": config.shapes, "timing": config.timing})
                return b"ENGINE" + json.dumps(len(fake.builds)).encode()

        class OnnxParser:
            def __init__(self, network: Any, logger: Any) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                return Path(path).exists()

        class Runtime:
            def __init__(self, logger: Any) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes) -> Any:
                return types.SimpleNamespace(data=data) if data.startswith(b"ENGINE") else None

        self.Logger, self.Builder, self.OnnxParser, self.Runtime = Logger, Builder, OnnxParser, Runtime


@pytest.fixture
def graph(tmp_path: Path) -> OnnxGraph:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"an onnx graph")
    return OnnxGraph(path=path, input_names=("z",), output_names=("output",), exporter="dynamo", opset=18,
                     key="k", sha256="c" * 64, cache_hit=True)


def _engine(fake: FakeTensorRT, folder: Path, graph: OnnxGraph, precision: str = "fp16", key: str = "k1") -> tuple:
    strongly_typed = int(fake.__version__.split(".")[0]) >= 11
    profile = profile_shapes(graph.input_names, [(4, 100, 1, 1)], 4)
    return trt_backend._cached_engine(
        folder, key, Gpu("NVIDIA L4", (8, 9)), graph, precision, profile, EngineSettings(), strongly_typed
    )


@pytest.fixture
def fake_tensorrt_10(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTensorRT]:
    fake = FakeTensorRT("10.13.0.35")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    trt_backend._logger.cache_clear()
    yield fake
    trt_backend._logger.cache_clear()


@pytest.fixture
def fake_tensorrt_11(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTensorRT]:
    fake = FakeTensorRT("11.0.0.12")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    trt_backend._logger.cache_clear()
    yield fake
    trt_backend._logger.cache_clear()


def test_an_engine_is_built_once_loaded_after_and_rebuilt_when_corrupt(
    fake_tensorrt_10: FakeTensorRT, graph: OnnxGraph, tmp_path: Path
) -> None:
    folder = tmp_path / "tensorrt"
    engine, hit, info = _engine(fake_tensorrt_10, folder, graph)
    assert hit is False and engine.data == b"ENGINE1" and len(fake_tensorrt_10.builds) == 1
    assert (folder / "k1.engine").read_bytes() == b"ENGINE1"
    again, hit, cached_info = _engine(fake_tensorrt_10, folder, graph)
    assert hit is True and again.data == b"ENGINE1" and cached_info == info and len(fake_tensorrt_10.builds) == 1

    (folder / "k1.engine").write_bytes(b"ENGINE1 but bit-flipped")  # loadable, but not what was built
    rebuilt, hit, _ = _engine(fake_tensorrt_10, folder, graph)
    assert hit is False and rebuilt.data == b"ENGINE2"
    (folder / "k1.json").unlink()
    assert _engine(fake_tensorrt_10, folder, graph)[1] is False
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


def test_tensorrt_10_takes_precision_from_builder_flags(
    fake_tensorrt_10: FakeTensorRT, graph: OnnxGraph, tmp_path: Path
) -> None:
    _, _, fp16 = _engine(fake_tensorrt_10, tmp_path, graph, "fp16", key="a")
    _, _, fp32 = _engine(fake_tensorrt_10, tmp_path, graph, "fp32", key="b")
    half, single = fake_tensorrt_10.builds
    assert half["network_flags"] == 0 and half["flags"] == {"FP16", "TF32"}
    assert fp16["typing"].startswith("weak") and fp16["builder_precision_flags"] == ["FP16"] and fp16["tf32"] is True
    # fp32 means fp32: TF32 tensor-core math is switched off.
    assert single["flags"] == set() and fp32["tf32"] is False and fp32["builder_precision_flags"] == []
    assert half["profile"] == {"z": ((1, 100, 1, 1), (4, 100, 1, 1), (4, 100, 1, 1))}


def test_tensorrt_11_builds_a_strongly_typed_network_without_precision_flags(
    fake_tensorrt_11: FakeTensorRT, graph: OnnxGraph, tmp_path: Path
) -> None:
    _, _, info = _engine(fake_tensorrt_11, tmp_path, graph, "bf16")
    (build,) = fake_tensorrt_11.builds
    assert build["network_flags"] == 1 << 1 and build["flags"] == {"TF32"}
    assert info["typing"].startswith("strong") and info["builder_precision_flags"] == []


def test_the_timing_cache_is_kept_and_a_bad_one_is_dropped(
    fake_tensorrt_10: FakeTensorRT, graph: OnnxGraph, tmp_path: Path
) -> None:
    timing = tmp_path / "timing-10.13.0.35-nvidia-l4-sm89.cache"
    timing.write_bytes(b"garbage")
    assert _engine(fake_tensorrt_10, tmp_path, graph, key="a")[2]["timing_cache_loaded"] is False
    assert timing.read_bytes() == b"TIMING"
    assert _engine(fake_tensorrt_10, tmp_path, graph, key="b")[2]["timing_cache_loaded"] is True
    assert fake_tensorrt_10.builds[1]["timing"] == b"TIMING"


# --- lowering real exported graphs ---------------------------------------------------------------------


def _exported(name: str) -> tuple[OnnxGraph, torch.nn.Module, tuple[torch.Tensor, ...]]:
    workload = workloads.build(name, "tiny", seed=3)
    (component, module), = workload.components().items()
    inputs = workload.example_inputs(component, 2)
    return onnx_export.export(module, inputs, workload.identity(component)), module, inputs


# DDPM's export alone takes ~15 s on 2 cores.
WORKLOADS = ["dcgan", "vae", pytest.param("ddpm", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", WORKLOADS)
def test_fp16_graph_runs_in_onnxruntime_close_to_fp32(name: str) -> None:
    import onnx
    import onnxruntime as ort

    graph, module, inputs = _exported(name)
    lowered = onnx_precision.convert(graph, "fp16")
    model = onnx.load(str(lowered.path))
    onnx.checker.check_model(model, full_check=True)
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in model.graph.initializer}
    session = ort.InferenceSession(str(lowered.path), providers=["CPUExecutionProvider"])
    out = session.run(None, {n: t.numpy() for n, t in zip(graph.input_names, inputs)})[0]
    with torch.inference_mode():
        expected = module(*inputs)
    assert out.dtype == np.float32
    assert relative_l2(torch.from_numpy(out), expected) <= 5e-2


@pytest.mark.parametrize("name", WORKLOADS)
def test_bf16_graph_is_valid_onnx_and_computes_close_to_fp32(name: str) -> None:
    import onnx
    from onnx.reference import ReferenceEvaluator

    graph, module, inputs = _exported(name)
    lowered = onnx_precision.convert(graph, "bf16")
    model = onnx.load(str(lowered.path))
    onnx.checker.check_model(model, full_check=True)  # strict type inference: bf16 is legal for every op at opset 22
    assert lowered.opset == onnx_precision.opset_of(model) == onnx_precision.BF16_OPSET
    assert onnx.TensorProto.BFLOAT16 in {t.data_type for t in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 not in {t.data_type for t in model.graph.initializer}
    assert {i.type.tensor_type.elem_type for i in model.graph.input} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT]
    # ONNX Runtime's CPU kernels lack bf16; ONNX's reference evaluator computes it.
    evaluator = ReferenceEvaluator(model, new_ops=[_instance_norm_accumulating_in_fp32()])
    out = evaluator.run(None, {n: t.numpy() for n, t in zip(graph.input_names, inputs)})[0]
    with torch.inference_mode():
        expected = module(*inputs)
    assert relative_l2(torch.from_numpy(np.asarray(out, dtype=np.float32)), expected) <= 5e-2


def _instance_norm_accumulating_in_fp32() -> type:
    """The reference InstanceNormalization, but reducing in fp32 as every real kernel does.

    The reference one sums in the tensor's own type: in bf16 that alone is a
    25 % error on the VAE, which would hide whether the lowering is right.
    """
    from onnx.reference.ops.op_instance_normalization import InstanceNormalization

    def _run(self: Any, x: np.ndarray, scale: np.ndarray, bias: np.ndarray, epsilon: float | None = None) -> tuple:
        wide = (a.astype(np.float32) for a in (x, scale, bias))
        (y,) = InstanceNormalization._run(self, *wide, epsilon=epsilon)
        return (y.astype(x.dtype),)

    # The evaluator finds an implementation by its class name.
    return type("InstanceNormalization", (InstanceNormalization,), {"_run": _run})


def test_the_integer_input_path_stays_fp32() -> None:
    """A timestep embedding in miniature: t (int) → float → × frequency → sin, then added to an activation."""
    import onnx
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["t"], ["t_float"], to=onnx.TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["t_float", "frequency"], ["angle"], name="mul"),
        helper.make_node("Sin", ["angle"], ["embedding"], name="sin"),
        helper.make_node("Add", ["x", "embedding"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("t", onnx.TensorProto.INT64, [2]),
         helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array([0.1234, 0.5], dtype=np.float32), "frequency")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert onnx_precision.index_path_nodes(model) == ["cast", "mul", "sin"]
    for precision, low in (("fp16", onnx.TensorProto.FLOAT16), ("bf16", onnx.TensorProto.BFLOAT16)):
        lowered = onnx_precision.lower(model, precision)
        onnx.checker.check_model(lowered, full_check=True)
        by_name = {n.name: n for n in lowered.graph.node}
        # The fp32 path runs straight through: no cast into the low type and back between its nodes.
        assert by_name["mul"].input[0] == by_name["cast"].output[0]
        assert by_name["sin"].input[0] == by_name["mul"].output[0]
        casts = [n for n in lowered.graph.node if n.op_type == "Cast" and n.name != "cast"]
        assert sorted(n.attribute[0].i for n in casts) == sorted([low, low, onnx.TensorProto.FLOAT])
        assert {t.data_type for t in lowered.graph.initializer} == {onnx.TensorProto.FLOAT}


def test_bf16_weights_are_rounded_from_fp32_not_from_fp16() -> None:
    import ml_dtypes
    import onnx
    from onnx import helper, numpy_helper

    # 1e-6 is subnormal in fp16 (about 3 significant bits); bf16 holds it to 8 bits.
    weight = np.full((2, 2), 1e-6, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])],
        [numpy_helper.from_array(weight, "w")],
    )
    lowered = onnx_precision.lower(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), "bf16")
    (stored,) = lowered.graph.initializer
    assert numpy_helper.to_array(stored).tobytes() == weight.astype(ml_dtypes.bfloat16).tobytes()


def test_toposort_puts_producers_first_and_keeps_the_order_otherwise() -> None:
    from onnx import helper

    nodes = [
        helper.make_node("Relu", ["a"], ["b"], name="second"),
        helper.make_node("Neg", ["b"], ["c"], name="third"),
        helper.make_node("Identity", ["x"], ["a"], name="first"),
        helper.make_node("Abs", ["x"], ["d"], name="other"),
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    onnx_precision.toposort(graph)
    assert [n.name for n in graph.node] == ["first", "second", "third", "other"]
    loop = [helper.make_node("Relu", ["q"], ["p"]), helper.make_node("Relu", ["p"], ["q"])]
    cyclic = helper.make_graph(loop, "g", [], [])
    with pytest.raises(ValueError, match="cycle"):
        onnx_precision.toposort(cyclic)


def test_lowered_graphs_are_cached_beside_the_export_without_invalidating_it() -> None:
    graph, _, _ = _exported("dcgan")
    first = onnx_precision.convert(graph, "fp16")
    assert first.path.parent.parent == graph.path.parent.parent and first.path.parent.name == f"{graph.key}-fp16"
    again = onnx_precision.convert(graph, "fp16")
    assert again.cache_hit and again.sha256 == first.sha256
    assert _exported("dcgan")[0].cache_hit, "the export's own cache entry must stay valid"
    (first.path.parent / onnx_precision.EXTERNAL_DATA).write_bytes(b"truncated")
    redone = onnx_precision.convert(graph, "fp16")
    assert not redone.cache_hit and redone.sha256 == first.sha256
    assert onnx_precision.convert(graph, "fp32") is graph


# --- on a machine with TensorRT and a CUDA device ------------------------------------------------------


@pytest.fixture
def _tensorrt_here() -> None:
    reason = registry.get("tensorrt").available()
    if reason is not None:
        pytest.skip(f"tensorrt unavailable here: {reason}")


def _run(workload: str, precision: str, **kwargs: Any) -> Record:
    from aigcbench.bench.config import RunConfig
    from aigcbench.bench.runner import run_cell
    from aigcbench.bench.stopping import StopRule, WarmupRule

    config = RunConfig(
        workload=workload, backend="tensorrt", size="tiny", device="cuda", precision=precision, steps=2,
        stop=StopRule(min_duration_s=0.2, min_iterations=20), warmup=WarmupRule(iterations=3, duration_s=0), **kwargs,
    )
    return run_cell(config)


@pytest.mark.gpu
@pytest.mark.usefixtures("_tensorrt_here")
@pytest.mark.parametrize("workload", ["dcgan", "vae", "ddpm"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_engine_runs_and_passes_fidelity(workload: str, precision: str) -> None:
    record = _run(workload, precision)
    assert record.status == "ok", record.reason
    options = record.backend["options"]
    assert options["precision_run"] == precision
    if precision == "fp32":
        assert options["tf32"] is False
    assert record.metrics["device_latency_s"]["p50"] > 0


@pytest.mark.gpu
@pytest.mark.usefixtures("_tensorrt_here")
def test_second_run_loads_the_cached_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    first, second = _run("dcgan", "fp16"), _run("dcgan", "fp16")
    assert first.backend["options"]["engine_cache_hit"] is False
    assert second.backend["options"]["engine_cache_hit"] is True
    assert second.metrics["cold_start_s"]["prepare"] < first.metrics["cold_start_s"]["prepare"]


@pytest.mark.gpu
@pytest.mark.usefixtures("_tensorrt_here")
@pytest.mark.parametrize("workload", ["dcgan", "ddpm"])
def test_cuda_graph_capture_with_a_batch_larger_than_the_fidelity_check(workload: str) -> None:
    record = _run(workload, "fp16", scenario="throughput", batch_size=4, options={"cuda_graph": "true"})
    assert record.status == "ok", record.reason
    assert record.backend["options"]["cuda_graph"] == "captured"
