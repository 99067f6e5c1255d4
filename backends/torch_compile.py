"""torch.compile with inductor: the eager module, traced by dynamo and compiled to fused kernels.

The session is the eager backend's `TorchSession` with one change (see
`CompiledSession`), so casting, `inference_mode` and synchronisation are those
of the reference and only the module differs. Compilation is lazy in torch (it
happens on the first call), so `prepare` makes that first call itself, with
the example inputs: compile time is cold start, which the harness times around
`prepare`, and never leaks into the first timed call.

Inductor keeps an FX-graph cache on disk. It is pointed into aigcbench's cache
(`cache_dir()/inductor`) unless the user chose a folder with
`TORCHINDUCTOR_CACHE_DIR`, so a repeated run pays seconds instead of a full
C++ compile (on 2 cores, tiny sizes: 15-60 s cold per model, dtype and shape,
2-4 s warm).
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from ..bench.cache import cache_dir
from .base import Backend, PrepareContext
from .options import boolean, choice, positive_int
from .pytorch import TorchSession
from .torch_device import check_precision, dtype_of, TorchDeviceNames, resolve_device

if TYPE_CHECKING:
    import torch

MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Modes that replay CUDA graphs on a CUDA device (inductor's "cudagraph trees").
CUDA_GRAPH_MODES: tuple[str, ...] = ("reduce-overhead", "max-autotune")
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


@dataclass(frozen=True)
class CompileSettings:
    """The `--option` values of this backend, validated once."""

    mode: str = "default"
    fullgraph: bool = False
    dynamic: bool = False
    threads: int | None = None

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> "CompileSettings":
        """Settings from `--option KEY=VALUE` pairs; a bad value is a one-line `UserError`."""
        return cls(
            mode=choice(options, "mode", MODES, "default"),
            fullgraph=boolean(options, "fullgraph"),
            dynamic=boolean(options, "dynamic"),
            threads=positive_int(options, "threads") if "threads" in options else None,
        )


class CompiledSession(TorchSession):
    """The eager session around a compiled module, feeding it inference tensors only.

    Dynamo guards on whether an input is an inference tensor, and the harness
    passes both kinds (a pipeline's first input is made outside
    `inference_mode`, later ones inside), so without this every variant would
    recompile in the measured loop. A cast to the compute dtype already makes a
    new inference tensor; only an fp32 input made outside `inference_mode` is copied.

    Under CUDA graphs a compiled function returns the graph's own output
    buffer, which its next replay overwrites; the caller may keep an output
    across calls (a pipeline, the fidelity check), so it gets a copy.
    """

    def __init__(
        self, module: "torch.nn.Module", device: "torch.device", dtype: "torch.dtype", info: dict[str, Any],
        *, copy_outputs: bool, train: bool = False,
    ) -> None:
        super().__init__(module, device, dtype, info, train=train)
        self.copy_outputs = copy_outputs

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        import torch

        if self.train:  # a training loss: autograd on, inputs as they come (fp32 only)
            return self.module(*inputs)
        with torch.inference_mode():
            out = self.module(*(_inference_tensor(t, self.dtype) for t in inputs))
            if self.copy_outputs:
                out = out.clone()
        return out.float()


def _inference_tensor(tensor: "torch.Tensor", dtype: "torch.dtype") -> "torch.Tensor":
    """`tensor` as an inference tensor, floating point cast to `dtype`; call under `inference_mode`."""
    target = dtype if tensor.is_floating_point() else tensor.dtype
    return tensor.to(target, copy=not tensor.is_inference())


def cxx_candidates() -> tuple[str, ...]:
    """The C++ compilers inductor would try for CPU kernels, in its order (`$CXX` or g++ by default).

    torch's list may hold None, meaning "install g++ from conda"; torch does
    that only when TORCH_INDUCTOR_INSTALL_GXX is set, so None is not a compiler
    this machine has.
    """
    from torch._inductor import config

    configured = config.cpp.cxx
    candidates = configured if isinstance(configured, (list, tuple)) else (configured,)
    return tuple(c for c in candidates if c)


def use_inductor_cache() -> str:
    """Point inductor's on-disk caches into aigcbench's cache, unless the user chose a folder; return it.

    Must run before the first compile in the process: inductor reads the
    variable whenever it looks a cache entry up. Importing inductor (which
    `import torch._dynamo` does) already sets the variable to inductor's
    default folder, so that value counts as unset: it cannot be told apart
    from a user naming the default, which means the same thing.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    chosen = os.environ.get(INDUCTOR_CACHE_ENV)
    if not chosen or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
        os.environ[INDUCTOR_CACHE_ENV] = str(cache_dir() / "inductor")
    return os.environ[INDUCTOR_CACHE_ENV]


class TorchCompileBackend(TorchDeviceNames, Backend):
    name = "torch-compile"
    compiles = True
    description = "torch.compile (inductor): fused kernels; compile time is cold start"
    precisions = ("fp32", "fp16", "bf16")
    trains = True
    distributions = ("torch",)
    options = {
        "mode": f"torch.compile mode: {', '.join(MODES)} (default: default)",
        "fullgraph": "true/false: fail instead of splitting the model at a graph break (default false)",
        "dynamic": "true/false: compile for symbolic shapes instead of one graph per batch size (default false)",
        "threads": "intra-op CPU threads (torch.set_num_threads), baked into inductor's CPU kernels; "
        "default: torch's choice",
    }

    def available(self) -> str | None:
        missing = self.missing_library("torch")
        if missing is not None:
            return missing
        import torch

        if not hasattr(torch, "compile"):
            return f"torch {torch.__version__} has no torch.compile (needs torch ≥ 2.0)"
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return f"torch.compile in torch {torch.__version__} does not support Python {platform.python_version()}"
        compilers = cxx_candidates()
        if not any(shutil.which(c) for c in compilers):
            return f"no C++ compiler ({' or '.join(compilers) or 'g++'}) for inductor's CPU code"
        return None

    def check_options(self, options: Mapping[str, str]) -> None:
        CompileSettings.parse(options)


    def check_device(self, device: str, precision: str) -> None:
        check_precision(resolve_device(device), precision)

    def prepare(
        self,
        module: "torch.nn.Module",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> CompiledSession:
        """Compile `module` and run it once on `example_inputs`, so the session is compiled for their shapes.

        With `dynamic=false` a call with another batch size recompiles: the
        fidelity check may call with a smaller batch than the measured one;
        that recompile happens after the measured loop and is not timed.
        """
        import torch

        settings = CompileSettings.parse(options)
        torch_device = resolve_device(device)
        dtype = dtype_of(precision)
        # Before compiling: inductor specialises its CPU kernels to the thread count it sees.
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        inductor_cache = use_inductor_cache()
        train = context.mode == "train"
        module = module.train(train).to(device=torch_device, dtype=dtype)
        compiled = torch.compile(
            module, backend="inductor", mode=settings.mode, fullgraph=settings.fullgraph, dynamic=settings.dynamic
        )
        cuda_graphs = torch_device.type == "cuda" and settings.mode in CUDA_GRAPH_MODES
        info = _info(settings, precision, inductor_cache, cuda_graphs)
        session = CompiledSession(compiled, torch_device, dtype, info, copy_outputs=cuda_graphs, train=train)
        session(*(t.to(torch_device) for t in example_inputs))
        session.synchronize()
        return session


def _info(settings: CompileSettings, precision: str, inductor_cache: str, cuda_graphs: bool) -> dict[str, Any]:
    import torch

    return {
        "precision_run": precision,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "compiler": "inductor",
        "mode": settings.mode,
        "fullgraph": settings.fullgraph,
        "dynamic": settings.dynamic,
        "cuda_graphs": cuda_graphs,
        "inductor_cache_dir": inductor_cache,
    }
