"""Per-layer profile of one training step of the shared/PERF.md CNN (batch 128), gradkit vs PyTorch.

Run: PYTHONPATH=python python benchmarks/profile_cnn_step.py [--threads 2] [--rounds 30]

Each layer's forward and backward is timed on the activations the model really
sees (both libraries start from the same weights and batch), side by side in one
process, alternating gradkit and torch every round (min over rounds). Then the loss,
the optimizer step, zero_grad, a whole model step and a Trainer batch (a 50-batch
``fit`` / 50) are timed, so the remainder (Python and Trainer overhead) shows.
Backward of the first layer skips the input gradient in both (as in training). The rows
"BN+ReLU+Pool" time the fused kernel pair gradkit's Sequential runs for layers 1-3 and 5-7
(the per-layer rows above them are the unfused layers, for comparison); the "layers total"
row counts them instead of those layers. ``--cpu`` times with the process CPU clock: on a
loaded machine, with ``--threads 1``, it leaves out the time other processes take.
"""
from __future__ import annotations

import baseline_isa  # noqa: F401  (first: holds NumPy and PyTorch to GRADKIT_ISA)
import time

import numpy as np

import gradkit as gk

BATCH = 128


def build(nn):
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))


CLOCK = time.perf_counter


def _best(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return min(times)


def main(argv=None):
    p = baseline_isa.side_by_side_parser(__doc__, rounds=30)
    p.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    args = p.parse_args(argv)
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time
    from gradkit.nn import fusion
    import torch
    from threadpoolctl import threadpool_limits

    gk.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    gk.manual_seed(0)
    g_model = build(gk.nn)
    t_model = build(torch.nn)
    with torch.no_grad():
        for gp, tp in zip(g_model.parameters(), t_model.parameters()):
            tp.copy_(torch.from_numpy(gp.data))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)

    # the inputs each layer sees
    g_in, t_in = [], []
    h = x
    for m in g_model:
        g_in.append(h)
        h = m(h)
    for h in g_in:
        t_in.append(torch.from_numpy(np.array(h)))

    rows = []
    R = args.rounds
    with threadpool_limits(limits=args.threads):
        for i, (gm, tm) in enumerate(zip(g_model, t_model)):
            gx, tx = g_in[i], t_in[i].clone().requires_grad_(i > 0)
            gy = gm(gx)
            dy = rng.standard_normal(gy.shape).astype(np.float32)
            tdy = torch.from_numpy(dy)
            input_grad = i > 0

            def g_fwd():
                gm(gx)

            def g_bwd():
                gm.backward_maybe_input(dy, input_grad)

            def t_fwd():
                tm(tx)

            def t_fwdbwd():
                out = tm(tx)
                out.backward(tdy)

            gm.train(), tm.train()
            g_fwd(), t_fwdbwd()  # warm-up
            gf, gb, tf, tfb = [], [], [], []
            for _ in range(R):
                t0 = CLOCK(); g_fwd(); t1 = CLOCK(); g_bwd(); t2 = CLOCK()
                gf.append(t1 - t0); gb.append(t2 - t1)
                t0 = CLOCK(); t_fwd(); t1 = CLOCK(); t_fwdbwd(); t2 = CLOCK()
                tf.append(t1 - t0); tfb.append(t2 - t1)
            rows.append((f"{i:2d} {type(gm).__name__}", min(gf), min(gb), min(tf), max(min(tfb) - min(tf), 0.0)))

        # the fused BN+ReLU+Pool runs (torch: the sum of its three layers' rows)
        fused_rows = []
        for i in (1, 5):
            mods, gx = list(g_model)[i:i + 3], g_in[i]
            kind = fusion.fusable_runs(mods)[0]
            out, cache = kind.forward(mods, gx)
            dy = rng.standard_normal(out.shape).astype(np.float32)
            ff = _best(lambda: kind.forward(mods, gx), R)
            fb = _best(lambda: kind.backward(mods, cache, dy, True), R)
            tf = sum(rows[j][3] for j in range(i, i + 3))
            tb = sum(rows[j][4] for j in range(i, i + 3))
            fused_rows.append((i, f"{i}-{i + 2} BN+ReLU+Pool", ff, fb, tf, tb))

        # loss
        out = g_model(x)
        tout = torch.from_numpy(np.array(out)).requires_grad_(True)
        g_loss = gk.nn.CrossEntropyLoss()
        t_loss = torch.nn.CrossEntropyLoss()
        yt = torch.from_numpy(y)
        lg = _best(lambda: (g_loss(out, y), g_loss.backward()), R)
        lt = _best(lambda: t_loss(tout, yt).backward(), R)
        # optimizer and zero_grad (with real gradients)
        g_opt = gk.optim.Adam(g_model.parameters(), lr=1e-3)
        t_opt = torch.optim.Adam(t_model.parameters(), lr=1e-3)
        t_loss(t_model(torch.from_numpy(x)), yt).backward()
        g_opt.step(), t_opt.step()
        og = _best(g_opt.step, R)
        ot = _best(t_opt.step, R)
        zg = _best(g_opt.zero_grad, R)
        zt = _best(lambda: t_opt.zero_grad(set_to_none=True), R)

        # the whole step and a Trainer batch
        def g_step():
            g_opt.zero_grad()
            g_loss(g_model(x), y)
            g_model.backward(g_loss.backward(), input_grad=False)
            g_opt.step()

        xt = torch.from_numpy(x)

        def t_step():
            t_opt.zero_grad(set_to_none=True)
            t_loss(t_model(xt), yt).backward()
            t_opt.step()

        g_step(), t_step()
        sg, st = [], []
        for _ in range(R):
            sg.append(_best(g_step, 1))
            st.append(_best(t_step, 1))
        sg, st = min(sg), min(st)
        xs = np.repeat(x, 50, axis=0)
        ys = np.repeat(y, 50, axis=0)
        trainer = gk.Trainer(g_model, g_loss, g_opt)
        trainer.fit(xs[:BATCH * 2], ys[:BATCH * 2], epochs=1, batch_size=BATCH, verbose=0)
        fg = _best(lambda: trainer.fit(xs, ys, epochs=1, batch_size=BATCH, verbose=0), 3) / 50

    print(baseline_isa.describe())
    print(f"one training step, PERF.md CNN, batch {BATCH}, {args.threads} threads, min of {R} rounds (ms)")
    print(f"{'layer':16s} {'gk fwd':>8s} {'gk bwd':>8s} {'torch fwd':>10s} {'torch bwd':>10s} {'gk/torch':>9s}")
    sums = [0.0] * 4
    fused_at = {i + 2: r for i, *r in fused_rows}
    for k, (name, a, b, c, d) in enumerate(rows):
        print(f"{name:16s} {a * 1e3:8.3f} {b * 1e3:8.3f} {c * 1e3:10.3f} {d * 1e3:10.3f} {(a + b) / max(c + d, 1e-12):9.2f}")
        if not any(i <= k <= i + 2 for i, *_ in fused_rows):
            sums = [s + v for s, v in zip(sums, (a, b, c, d))]
        if k in fused_at:
            name, a, b, c, d = fused_at[k]
            sums = [s + v for s, v in zip(sums, (a, b, c, d))]
            print(f"{name:16s} {a * 1e3:8.3f} {b * 1e3:8.3f} {c * 1e3:10.3f} {d * 1e3:10.3f} "
                  f"{(a + b) / max(c + d, 1e-12):9.2f}  <- fused, as run")
    print(f"{'layers total':16s} {sums[0] * 1e3:8.3f} {sums[1] * 1e3:8.3f} {sums[2] * 1e3:10.3f} {sums[3] * 1e3:10.3f} "
          f"{(sums[0] + sums[1]) / (sums[2] + sums[3]):9.2f}")
    print(f"{'loss fwd+bwd':16s} {lg * 1e3:17.3f} {lt * 1e3:21.3f} {lg / lt:9.2f}")
    print(f"{'Adam step':16s} {og * 1e3:17.3f} {ot * 1e3:21.3f} {og / ot:9.2f}")
    print(f"{'zero_grad':16s} {zg * 1e3:17.3f} {zt * 1e3:21.3f}")
    print(f"{'whole step':16s} {sg * 1e3:17.3f} {st * 1e3:21.3f} {sg / st:9.2f}")
    print(f"{'Trainer batch':16s} {fg * 1e3:17.3f}   (fit over 50 batches / 50; overhead vs step "
          f"{(fg - sg) * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
