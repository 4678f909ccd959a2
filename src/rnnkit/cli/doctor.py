"""`rnnkit doctor`: the CPU, the kernel path rnnkit selected on it, the thread count and the
BLAS in use: what a bug report about speed or numbers needs."""
from __future__ import annotations

from typing import Annotated

import typer

from ..nn.cpu import describe
from ._common import out, print_json
from ._render import doctor_table

app = typer.Typer()


@app.command(short_help="Print the CPU, the kernel path, the threads and the BLAS, for bug reports.",
             epilog="Examples:\n\n"
             "rnnkit doctor\n\n"
             "RNNKIT_ISA=avx2 RNNKIT_NUM_THREADS=1 rnnkit doctor --json")
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON "
                                          "document.")] = False,
):
    """Print the CPU (model, microarchitecture, the instruction-set flags the kernels use), the
    kernel path selected (avx512, avx2 or generic; RNNKIT_ISA overrides it), the threads
    (RNNKIT_NUM_THREADS) and the BLAS libraries loaded. Paste it into bug reports.
    """
    report = describe()
    if as_json:
        print_json(report)
    else:
        out.print(doctor_table(report))
