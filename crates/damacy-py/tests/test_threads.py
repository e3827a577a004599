"""Threads calling `pop` while another pushes, and Ctrl-C interrupting a blocked `pop`."""

import itertools
import subprocess
import sys
import textwrap
import threading

import numpy as np

import damacy
from conftest import host_config


def test_threads_pop_while_another_pushes(smoke):
    n, pushes, per_push = 2, 6, 5
    samples = list(itertools.islice(smoke.samples(), pushes * per_push))
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=n, batches_in_flight=4)
    got = []
    lock = threading.Lock()
    errors = []

    with damacy.Pipeline(cfg) as p:

        def pusher():
            for k in range(pushes):
                p.push(samples[k * per_push : (k + 1) * per_push])
            p.finish()

        def popper():
            try:
                while (batch := p.pop()) is not None:
                    with batch:
                        first = np.from_dlpack(batch)[0].copy()
                        with lock:
                            got.append((batch.id, batch.indices, first))
            except Exception as e:  # reported below, with the thread's view
                errors.append(e)

        threads = [threading.Thread(target=popper) for _ in range(3)]
        threads.append(threading.Thread(target=pusher))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)

    assert errors == []
    got.sort(key=lambda g: g[0])
    assert [g[0] for g in got] == list(range(pushes * per_push // n))
    indices = [i for g in got for i in g[1]]
    assert indices == list(range(pushes * per_push))
    # Each batch's first sample is the one pushed at that index: compare with a
    # single-threaded read of the same samples.
    with damacy.Pipeline(cfg) as ref:
        ref.push(samples)
        ref.finish()
        for (_, _, first), batch in zip(got, ref):
            np.testing.assert_array_equal(first, np.from_dlpack(batch)[0])
            batch.release()


# The child holds the GIL (a huge switch interval) until `pop` releases it; only then can
# the helper thread run and send SIGINT, so the signal lands while `pop` is blocked.
SIGINT_CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import damacy

    # A process started with SIGINT ignored (a background job of a non-interactive shell,
    # as CI may run this) keeps ignoring it: Python installs its handler only over the
    # default. Ctrl-C's handler is what is under test, so install it.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    p = damacy.Pipeline(damacy.Config(sample_shape=[4], backend="host", io_threads=1, decode_threads=1))
    go = threading.Event()
    sent = []

    def helper():
        go.wait()
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=helper)
    t.start()
    go.set()
    try:
        p.pop()  # nothing was pushed: this blocks until interrupted
        print("returned")
    except KeyboardInterrupt:
        print("interrupted", time.monotonic() - sent[0])
    t.join()
    p.close()
    """
)


def test_ctrl_c_interrupts_a_blocked_pop():
    out = subprocess.run(
        [sys.executable, "-c", SIGINT_CHILD], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    word, latency = out.stdout.split()
    assert word == "interrupted"
    # `pop` checks for signals every 20 ms (about 20 ms measured on an idle machine); the
    # bound leaves room for a loaded two-core CI machine. Without the checks the child
    # never returns and the run times out.
    assert float(latency) < 0.5, latency
