"""The hardware catalog: the packaged specs, user overrides, refusals, GPU names, measured entries, `list hardware`."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from aigcbench.bench.errors import UserError
from aigcbench.bench.record import Record
from aigcbench.bench.store import Store
from aigcbench.reports.plan.catalog import COLUMNS, PRECISIONS, Catalog, HardwareSpec, load_catalog
from aigcbench.reports.plan.devices import match_gpu, measured_entries, nearest_priced

from .test_cli import cli, invoke

CATALOG = load_catalog()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ the packaged catalog

def test_catalog_covers_thirty_devices_of_every_main_kind() -> None:
    assert len(CATALOG) >= 30
    assert len(set(CATALOG.ids())) == len(CATALOG)
    assert {"gpu", "cpu", "tpu", "fpga"} <= {spec.kind for spec in CATALOG}


@pytest.mark.parametrize("spec", list(CATALOG), ids=lambda spec: spec.id)
def test_every_entry_has_a_source_and_only_positive_numbers(spec: HardwareSpec) -> None:
    assert spec.sources and all(source.strip() for source in spec.sources)
    assert spec.origin == "catalog" and spec.vendor and spec.name
    numbers = [spec.memory_bytes, spec.bandwidth_bytes_per_s, spec.tdp_w, spec.launch_price_usd,
               spec.cloud_usd_per_hour, *spec.peaks.values()]
    assert all(value is None or (value > 0 and math.isfinite(value)) for value in numbers)
    assert set(spec.peaks) <= set(PRECISIONS)


def test_units_are_converted_to_si_and_back() -> None:
    h100 = CATALOG.get("nvidia-h100-sxm")
    assert h100.peak_flops("bf16") == pytest.approx(989.5e12)
    assert h100.peak_flops("int8") == pytest.approx(1979e12)
    assert h100.memory_bytes == 80 * 10**9 and h100.bandwidth_bytes_per_s == pytest.approx(3350e9)
    t4 = CATALOG.get("nvidia-t4")
    assert t4.peak_flops("bf16") is None  # Turing has no bf16: empty cell, not zero
    row = t4.to_dict()
    assert row["peak_tflops"] == {"fp32": 8.1, "fp16": 65.0, "int8": 130.0}
    assert row["memory_gb"] == 16.0 and row["memory_bw_gbs"] == 320.0 and row["cloud_usd_per_hour"] == 0.526
    assert row["origin"] == "catalog" and row["sources"] == list(t4.sources)
    json.dumps(row, allow_nan=False)
    with pytest.raises(ValueError, match="unknown precision"):
        t4.peak_flops("fp64")


def test_sources_are_split_on_semicolons() -> None:
    assert len(CATALOG.get("nvidia-t4").sources) == 5
    assert CATALOG.get("nvidia-t4").sources[0].startswith("Lightning-AI/pytorch-lightning@")


def test_unknown_id_names_the_close_ones() -> None:
    with pytest.raises(UserError, match=r"unknown hardware 'nvidia-h10'; close: nvidia-h100-sxm, nvidia-h100-pcie"):
        CATALOG.get("nvidia-h10")
    with pytest.raises(UserError, match=r"unknown hardware 'qqq'; known: nvidia-t4, .*\(30 in all"):
        CATALOG.get("qqq")


def test_with_entries_replaces_in_place_and_appends_new_ones() -> None:
    cheap = dataclasses.replace(CATALOG.get("nvidia-l4"), cloud_usd_per_hour=0.1)
    new = HardwareSpec(id="lab-box", vendor="Lab", name="Lab box", kind="cpu", peaks={"fp32": 1e12})
    merged = CATALOG.with_entries([cheap, new])
    assert merged.ids() == [*CATALOG.ids(), "lab-box"]
    assert merged.get("nvidia-l4").cloud_usd_per_hour == 0.1
    assert CATALOG.get("nvidia-l4").cloud_usd_per_hour == 0.8048  # the original is unchanged
    assert len(merged) == len(CATALOG) + 1 and "lab-box" in merged and "lab-box" not in CATALOG


def test_specs_and_catalogs_survive_pickling_and_deep_copies() -> None:
    import copy
    import pickle

    spec = CATALOG.get("nvidia-h100-sxm")
    assert pickle.loads(pickle.dumps(spec)) == spec and copy.deepcopy(spec) == spec
    with pytest.raises(TypeError):
        spec.peaks["fp32"] = 1.0  # type: ignore[index]
    assert pickle.loads(pickle.dumps(CATALOG)).ids() == CATALOG.ids()


# ------------------------------------------------------------------ user files

def _only_changes(before: HardwareSpec, after: HardwareSpec) -> set[str]:
    fields = {f.name for f in dataclasses.fields(HardwareSpec)} - {"origin", "sources"}
    return {name for name in fields if getattr(before, name) != getattr(after, name)}


@pytest.mark.parametrize("name, text", [
    ("team.csv", "device_id,cloud_usd_per_hour\nnvidia-l4,0.55\n"),
    ("team.csv", f"{','.join(COLUMNS)}\nnvidia-l4{',' * 14}0.55,,,\n"),  # a whole row, only the price filled
    ("team.toml", '[[device]]\ndevice_id = "nvidia-l4"\ncloud_usd_per_hour = 0.55\n'),
])
def test_a_negotiated_price_overrides_only_that_field(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    catalog = load_catalog(path)
    before, after = CATALOG.get("nvidia-l4"), catalog.get("nvidia-l4")
    assert after.cloud_usd_per_hour == 0.55
    assert _only_changes(before, after) == {"cloud_usd_per_hour"}
    assert after.origin == f"file:{path}"
    assert after.sources[:-1] == before.sources and after.sources[-1].endswith("sets cloud_usd_per_hour")
    assert catalog.ids() == CATALOG.ids()


def test_a_file_adds_devices_and_overrides_single_peaks(tmp_path: Path) -> None:
    path = write(tmp_path, "lab.toml", """
[[device]]
device_id = "lab-fpga"
kind = "fpga"
vendor = "Lab"
int8_tops = 3.5
memory_gb = 4
source_urls = ["https://example.org/a", "https://example.org/b"]

[[device]]
device_id = "nvidia-t4"
fp16_tflops = 60
""")
    catalog = load_catalog(path)
    fpga = catalog.get("lab-fpga")
    assert catalog.ids()[-1] == "lab-fpga" and fpga.kind == "fpga" and fpga.name == "lab-fpga"
    assert fpga.peaks == {"int8": 3.5e12} and fpga.memory_bytes == 4 * 10**9
    assert fpga.sources == ("https://example.org/a", "https://example.org/b") and fpga.origin == f"file:{path}"
    t4 = catalog.get("nvidia-t4")
    assert t4.peak_flops("fp16") == 60e12 and t4.peak_flops("int8") == 130e12 and t4.peak_flops("fp32") == 8.1e12


L4_TOML = '[[device]]\ndevice_id = "nvidia-l4"\n'


@pytest.mark.parametrize("name, text, message", [
    ("c.csv", "device_id,fp16_tflops\nnvidia-l4,1\nnvidia-t4,fast\n",
     "c.csv line 3, column fp16_tflops: 'fast' is not a number"),
    ("c.csv", "device_id,memory_bw_gbs\nnvidia-l4,-300\n",
     "c.csv line 2, column memory_bw_gbs: '-300' must be positive"),
    ("c.csv", "device_id,bf16_tflops\nnvidia-l4,-1\n", "c.csv line 2, column bf16_tflops: '-1' must be positive"),
    ("c.csv", "device_id,cloud_usd_per_hour\nnvidia-l4,-0.5\n",
     "c.csv line 2, column cloud_usd_per_hour: '-0.5' must not be negative"),
    ("c.csv", "device_id,fp32_tflops\nnvidia-l4,nan\n",
     "c.csv line 2, column fp32_tflops: 'nan' is not a finite number"),
    ("c.csv", "device_id,fp16_tflop\nnvidia-l4,1\n",
     "c.csv line 1, column fp16_tflop: unknown column; did you mean fp16_tflops?"),
    ("c.csv", "cloud_usd_per_hour\n1\n", "c.csv line 1: no device_id column"),
    ("c.csv", "device_id,cloud_usd_per_hour\nnvidia-l4,1\n,2\n", "c.csv line 3, column device_id: missing device_id"),
    ("c.csv", "device_id,kind\nmy-npu,npx\n", "c.csv line 2, column kind: unknown kind 'npx'; did you mean npu?"),
    ("c.csv", "device_id,name\nmy-box,Box\n",
     "c.csv line 2, column kind: 'my-box' is not in the catalog, so it needs a kind"),
    ("c.csv", "device_id,tdp_w\nnvidia-l4,1\nnvidia-l4,2\n",
     "c.csv line 3, column device_id: 'nvidia-l4' is given twice"),
    ("c.csv", "device_id,tdp_w\nnvidia-l4,1,2\n", "c.csv line 2: 3 cells, but the header names 2 columns"),
    ("c.csv", "", "c.csv: empty file"),
    ("c.toml", L4_TOML + 'cloud_usd_per_hour = "cheap"\n',
     "c.toml device 'nvidia-l4', key cloud_usd_per_hour: 'cheap' is not a number"),
    ("c.toml", L4_TOML + "tdp_w = true\n", "c.toml device 'nvidia-l4', key tdp_w: True is not a number"),
    ("c.toml", L4_TOML + "fp8_tflop = 1\n",
     "c.toml device 'nvidia-l4', key fp8_tflop: unknown column; did you mean fp8_tflops?"),
    ("c.toml", "[[device]]\ncloud_usd_per_hour = 1\n", "c.toml device #1, key device_id: missing device_id"),
    ("c.toml", '[[device]]\ndevice_id = "x"\nkind = "gpuu"\n',
     "c.toml device 'x', key kind: unknown kind 'gpuu'; did you mean gpu?"),
    ("c.toml", L4_TOML + "tdp_w = = 3\n", "c.toml: TOML syntax error: Invalid value (at line 3, column"),
    ("c.toml", "[nvidia-l4]\ntdp_w = 3\n",
     "c.toml: unknown table [nvidia-l4]; write each device as a [[device]] table"),
    ("c.json", "{}", "--catalog c.json: unknown format '.json'; choose from .csv, .toml"),
])
def test_a_malformed_file_is_refused_naming_the_place(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(UserError) as caught:
        load_catalog(path)
    assert str(caught.value).replace(f"{tmp_path}/", "").startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_catalog(tmp_path / "absent.csv")


# ------------------------------------------------------------------ GPU names

@pytest.mark.parametrize("name, memory, expected", [
    ("NVIDIA H200", 143771 * 2**20, "nvidia-h200-sxm"),
    ("NVIDIA H100 80GB HBM3", None, "nvidia-h100-sxm"),
    ("NVIDIA H100 PCIe", 81559 * 2**20, "nvidia-h100-pcie"),
    ("Tesla T4", 15360 * 2**20, "nvidia-t4"),
    ("NVIDIA A100-SXM4-80GB", None, "nvidia-a100-80gb-sxm"),
    ("NVIDIA A100-SXM4-40GB", None, "nvidia-a100-40gb-sxm"),
    ("NVIDIA A100-SXM4", 40960 * 2**20, "nvidia-a100-40gb-sxm"),  # memory alone tells 40 from 80
    ("NVIDIA L4", 23034 * 2**20, "nvidia-l4"),
    ("NVIDIA L40S", None, "nvidia-l40s"),
    ("NVIDIA GeForce RTX 4090", None, "nvidia-rtx-4090"),
    ("NVIDIA A100-SXM4", None, None),  # 40 or 80 GB: unsure
    ("NVIDIA A100-PCIE-40GB", None, None),  # the catalog has only SXM A100s
    ("NVIDIA H200 NVL", None, None),
    ("NVIDIA GeForce RTX 3090 Ti", None, None),
    ("NVIDIA RTX A6000", None, None),
    ("NVIDIA H100", None, None),  # SXM or PCIe: unsure
])
def test_match_gpu_maps_nvml_names_to_catalog_ids(name: str, memory: int | None, expected: str | None) -> None:
    assert match_gpu(name, CATALOG, memory_bytes=memory) == expected


# ------------------------------------------------------------------ measured entries

CPU_ENV = {"hardware_key": "amd-epyc-2c", "memory_bytes": 25 * 10**9, "gpus": [],
           "cpu": {"model": "AMD EPYC", "vendor": "AuthenticAMD", "logical_cores": 2, "affinity_cores": 2}}
GPU_ENV = {"hardware_key": "intel-xeon-16c+1x-nvidia-h200", "memory_bytes": 2 * 10**12,
           "cpu": {"model": "Intel Xeon", "vendor": "GenuineIntel", "logical_cores": 16},
           "gpus": [{"index": 0, "name": "NVIDIA H200", "memory_bytes": 143771 * 2**20}]}


def ceiling(kind: str, precision: str, rate: float, *, device: str = "cpu", env: dict[str, Any] = CPU_ENV,
            when: str = "2026-11-01T10:00:00+00:00", warnings: tuple[str, ...] = ()) -> Record:
    """A ceiling record as `aigcbench calibrate` writes it (the contract in bench/ceilings.py)."""
    name = "copy" if kind == "copy" else f"gemm-{precision}"
    return Record(
        status="ok",
        workload={"name": "ceiling", "family": "ceiling", "size": kind, "unit": "byte" if kind == "copy" else "flop",
                  "params": 0, "param_bytes": 0, "flops_per_item": None, "calls_per_batch": {}, "config": {"n": 256}},
        backend={"name": "pytorch", "version": "2.13.0", "device": device, "precision": precision,
                 "options": {"threads": 2}},
        scenario={"name": "ceiling", "batch_size": 1}, environment=env,
        metrics={"ceiling_per_s": rate, "throughput_items_per_s": rate * 0.9, "latency_s": {"p50": 0.01},
                 "iterations": 5},
        samples={"latency_s": [0.01] * 5}, warnings=warnings, labels={"ceiling": name},
        config={"workload": "ceiling", "backend": "pytorch", "size": kind, "device": device,
                "precision": precision, "scenario": "ceiling", "batch_size": 1},
        created_at=when,
    )


def test_a_cpu_entry_takes_the_newest_calibration() -> None:
    old = [ceiling("gemm", "fp32", 5e11, when="2026-10-01T00:00:00+00:00"),
           ceiling("copy", "fp32", 9e10, when="2026-10-01T00:00:00+00:00")]
    new = [ceiling("gemm", "fp32", 2e11), ceiling("gemm", "bf16", 4e11),
           ceiling("gemm", "fp16", 1e10, warnings=("emulated: fp16 GEMM reaches only 0.05×",)),
           ceiling("copy", "fp32", 2e10)]
    [spec] = measured_entries([*old, *new], CATALOG)
    assert spec.id == "amd-epyc-2c" and spec.kind == "cpu" and spec.origin == "measured"
    assert spec.vendor == "AMD" and spec.name == "AMD EPYC (2 cores)" and spec.memory_bytes == 25 * 10**9
    assert dict(spec.peaks) == {"fp32": 2e11, "fp16": 1e10, "bf16": 4e11}  # the newer, lower fp32 wins
    assert spec.bandwidth_bytes_per_s == 2e10
    assert spec.measured_run_ids == tuple(r.run_id for r in new)
    assert len(spec.sources) == 4 and all(s.startswith("measured by aigcbench calibrate, run ") for s in spec.sources)
    assert spec.sources[0].endswith("at 2026-11-01T10:00:00+00:00") and "emulated precisions: fp16" in spec.notes
    assert spec.tdp_w is None and spec.cloud_usd_per_hour is None and spec.gpu_catalog_id is None


def test_a_gpu_machine_has_a_gpu_entry_priced_from_the_catalog_and_a_cpu_one() -> None:
    records = [ceiling("gemm", "bf16", 7e14, device="cuda:0", env=GPU_ENV),
               ceiling("gemm", "bf16", 6e14, device="cuda:0", env=GPU_ENV),  # same run: the best rate counts
               ceiling("copy", "fp32", 4e12, device="cuda:0", env=GPU_ENV),
               ceiling("gemm", "fp32", 3e12, env=GPU_ENV)]
    gpu, cpu = sorted(measured_entries(records, CATALOG), key=lambda s: s.kind, reverse=True)
    assert gpu.id == GPU_ENV["hardware_key"] and gpu.kind == "gpu" and gpu.name == "NVIDIA H200"
    assert gpu.gpu_catalog_id == "nvidia-h200-sxm" and gpu.vendor == "NVIDIA"
    h200 = CATALOG.get("nvidia-h200-sxm")
    assert (gpu.tdp_w, gpu.cloud_usd_per_hour, gpu.price_source_date) == \
        (h200.tdp_w, h200.cloud_usd_per_hour, h200.price_source_date)
    assert gpu.peaks == {"bf16": 7e14} and gpu.bandwidth_bytes_per_s == 4e12
    assert gpu.memory_bytes == 143771 * 2**20 and len(gpu.measured_run_ids) == 3
    assert cpu.id == f"{GPU_ENV['hardware_key']}/cpu" and cpu.vendor == "Intel" and cpu.peaks == {"fp32": 3e12}
    assert cpu.memory_bytes == 2 * 10**12 and cpu.tdp_w is None


def test_an_unknown_gpu_keeps_unknown_prices_and_other_records_are_ignored() -> None:
    env = {**GPU_ENV, "hardware_key": "box+1x-mystery", "gpus": [{"index": 0, "name": "NVIDIA RTX A6000"}]}
    workload_record = dataclasses.replace(ceiling("gemm", "fp32", 1e9), workload={"name": "dcgan", "size": "tiny"})
    [gpu] = measured_entries([ceiling("gemm", "fp32", 3e13, device="cuda:0", env=env), workload_record], CATALOG)
    assert gpu.gpu_catalog_id is None and gpu.cloud_usd_per_hour is None and gpu.vendor == "NVIDIA"
    assert "no catalog entry matches 'NVIDIA RTX A6000'" in gpu.notes


def test_nearest_priced_borrows_from_the_same_kind_and_vendor() -> None:
    [local] = measured_entries([ceiling("gemm", "fp32", 1.5e11), ceiling("copy", "fp32", 2e10)], CATALOG)
    assert nearest_priced(local, CATALOG).id == "amd-epyc-zen4-2vcpu-vm"
    big = dataclasses.replace(local, peaks={"fp32": 7e12}, bandwidth_bytes_per_s=4.5e11)
    assert nearest_priced(big, CATALOG).id == "amd-epyc-9654"
    alone = dataclasses.replace(local, vendor="Nobody")
    assert nearest_priced(alone, CATALOG) is None


# ------------------------------------------------------------------ aigcbench list hardware

def test_list_hardware_json_lists_the_catalog() -> None:
    result = invoke("list", "hardware", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) >= 30 and [row["id"] for row in rows] == CATALOG.ids()
    assert all(row["sources"] and row["origin"] == "catalog" for row in rows)


def test_list_hardware_appends_the_stores_measured_machines(tmp_path: Path, store_path: Path) -> None:
    with Store.open(str(store_path)) as store:
        store.append_many([ceiling("gemm", "fp32", 2e11), ceiling("copy", "fp32", 2e10)])
    catalog = write(tmp_path, "team.csv", "device_id,cloud_usd_per_hour\nnvidia-l4,0.55\n")
    result = invoke("list", "hardware", "--json", "--store", str(store_path), "--catalog", str(catalog))
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows["nvidia-l4"]["cloud_usd_per_hour"] == 0.55
    measured = rows["amd-epyc-2c"]
    assert list(rows)[-1] == "amd-epyc-2c" and measured["origin"] == "measured"
    assert measured["peak_tflops"] == {"fp32": 0.2} and measured["memory_bw_gbs"] == 20.0


def test_list_hardware_never_creates_a_store(store_path: Path) -> None:
    assert invoke("list", "hardware", "--json", "--store", str(store_path)).exit_code == 0
    assert not store_path.exists()


def test_list_table_shows_the_hardware_with_sources(store_path: Path) -> None:
    result = invoke("list", "--store", str(store_path))
    assert result.exit_code == 0
    assert "ddpm" in result.stdout and "pytorch" in result.stdout and "hardware" in result.stdout
    wide = cli("list", "hardware", "--store", str(store_path), env={"COLUMNS": "160"})
    assert wide.returncode == 0, wide.stderr
    assert "nvidia-h100-sxm" in wide.stdout and "google-tpu-v6e" in wide.stdout and "989.5" in wide.stdout
    assert "Lightning-AI/pytorch-lightning +4" in wide.stdout  # the T4's first source, shortened


def test_list_default_json_has_all_three(store_path: Path) -> None:
    result = invoke("list", "--json", "--store", str(store_path))
    assert set(json.loads(result.stdout)) == {"workloads", "backends", "hardware"}


def test_bad_catalog_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "team.csv", "device_id,fp16_tflops\nnvidia-t4,fast\n")
    done = cli("list", "hardware", "--catalog", str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "line 2, column fp16_tflops: 'fast' is not a number" in done.stderr
    assert done.stdout == ""
