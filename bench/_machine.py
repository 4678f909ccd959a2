"""What every benchmark prints about the machine it ran on (shared by the bench/ scripts)."""
from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_header() -> str:
    """The CPU's model name and microarchitecture (from its CPUID family and model), and the
    kernel paths rnnkit can run on it: the first line of every benchmark's header."""
    from rnnkit.nn.cpu import describe

    d = describe()
    return (f"{d['cpu']} ({d['microarchitecture']}, family {d['family']:#x} model "
            f"{d['model']:#x}); rnnkit kernel paths here: {', '.join(d['supported_paths'])}")


def isa_list(arg: str | None) -> list[str]:
    """The kernel paths a benchmark's --isa names: 'all' (every path this CPU supports, best
    first), a comma-separated list, or None (the path selected at load time)."""
    from rnnkit.nn.backend import kernels

    K = kernels()
    if not arg:
        return [K.get_isa()]
    supported = K.supported_isas()
    if arg == "all":
        return supported[::-1]
    paths = arg.split(",")
    bad = [p for p in paths if p not in supported]
    if bad:
        raise SystemExit(f"error: --isa {','.join(bad)}: this CPU runs {', '.join(supported)}")
    return paths
