"""What rnnkit knows of the CPU it runs on and the kernels it chose there: the model name,
vendor, CPUID family and model, the microarchitecture they name, the instruction-set flags the
kernels care about, the selected kernel path (csrc/rk_isa.h), the thread count and the BLAS
libraries loaded. For `rnnkit doctor` (what a user pastes into a bug report) and the headers of
the benchmarks (bench/)."""
from __future__ import annotations

import platform

from .backend import kernels

# the flags that decide the kernel paths: x86-64-v3 for the avx2 path (AVX2, FMA, BMI2, F16C,
# MOVBE, ...) and x86-64-v4 for the avx512 path (AVX-512 F, BW, CD, DQ, VL)
FLAGS = ("avx", "avx2", "fma", "bmi2", "f16c", "movbe", "avx512f", "avx512bw", "avx512cd",
         "avx512dq", "avx512vl")

# (vendor, family, first model, last model, name): CPUID numbers as the vendors give them
_UARCH = [
    ("AuthenticAMD", 0x17, 0x00, 0x2F, "Zen / Zen+"),
    ("AuthenticAMD", 0x17, 0x30, 0xFF, "Zen 2"),
    ("AuthenticAMD", 0x19, 0x00, 0x0F, "Zen 3"),
    ("AuthenticAMD", 0x19, 0x10, 0x1F, "Zen 4"),
    ("AuthenticAMD", 0x19, 0x20, 0x5F, "Zen 3"),
    ("AuthenticAMD", 0x19, 0x60, 0xAF, "Zen 4"),
    ("AuthenticAMD", 0x1A, 0x00, 0xFF, "Zen 5"),
    ("GenuineIntel", 6, 0x3C, 0x3C, "Haswell"), ("GenuineIntel", 6, 0x3F, 0x3F, "Haswell"),
    ("GenuineIntel", 6, 0x45, 0x46, "Haswell"), ("GenuineIntel", 6, 0x3D, 0x3D, "Broadwell"),
    ("GenuineIntel", 6, 0x47, 0x47, "Broadwell"), ("GenuineIntel", 6, 0x4F, 0x4F, "Broadwell"),
    ("GenuineIntel", 6, 0x56, 0x56, "Broadwell"),
    ("GenuineIntel", 6, 0x4E, 0x4E, "Skylake (client)"),
    ("GenuineIntel", 6, 0x5E, 0x5E, "Skylake (client)"),
    ("GenuineIntel", 6, 0x8E, 0x8E, "Kaby/Coffee/Whiskey Lake"),
    ("GenuineIntel", 6, 0x9E, 0x9E, "Kaby/Coffee Lake"),
    ("GenuineIntel", 6, 0xA5, 0xA6, "Comet Lake"),
    ("GenuineIntel", 6, 0x55, 0x55, "Skylake-X / Cascade Lake / Cooper Lake"),
    ("GenuineIntel", 6, 0x6A, 0x6C, "Ice Lake (server)"),
    ("GenuineIntel", 6, 0x7D, 0x7E, "Ice Lake (client)"),
    ("GenuineIntel", 6, 0x8C, 0x8D, "Tiger Lake"),
    ("GenuineIntel", 6, 0x8F, 0x8F, "Sapphire Rapids"),
    ("GenuineIntel", 6, 0xCF, 0xCF, "Emerald Rapids"),
    ("GenuineIntel", 6, 0xAD, 0xAE, "Granite Rapids"),
    ("GenuineIntel", 6, 0x97, 0x9A, "Alder Lake"),
    ("GenuineIntel", 6, 0xB7, 0xB7, "Raptor Lake"), ("GenuineIntel", 6, 0xBA, 0xBA, "Raptor Lake"),
    ("GenuineIntel", 6, 0xBF, 0xBF, "Raptor Lake"),
    ("GenuineIntel", 6, 0xAA, 0xAC, "Meteor Lake"),
    ("GenuineIntel", 6, 0xBD, 0xBD, "Lunar Lake"),
    ("GenuineIntel", 6, 0xC5, 0xC6, "Arrow Lake"),
]


def microarchitecture(vendor: str, family: int, model: int) -> str:
    """The microarchitecture that a CPUID vendor, family and model name, or "unknown"."""
    for v, f, lo, hi, name in _UARCH:
        if v == vendor and f == family and lo <= model <= hi:
            return name
    return "unknown"


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict:
    """The first processor's fields in /proc/cpuinfo ({} where there is none)."""
    fields: dict = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def describe(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """The CPU, the kernel path selected on it, the threads and the BLAS libraries in use."""
    from threadpoolctl import threadpool_info

    K = kernels()
    info = _cpuinfo(cpuinfo_path)
    k = K.cpu_info()
    vendor = info.get("vendor_id", "")
    flags = set(info.get("flags", "").split())
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "vendor": vendor,
        "family": k["family"],
        "model": k["model"],
        "microarchitecture": microarchitecture(vendor, k["family"], k["model"]),
        "flags": {f: f in flags for f in FLAGS},
        "logical_cpus": _usable_cpus(),
        "kernel_path": k["isa"],
        "supported_paths": k["supported_isas"],
        "gemm_backend": k["gemm_backend"],
        "blocking": k["blocking"],
        "threads": K.get_num_threads(),
        "blas": [{key: lib.get(key) for key in ("internal_api", "version", "architecture",
                                                 "num_threads", "filepath")}
                 for lib in threadpool_info() if lib.get("user_api") == "blas"],
    }


def _usable_cpus() -> int:
    import os
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def summary_line() -> str:
    """One line for a benchmark's header: CPU, microarchitecture, kernel path, threads."""
    d = describe()
    return (f"{d['cpu']} ({d['microarchitecture']}, family {d['family']:#x} model "
            f"{d['model']:#x}); kernel path {d['kernel_path']} of "
            f"{', '.join(d['supported_paths'])}; {d['threads']} threads")
