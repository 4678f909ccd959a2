"""Do the kernels still compute the same bits? Saves the outputs of every kernel (layer windows
forward and backward, single steps, softmax cross-entropy, log-softmax, matmul; 1 and 2 threads)
on fixed inputs, or compares them with a saved file by np.array_equal.

    python bench/kernel_bits.py save before.npz          # with the previous build installed
    python bench/kernel_bits.py compare before.npz avx512  # with the new one, on a path

The previous release's flat layout (rnnkit._kernels) is found too. A change of the blocking or
of the order of a sum shows here as differing arrays, named in the output.
"""
import sys

import numpy as np

try:
    from rnnkit.nn import _kernels as K
except ImportError:
    from rnnkit import _kernels as K


def outputs():
    f = np.float32
    out = {}
    for nt in (1, 2):
        K.set_num_threads(nt)
        rng = np.random.default_rng(5)
        for (T, B, E, H) in [(7, 3, 37, 45), (5, 20, 200, 200), (3, 64, 130, 650)]:
            p = dict(x=rng.standard_normal((T, B, E)).astype(f),
                     h0=rng.standard_normal((B, H)).astype(f),
                     c0=rng.standard_normal((B, H)).astype(f),
                     w_ih=(rng.standard_normal((4 * H, E)) * .3).astype(f),
                     w_hh=(rng.standard_normal((4 * H, H)) * .3).astype(f),
                     b_ih=rng.standard_normal(4 * H).astype(f),
                     b_hh=rng.standard_normal(4 * H).astype(f))
            h, hT, cT, c = K.lstm_forward(**p)
            dh = rng.standard_normal((T, B, H)).astype(f)
            g = K.lstm_backward(dh, hT * 0 + 0.1, cT * 0 + 0.2, c)
            key = f"lstm{T}_{B}_{E}_{H}_{nt}"
            out[key + "h"] = h.copy()
            for i, a in enumerate(g):
                if a is not None:
                    out[key + f"g{i}"] = a.copy()
            hr, _, cr = K.rnn_forward(p["x"], p["h0"], p["w_ih"][:H].copy(),
                                      p["w_hh"][:H].copy(), p["b_ih"][:H].copy(),
                                      p["b_hh"][:H].copy())
            out[key + "rnn"] = hr.copy()
            for i, a in enumerate(K.rnn_backward(dh, p["h0"], cr)):
                out[key + f"rg{i}"] = a.copy()
            for Bs in (1, 3):
                hh, cc = p["h0"][:Bs].copy(), p["c0"][:Bs].copy()
                for s in range(3):
                    K.lstm_step(p["x"][s, :Bs].copy(), hh, cc, p["w_ih"], p["w_hh"], p["b_ih"],
                                p["b_hh"])
                out[key + f"step{Bs}"] = np.concatenate([hh, cc])
            N, V = T * B, 1003
            hx = rng.standard_normal((N, H)).astype(f)
            w = rng.standard_normal((V, H)).astype(f) * .2
            b = rng.standard_normal(V).astype(f)
            tg = rng.integers(0, V, N)
            loss, sc = K.softmax_xent_forward(hx, w, b, tg)
            out[key + "loss"] = np.float64(loss)
            for i, a in enumerate(K.softmax_xent_backward(1.0, sc)):
                out[key + f"sx{i}"] = a.copy()
            out[key + "ls"] = K.log_softmax(hx, w, b)
            out[key + "ls1"] = K.log_softmax(hx[:1].copy(), w, b)
            out[key + "mm"] = K.matmul(hx, w, trans_b=True)
    return out


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("save", "compare"):
        raise SystemExit(__doc__)
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "compare" and len(sys.argv) > 3:
        K.set_isa(sys.argv[3])
    out = outputs()
    if mode == "save":
        np.savez(path, **out)
        print(f"saved {len(out)} arrays to {path}")
        return
    ref = np.load(path)
    bad = [k for k in ref.files if not np.array_equal(ref[k], out[k])]
    print(f"{len(ref.files)} arrays, {len(bad)} differ" + (f": {', '.join(bad)}" if bad else ""))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
