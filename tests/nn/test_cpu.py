"""What rnnkit reports of the CPU: microarchitecture names from CPUID numbers, /proc/cpuinfo
parsing, and the report agreeing with the kernels' own selection."""
import pytest

from rnnkit.nn import cpu

K = pytest.importorskip("rnnkit.nn._kernels")


@pytest.mark.parametrize("vendor,family,model,name", [
    ("AuthenticAMD", 0x1A, 0x02, "Zen 5"), ("AuthenticAMD", 0x1A, 0x44, "Zen 5"),
    ("AuthenticAMD", 0x19, 0x11, "Zen 4"), ("AuthenticAMD", 0x19, 0x61, "Zen 4"),
    ("AuthenticAMD", 0x19, 0x01, "Zen 3"), ("AuthenticAMD", 0x19, 0x21, "Zen 3"),
    ("AuthenticAMD", 0x17, 0x31, "Zen 2"), ("GenuineIntel", 6, 0x8F, "Sapphire Rapids"),
    ("GenuineIntel", 6, 0x55, "Skylake-X / Cascade Lake / Cooper Lake"),
    ("GenuineIntel", 6, 0x97, "Alder Lake"), ("GenuineIntel", 0x19, 0x11, "unknown"),
    ("HygonGenuine", 0x18, 0x01, "unknown")])
def test_microarchitecture_from_cpuid_numbers(vendor, family, model, name):
    assert cpu.microarchitecture(vendor, family, model) == name


def test_cpuinfo_fields_of_the_first_processor(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD Ryzen 9 7950X "
                 "16-Core Processor\nflags\t\t: fpu avx avx2 fma avx512f\n\n"
                 "processor\t: 1\nmodel name\t: other\n\n")
    fields = cpu._cpuinfo(str(f))
    assert fields["model name"] == "AMD Ryzen 9 7950X 16-Core Processor"
    assert fields["vendor_id"] == "AuthenticAMD" and "other" not in fields.values()
    d = cpu.describe(str(f))
    assert d["cpu"] == "AMD Ryzen 9 7950X 16-Core Processor"
    assert d["flags"] == {"avx": True, "avx2": True, "fma": True, "bmi2": False, "f16c": False,
                          "movbe": False, "avx512f": True, "avx512bw": False, "avx512cd": False,
                          "avx512dq": False, "avx512vl": False}
    assert cpu._cpuinfo(str(tmp_path / "missing")) == {}


def test_report_follows_the_kernels_selection():
    old, threads = K.get_isa(), K.get_num_threads()
    try:
        for path in K.supported_isas():
            K.set_isa(path)
            K.set_num_threads(1)
            d = cpu.describe()
            assert (d["kernel_path"], d["threads"]) == (path, 1)
            assert d["gemm_backend"] == ("blas" if path == "generic" else "packed")
            assert d["supported_paths"] == K.supported_isas()
            assert path in cpu.summary_line()
    finally:
        K.set_isa(old)
        K.set_num_threads(threads)
