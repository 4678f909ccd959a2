"""PyTorch state dicts (saved as safetensors) into rnnkit recurrent language models.

PyTorch's word_language_model names the tensors encoder.weight, rnn.*, decoder.*; the
architecture is read off their shapes, and the vocabulary rows are permuted so that rnnkit's
specials <unk>, <s>, </s> get the ids 0, 1, 2.

The output layer is either an nn.Linear (decoder.weight [V, H], decoder.bias [V]) or an
nn.AdaptiveLogSoftmaxWithLoss named `decoder` (decoder.head.weight [C0 + K, H], decoder.head.bias
when head_bias, decoder.tail.{i}.0.weight [D_i, H], decoder.tail.{i}.1.weight [S_i, D_i]); its
cutoffs, div_value and head_bias are read off those shapes (adaptive_from_shapes).
"""
from __future__ import annotations

import os

import numpy as np

from .. import modelfile
from ..errors import FormatError, InputError, ModelFileError
from ..text.textio import read_lines
from ..text.vocab import BOS, SPECIALS, Tokenizer, Vocab
from .rnnlm import RNNLM, Architecture

EOS_ALIASES = ("</s>", "<eos>", "<EOS>")
BOS_ALIASES = ("<s>", "<bos>", "<BOS>", "<sos>")
UNK_ALIASES = ("<unk>", "<UNK>", "<oov>")
MISSING_LOGIT = -30.0  # bias of an output row added for a special the model lacks: p ~ e^-30


def read_token_list(path: str | os.PathLike) -> list[str]:
    """A vocabulary file for import: one token per line in the model's id order, optionally
    followed by a TAB and a count (rnnkit's vocab.txt has that form)."""
    tokens = []
    for number, line in read_lines(path):
        token = line.split("\t")[0]
        if not token or token.strip() != token:
            raise FormatError(f"{path}:{number}: empty token or token with spaces; the "
                              f"vocabulary needs one token per line")
        tokens.append(token)
    if not tokens:
        raise FormatError(f"{path}: the vocabulary file is empty")
    if len(set(tokens)) != len(tokens):
        seen = set()
        dup = next(t for t in tokens if t in seen or seen.add(t))
        raise FormatError(f"{path}: the vocabulary lists {dup!r} twice")
    return tokens


def _div_value(path, H: int, dims: list[int]) -> float:
    """A div_value d with H // d^(i+1) == dims[i] for every tail cluster i (PyTorch's
    AdaptiveLogSoftmaxWithLoss: hsz = int(in_features // div_value ** (i + 1))), preferring a
    round one (4.0, PyTorch's default, then integers, halves, tenths), else ModelFileError."""
    lo, hi = 1.0, float("inf")   # d in (lo, hi]: floor(H / d^(i+1)) = D  <=>  H/(D+1) < d^(i+1) <= H/D
    for i, D in enumerate(dims):
        lo = max(lo, (H / (D + 1)) ** (1.0 / (i + 1)))
        hi = min(hi, (H / D) ** (1.0 / (i + 1)))

    def fits(d):
        return d >= 1 and all(int(H // (d ** (i + 1))) == D for i, D in enumerate(dims))

    candidates = [4.0] + [float(k) for k in range(1, 65)] + [k / 2 for k in range(2, 129)] \
        + [k / 10 for k in range(10, 641)]
    found = next((d for d in candidates if lo <= d <= hi and fits(d)), None)
    if found is None and hi < float("inf") and fits(hi):
        found = hi
    if found is None:
        raise ModelFileError(
            f"{path}: the tail projections have sizes {', '.join(map(str, dims))} for hidden "
            f"size {H}: no single div_value gives them as {H} // div_value^(i+1) (PyTorch's "
            f"AdaptiveLogSoftmaxWithLoss rule); was the model built another way?")
    return found


def adaptive_from_shapes(path, tensors: dict[str, np.ndarray], V: int, H: int
                         ) -> tuple[tuple[int, ...], float, bool]:
    """(cutoffs, div_value, head_bias) of the AdaptiveLogSoftmaxWithLoss named `decoder` in a
    state dict, read off its shapes: K clusters = the tail.{i} present, C0 = head rows - K,
    cutoffs[i + 1] = cutoffs[i] + S_i, and the last cluster must end at V."""
    def shape(name):
        t = tensors.get(name)
        if t is None:
            raise ModelFileError(f"{path}: {name} is missing (an adaptive softmax of "
                                 f"AdaptiveLogSoftmaxWithLoss names needs it)")
        return tuple(t.shape)

    K = 0
    while f"decoder.tail.{K}.0.weight" in tensors or f"decoder.tail.{K}.1.weight" in tensors:
        K += 1
    if K == 0:
        raise ModelFileError(f"{path}: decoder.head.weight without decoder.tail.0.0.weight: an "
                             f"adaptive softmax needs at least one tail cluster")
    head = shape("decoder.head.weight")
    if len(head) != 2 or head[1] != H:
        raise ModelFileError(f"{path}: decoder.head.weight has shape {list(head)}, expected "
                             f"[C0 + {K}, {H}] (hidden size {H})")
    C0 = head[0] - K
    if C0 < 1:
        raise ModelFileError(f"{path}: decoder.head.weight has {head[0]} rows for {K} tail "
                             f"clusters: no row is left for the head's words")
    cutoffs, dims = [C0], []
    for i in range(K):
        proj, out = shape(f"decoder.tail.{i}.0.weight"), shape(f"decoder.tail.{i}.1.weight")
        if len(proj) != 2 or proj[1] != H or proj[0] < 1:
            raise ModelFileError(f"{path}: decoder.tail.{i}.0.weight has shape {list(proj)}, "
                                 f"expected [D_{i}, {H}]")
        if len(out) != 2 or out[1] != proj[0] or out[0] < 1:
            raise ModelFileError(f"{path}: decoder.tail.{i}.1.weight has shape {list(out)}, "
                                 f"expected [S_{i}, {proj[0]}] (D_{i} = {proj[0]} from "
                                 f"decoder.tail.{i}.0.weight)")
        dims.append(proj[0])
        cutoffs.append(cutoffs[-1] + out[0])
    if cutoffs[-1] != V:
        raise ModelFileError(
            f"{path}: the adaptive softmax covers {cutoffs[-1]} words ({C0} in the head + "
            f"{' + '.join(str(b - a) for a, b in zip(cutoffs, cutoffs[1:]))} in the clusters) "
            f"but encoder.weight has {V} rows")
    return tuple(cutoffs[:-1]), _div_value(path, H, dims), "decoder.head.bias" in tensors


def _infer_architecture(path, tensors: dict[str, np.ndarray]) -> Architecture:
    names = sorted(tensors)
    if "encoder.weight" not in tensors or "rnn.weight_ih_l0" not in tensors:
        raise ModelFileError(
            f"{path}: not a PyTorch word-language-model state dict (expected encoder.weight, "
            f"rnn.weight_ih_l0, ..., decoder.weight, decoder.bias; found {', '.join(names[:8])}"
            f"{' ...' if len(names) > 8 else ''})")
    if any(n.startswith("rnn.weight_hr_l") for n in names):
        raise ModelFileError(f"{path}: LSTMs with projections (proj_size) are not supported")
    if any(n.endswith("_reverse") for n in names):
        raise ModelFileError(f"{path}: bidirectional RNNs cannot be language models here")
    layers = 0
    while f"rnn.weight_ih_l{layers}" in tensors:
        layers += 1
    for name in ("encoder.weight", "rnn.weight_hh_l0"):
        if name not in tensors:
            raise ModelFileError(f"{path}: {name} is missing")
        if tensors[name].ndim != 2 or 0 in tensors[name].shape:
            raise ModelFileError(f"{path}: {name} has shape {list(tensors[name].shape)}, "
                                 f"expected a non-empty matrix")
    V, E = tensors["encoder.weight"].shape
    G, H = tensors["rnn.weight_hh_l0"].shape
    if G == 4 * H:
        model_type = "lstm-peephole" if "rnn.weight_peep_l0" in tensors else "lstm"
    elif G == H:
        model_type = "rnn"
    elif G == 3 * H:
        raise ModelFileError(f"{path}: a GRU (weight_hh_l0 is [3H, H]); rnnkit has LSTM and "
                             f"tanh-RNN cells only")
    else:
        raise ModelFileError(f"{path}: rnn.weight_hh_l0 has shape [{G}, {H}], neither an LSTM "
                             f"([4H, H]) nor an RNN ([H, H])")
    if "decoder.head.weight" in tensors:
        cutoffs, div, head_bias = adaptive_from_shapes(path, tensors, int(V), int(H))
        return Architecture(model_type, int(V), int(E), int(H), layers, output="adaptive",
                            cutoffs=cutoffs, div_value=div, head_bias=head_bias)
    dec = tensors.get("decoder.weight")
    if dec is None:
        raise ModelFileError(f"{path}: decoder.weight is missing (or decoder.head.weight, for "
                             f"an AdaptiveLogSoftmaxWithLoss named decoder)")
    tie = E == H and dec.shape == tensors["encoder.weight"].shape and np.array_equal(
        dec, tensors["encoder.weight"])
    return Architecture(model_type, int(V), int(E), int(H), layers, tie_weights=bool(tie))


def _check_shapes(path, arch: Architecture, tensors: dict[str, np.ndarray]) -> None:
    """Every tensor the inferred architecture needs, with its exact shape, before any is copied;
    and no tensor it would silently ignore (a layer or a bias of another model)."""
    expected = dict(arch.tensor_shapes())
    optional = set()
    if arch.output == "full":
        expected.setdefault("decoder.weight", (arch.vocab_size, arch.hidden))
        optional = {"decoder.bias"}
    for name, shape in expected.items():
        t = tensors.get(name)
        if t is None:
            if name in optional:
                continue
            raise ModelFileError(f"{path}: {name} is missing (a {arch.layers}-layer "
                                 f"{arch.model_type} needs it, shape {list(shape)})")
        if tuple(t.shape) != tuple(shape):
            raise ModelFileError(f"{path}: {name} has shape {list(t.shape)}, expected "
                                 f"{list(shape)} for a {arch.layers}-layer {arch.model_type} "
                                 f"with V={arch.vocab_size}, E={arch.emb}, H={arch.hidden}")
    for name in expected:
        if name in tensors and not np.all(np.isfinite(tensors[name])):
            raise ModelFileError(f"{path}: tensor {name} holds NaN or infinite values (a "
                                 f"diverged or damaged model); nothing was imported")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ModelFileError(f"{path}: unexpected tensor{'s' if len(extra) > 1 else ''} "
                             f"{', '.join(extra[:4])} for a {arch.layers}-layer "
                             f"{arch.model_type}; is this a model of another kind?")


def from_torch_state(path: str | os.PathLike, vocab: str | os.PathLike | list[str],
                     model_type: str | None = None, tokenizer: Tokenizer | None = None,
                     backend=None) -> RNNLM:
    """An RNNLM from a PyTorch state dict saved as safetensors (no rnnkit metadata needed).

    `vocab` lists the model's tokens in its id order (a file or a list). rnnkit needs <unk>,
    <s>, </s> at ids 0, 1, 2, so rows are permuted: `<eos>` is taken as </s>; when the model has
    no <s> (PyTorch's word_language_model feeds `<eos>` before each sentence) <s> gets the
    embedding of </s> and an output row of probability ~e^-30; a missing <unk> likewise.
    model_type may be given as lstm-nofg (PyTorch cannot tell it from lstm by shapes).
    """
    if modelfile.read_header(path) is None:  # also: no such file
        raise ModelFileError(f"{path}: not a safetensors file (save the state dict with "
                             f"safetensors.torch.save_file(model.state_dict(), path))")
    tensors = {k: np.asarray(v) for k, v in modelfile.load_tensors(path).items()}
    for k, v in tensors.items():
        if v.dtype.kind != "f":
            raise ModelFileError(f"{path}: tensor {k} is {v.dtype}, expected floating point")
        tensors[k] = v.astype(np.float32)
    arch = _infer_architecture(path, tensors)
    if model_type is not None and model_type != arch.model_type:
        if {model_type, arch.model_type} <= {"lstm", "lstm-nofg"}:
            arch = Architecture(model_type, arch.vocab_size, arch.emb, arch.hidden, arch.layers,
                                arch.tie_weights, output=arch.output, cutoffs=arch.cutoffs,
                                div_value=arch.div_value, head_bias=arch.head_bias)
        else:
            raise ModelFileError(f"{path}: the tensors are of a {arch.model_type} model, not "
                                 f"{model_type}")
    for k in range(arch.layers):  # nn.LSTM(bias=False) has no biases: zeros are the same model
        for b in ("ih", "hh"):
            tensors.setdefault(f"rnn.bias_{b}_l{k}", np.zeros(arch.gate_rows, np.float32))
    _check_shapes(path, arch, tensors)
    tokens = list(vocab) if isinstance(vocab, (list, tuple)) else read_token_list(vocab)
    if len(tokens) != arch.vocab_size:
        raise InputError(f"{vocab if not isinstance(vocab, (list, tuple)) else 'vocab'}: "
                         f"{len(tokens)} tokens, but encoder.weight of {path} has "
                         f"{arch.vocab_size} rows: the vocabulary does not belong to this model")
    # rnnkit ids: the specials first, then the model's other tokens in its order
    pos = {t: i for i, t in enumerate(tokens)}

    def find(aliases):
        return next((pos[a] for a in aliases if a in pos), None)

    special_src = [find(UNK_ALIASES), find(BOS_ALIASES), find(EOS_ALIASES)]
    taken = {s for s in special_src if s is not None}
    rest = [i for i in range(len(tokens)) if i not in taken]
    new_tokens = list(SPECIALS) + [tokens[i] for i in rest]
    if arch.output == "adaptive":
        model = _adaptive_model(path, arch, tensors, tokens, special_src, rest, new_tokens,
                                tokenizer, backend)
        model.meta.update({"imported_from": "pytorch-state-dict",
                           "vocab_mapping": {"unk": special_src[0], "bos": special_src[1],
                                             "eos": special_src[2]}})
        return model
    new_arch = Architecture(arch.model_type, len(new_tokens), arch.emb, arch.hidden,
                            arch.layers, arch.tie_weights)
    model = RNNLM(new_arch, Vocab(new_tokens), tokenizer, backend=backend)
    for name, _ in arch.tensor_shapes():
        if name not in ("encoder.weight", "decoder.weight", "decoder.bias"):
            model.p[name][...] = tensors[name]
    enc, dec, bias = (tensors["encoder.weight"], tensors["decoder.weight"],
                      tensors["decoder.bias"] if "decoder.bias" in tensors
                      else np.zeros(arch.vocab_size, np.float32))
    src = np.array(rest, np.int64)
    model.p["encoder.weight"][3:] = enc[src]
    model.p["decoder.bias"][3:] = bias[src]
    if not new_arch.tie_weights:
        model.p["decoder.weight"][3:] = dec[src]
    eos_src = special_src[2]
    for new_id, s in enumerate(special_src):
        if s is not None:
            model.p["encoder.weight"][new_id] = enc[s]
            model.p["decoder.bias"][new_id] = bias[s]
            if not new_arch.tie_weights:
                model.p["decoder.weight"][new_id] = dec[s]
        else:
            # the input role of <s> is played by <eos> in a stream-trained model
            model.p["encoder.weight"][new_id] = enc[eos_src] if (
                new_id == BOS and eos_src is not None) else 0.0
            # (with tied weights the row is the embedding's: only the bias makes it improbable)
            model.p["decoder.bias"][new_id] = MISSING_LOGIT
            if not new_arch.tie_weights:
                model.p["decoder.weight"][new_id] = 0.0
    model.meta.update({"imported_from": "pytorch-state-dict",
                       "vocab_mapping": {"unk": special_src[0], "bos": special_src[1],
                                         "eos": special_src[2]}})
    return model


def _adaptive_model(path, arch: Architecture, tensors, tokens, special_src, rest, new_tokens,
                    tokenizer, backend) -> RNNLM:
    """The RNNLM of an adaptive-softmax state dict, its rows permuted so <unk>, <s>, </s> are
    ids 0, 1, 2. The specials must be head words (ids < C0): a permutation inside the head
    keeps every probability; moving a word between clusters would not. A special the model
    lacks becomes a new head word (so C0 and every cutoff grow by one) with a zero weight row
    and a head bias of MISSING_LOGIT (the model gets a head bias of zeros if it had none: the
    other words' log-probabilities move by ~e^-30)."""
    C0 = arch.cutoffs[0]
    outside = [f"{tokens[s]!r} (id {s}, read as {name})" for name, s in zip(SPECIALS, special_src)
               if s is not None and s >= C0]
    if outside:
        raise ModelFileError(
            f"{path}: {' and '.join(outside)} in a tail cluster of the adaptive softmax (the "
            f"head holds ids 0..{C0 - 1}); rnnkit needs <unk>, <s> and </s> in the head, so this "
            f"model cannot be imported exactly (retrain it with the specials among the most "
            f"frequent ids)")
    missing = sum(s is None for s in special_src)
    new_arch = Architecture(arch.model_type, len(new_tokens), arch.emb, arch.hidden, arch.layers,
                            output="adaptive", cutoffs=tuple(c + missing for c in arch.cutoffs),
                            div_value=arch.div_value, head_bias=arch.head_bias or missing > 0)
    model = RNNLM(new_arch, Vocab(new_tokens), tokenizer, backend=backend)
    for name, _ in arch.tensor_shapes():
        if name.startswith("rnn.") or name.startswith("decoder.tail."):
            model.p[name][...] = tensors[name]
    enc, head_w = tensors["encoder.weight"], tensors["decoder.head.weight"]
    head_b = tensors.get("decoder.head.bias", np.zeros(len(head_w), np.float32))
    eos_src = special_src[2]
    src = np.array(rest, np.int64)   # the other words, in the model's order: head words first
    model.p["encoder.weight"][3:] = enc[src]
    n_head = C0 - (3 - missing)      # the head's non-special words
    new_w, new_b = model.p["decoder.head.weight"], (model.p["decoder.head.bias"] if
                                                    new_arch.head_bias else None)
    new_w[3:3 + n_head] = head_w[src[:n_head]]
    new_w[3 + n_head:] = head_w[C0:]                  # the K cluster tokens
    if new_b is not None:
        new_b[3:3 + n_head] = head_b[src[:n_head]]
        new_b[3 + n_head:] = head_b[C0:]
    for new_id, s in enumerate(special_src):
        if s is not None:
            model.p["encoder.weight"][new_id] = enc[s]
            new_w[new_id] = head_w[s]
            if new_b is not None:
                new_b[new_id] = head_b[s]
        else:
            model.p["encoder.weight"][new_id] = enc[eos_src] if (
                new_id == BOS and eos_src is not None) else 0.0
            new_w[new_id] = 0.0
            new_b[new_id] = MISSING_LOGIT
    return model
