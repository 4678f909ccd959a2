"""`rnnkit plot` and `rnnkit diagnose`: looking inside trained recurrent models. Plotting needs
matplotlib (the `plot` extra), which the library imports only when it draws."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import RnnkitError
from ..models.rnnlm import load
from ..report.diagnose import gradient_by_distance
from ..report.plots import check_png_name, plot_curves, plot_gradients, require_matplotlib
from ..text.prepare import load_data
from ..training import load_records
from ..text.textio import check_output
from ._common import JsonSummary, err, out, print_json, writing
from ._render import gradient_table

app = typer.Typer()


@app.command(epilog="Example: rnnkit plot lstm.rnnkit --out curves.png")
def plot(
    source: Annotated[Path, typer.Argument(help="A recurrent model file, or the metrics.jsonl "
                                           "written beside it while training.")],
    out_path: Annotated[Path, typer.Option("--out", help="The PNG file to write.")],
    as_json: JsonSummary = False,
):
    """Draw the learning curves (training and validation perplexity per epoch) as a PNG.

    Needs matplotlib: pip install 'rnnkit\\[plot]'.
    """
    check_png_name(out_path, "--out")
    with writing(out_path, [source]):
        records = load_records(source)
        require_matplotlib()
        info = plot_curves(records, out_path, title=f"learning curves: {source.name}")
    if as_json:
        print_json(info)
    else:
        err.print(f"wrote {out_path} ({info['epochs']} epochs)", markup=False)


@app.command(epilog="Examples:\n\n"
             "rnnkit diagnose lstm.rnnkit --data synth/ --max-distance 40\n\n"
             "rnnkit diagnose rnn.rnnkit lstm.rnnkit --data synth/ --plot gradients.png")
def diagnose(
    models: Annotated[list[Path], typer.Argument(help="One or more recurrent model files.",
                                                 show_default=False)],
    data: Annotated[str, typer.Option(help="A corpus directory made by `rnnkit prepare` (or "
                                      "`rnnkit synth`), or a text file.")],
    split: Annotated[str, typer.Option(help="Which split to read: valid, test or train.")] = "valid",
    max_distance: Annotated[int, typer.Option(help="The largest distance k, in steps.")] = 30,
    streams: Annotated[int, typer.Option(help="Parallel streams averaged over.")] = 32,
    positions: Annotated[int, typer.Option(help="Positions t per stream averaged over.")] = 4,
    plot_path: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the curves to "
                                                      "this PNG (needs rnnkit\\[plot]).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the measurements as JSON.")] = False,
):
    """Measure how the gradient of the loss at step t w.r.t. the hidden state at t-k decays.

    Vanishing for a tanh RNN, persisting for an LSTM.
    For k = 1, 2, ... the table shows the mean norm of dL_t/dh_(t-k) per layer
    and the last layer's ratio to its value at k = 1.
    """
    if plot_path is not None:
        check_png_name(plot_path, "--plot")
        require_matplotlib()
    check_output(plot_path, [data, *models], flag="--plot")
    corpus = load_data(data)
    if split not in corpus:
        raise RnnkitError(f"{data}: no {split!r} split (it has {', '.join(corpus.splits)}); "
                          f"choose one with --split")
    results = {}
    for path in models:
        model = load(path)
        r = gradient_by_distance(model, corpus.ids_in(split, model.vocab),
                                 max_distance=max_distance, streams=streams, positions=positions)
        r["model"] = str(path)
        results[path.name if path.name not in results else str(path)] = r
    if plot_path is not None:
        plot_gradients(results, plot_path)
    if as_json:
        print_json({"split": split, "models": list(results.values()),
                    "plot": None if plot_path is None else str(plot_path)})
        return
    for name, r in results.items():
        out.print(f"{name} ({r['model_type']}): mean ||dL_t/dh_(t-k)|| over {r['streams']} "
                  f"streams x {len(r['positions'])} positions", markup=False, soft_wrap=True)
        out.print(gradient_table(r))
    if plot_path is not None:
        err.print(f"wrote {plot_path}", markup=False)
