"""Fork safety: a child created by fork() after the parent ran kernels on 2 threads runs
every kernel correctly (on one thread) instead of hanging in OpenMP's dead thread pool."""
import os
import subprocess
import sys
import textwrap

# Runs in a fresh interpreter, so a regression (a hang in the child) is cut by the
# timeouts below instead of stalling pytest, and pytest's own threads are not forked.
SCRIPT = textwrap.dedent("""
    import multiprocessing as mp
    import numpy as np
    import gradkit as gk

    def work():
        rng = np.random.default_rng(0)
        a = rng.standard_normal((300, 257)).astype(np.float32)
        b = rng.standard_normal((257, 190)).astype(np.float32)
        x = rng.standard_normal((8, 16, 28, 28)).astype(np.float32)
        w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
        gk.manual_seed(0)
        model = gk.nn.Sequential(gk.nn.Linear(257, 64), gk.nn.ReLU(), gk.nn.Linear(64, 10))
        opt = gk.optim.Adam(model.parameters(), lr=1e-2)
        loss = gk.nn.CrossEntropyLoss()
        for _ in range(2):
            opt.zero_grad()
            loss(model(a), np.arange(300) % 10)
            model.backward(loss.backward())
            opt.step()
        return {"matmul": gk.ops.matmul(a, b), "conv": gk.ops.conv2d_forward(x, w, padding=1),
                "weights": [p.data.copy() for p in model.parameters()], "a": a, "b": b}

    def child(q):
        try:
            res = work()
            threads = gk.get_num_threads()
            try:
                gk.set_num_threads(2)
                refused = None
            except RuntimeError as e:
                refused = str(e)
            gk.set_num_threads(1)  # allowed
            q.put((res, threads, refused))
        except BaseException as e:  # report, never hang the parent on q.get
            q.put(repr(e))

    if __name__ == "__main__":
        gk.set_num_threads(2)
        big = np.ones((512, 512), np.float32)
        gk.ops.matmul(big, big)  # the parent's OpenMP pool now has a worker thread
        ref = work()
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,), daemon=True)  # a hung child dies with us
        p.start()
        got = q.get(timeout=60)
        p.join(10)
        assert not p.is_alive() and p.exitcode == 0, f"child exit code {p.exitcode}"
        assert not isinstance(got, str), f"child failed: {got}"
        res, threads, refused = got
        assert threads == 1, f"child threads {threads}"
        assert refused is not None and "fork" in refused and "n" in refused, refused
        # 1 and 2 threads give identical bits, so the child's results equal the parent's
        for key in ("matmul", "conv"):
            assert np.array_equal(res[key], ref[key]), key
        for i, (c, r) in enumerate(zip(res["weights"], ref["weights"])):
            assert np.array_equal(c, r), f"weights {i}"
        exact = res["a"].astype(np.float64) @ res["b"].astype(np.float64)
        assert np.abs(res["matmul"] - exact).max() < 1e-3
        # the parent keeps its 2 threads and its pool
        assert gk.get_num_threads() == 2
        assert np.array_equal(gk.ops.matmul(big, big), np.full((512, 512), 512, np.float32))
        print("fork ok")
""")


def test_fork_child_runs_kernels_single_threaded():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and "fork ok" in out.stdout, out.stdout + out.stderr
