"""The original research code's quick start (its README), run as written against ``mcmc_core``.

Only the two imports of the original's own modules change: ``from layers import binarize_model``
becomes ``from mcmc_core.layers import binarize_model`` and ``from trainer import TrainerMCMC``
becomes ``from mcmc_core.trainers import TrainerMCMC``; ``from torch import nn``, which the
original leaves out, is added. MNIST is read by the real loader (torchvision's, through
``dataset_name="MNIST"``) from the default root ``data/`` of the working directory, where the
test writes a small MNIST in its IDX files: 20 training and 10 test images of 28x28 pixels.

``trainer.train(n_epoch=100, debug=0)`` runs 100 epochs of 500 steps (the defaults), each a
forward pass of the adapted AlexNet (57 M binary weights): hours on a CPU. The test therefore
waits for the events that show every line ran (the binary model printed, the model adapted to
MNIST, the engine line that ``train`` prints before its first step), then interrupts the run
with SIGINT, as a user's Ctrl-C, and checks it was interrupted inside ``train``. That an
adapted AlexNet completes epochs through this API is tested in ``test_api_quickstart_units.py``.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torchvision

from mcmc_core import binarize_model

# The quick start of the original's README, verbatim: its session and the output it printed.
ORIGINAL = '''\
>>> from torchvision.models.alexnet import AlexNet
>>> from layers import binarize_model
>>> from trainer import TrainerMCMC
>>> model = AlexNet()
>>> model_binary = binarize_model(model)
>>> print(model_binary)
AlexNet(
  (features): Sequential(
    (0): [Binary]Conv2d (3, 64, kernel_size=(11, 11), stride=(4, 4), padding=(2, 2))
    (1): ReLU(inplace)
    (2): MaxPool2d(kernel_size=(3, 3), stride=(2, 2), dilation=(1, 1))
    (3): [Binary]Conv2d (64, 192, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))
    (4): ReLU(inplace)
    (5): MaxPool2d(kernel_size=(3, 3), stride=(2, 2), dilation=(1, 1))
    (6): [Binary]Conv2d (192, 384, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (7): ReLU(inplace)
    (8): [Binary]Conv2d (384, 256, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (9): ReLU(inplace)
    (10): [Binary]Conv2d (256, 256, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (11): ReLU(inplace)
    (12): MaxPool2d(kernel_size=(3, 3), stride=(2, 2), dilation=(1, 1))
  )
  (classifier): Sequential(
    (1): Sequential(
      (0): BatchNorm1d(9216, eps=1e-05, momentum=0.1, affine=True)
      (1): [Binary]Linear(in_features=9216, out_features=4096)
    )
    (2): ReLU(inplace)
    (4): Sequential(
      (0): BatchNorm1d(4096, eps=1e-05, momentum=0.1, affine=True)
      (1): [Binary]Linear(in_features=4096, out_features=4096)
    )
    (5): ReLU(inplace)
    (6): Sequential(
      (0): BatchNorm1d(4096, eps=1e-05, momentum=0.1, affine=True)
      (1): [Binary]Linear(in_features=4096, out_features=1000)
    )
  )
)

>>> trainer = TrainerMCMC(model,
                          criterion=nn.CrossEntropyLoss(),
                          dataset_name="MNIST",
                          temperature=1e-3,  # environment temperature (decreases with time)
                          flip_ratio=3*1e-3)  # flip how many signs of binary weights at MCMC step
>>> trainer.train(n_epoch=100, debug=0)
Training progress http://localhost:8097
'''

#: The original's imports of its own modules -> ours (the only lines changed).
IMPORTS = {"from layers import binarize_model": "from mcmc_core.layers import binarize_model",
           "from trainer import TrainerMCMC": "from mcmc_core.trainers import TrainerMCMC"}

_CONV = re.compile(r"\[Binary\]Conv2d ?\((\d+), (\d+), kernel_size=\((\d+), (\d+)\), "
                   r"stride=\((\d+), (\d+)\), padding=\((\d+), (\d+)\)")
_LINEAR = re.compile(r"\[Binary\]Linear\(in_features=(\d+), out_features=(\d+)")


def session_statements(session: str) -> list[str]:
    """The statements of a ``>>>`` session: a prompt line plus the lines that continue it
    (while its brackets are open); printed output is dropped."""
    statements: list[str] = []
    open_brackets = 0
    for line in session.splitlines():
        if line.startswith(">>> "):
            statements.append(line[4:])
        elif open_brackets > 0:
            statements[-1] += "\n" + line
        else:
            continue
        code = statements[-1].split("#")[0] if "\n" not in statements[-1] else re.sub(
            r"#.*", "", statements[-1])
        open_brackets = code.count("(") - code.count(")")
    return statements


def session_output(session: str) -> str:
    """What the session printed: every line that is neither a statement nor part of one."""
    code = set("\n".join(session_statements(session)).splitlines())
    return "\n".join(line for line in session.splitlines()
                     if not line.startswith(">>> ") and line.strip() not in
                     {c.strip() for c in code})


def binary_layers(printed: str) -> list[tuple[str, ...]]:
    """``("Conv2d", in, out, kh, kw, sh, sw, ph, pw)`` / ``("Linear", in, out)`` of every
    ``[Binary]`` layer of a printed model, in order."""
    layers: list[tuple[str, ...]] = []
    for line in printed.splitlines():
        if m := _CONV.search(line):
            layers.append(("Conv2d", *m.groups()))
        elif m := _LINEAR.search(line):
            layers.append(("Linear", *m.groups()))
    return layers


def quick_start_script() -> str:
    """The original's statements with our imports, ``from torch import nn`` first."""
    statements = [IMPORTS.get(s, s) for s in session_statements(ORIGINAL)]
    return "\n".join(["from torch import nn", *statements]) + "\n"


def write_small_mnist(root: Path) -> None:
    """MNIST's four IDX files (uncompressed, as torchvision keeps them) in ``root/MNIST/raw``:
    20 training and 10 test images of random 28x28 pixels, labels 0-9 in turn."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array, code in (("images-idx3", images, 3), ("labels-idx1", labels, 1)):
            header = struct.pack(">BBBB", 0, 0, 0x08, code) + struct.pack(f">{code}I",
                                                                          *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())


def test_the_session_parses_into_the_originals_statements() -> None:
    statements = session_statements(ORIGINAL)
    # Eight statements; the trainer's spans five lines, comments included.
    assert len(statements) == 8
    assert statements[6].startswith("trainer = TrainerMCMC(model,\n")
    assert statements[6].endswith("# flip how many signs of binary weights at MCMC step")
    assert statements[7] == "trainer.train(n_epoch=100, debug=0)"


def test_the_printed_binary_alexnet_has_the_originals_binary_layers() -> None:
    printed = repr(binarize_model(torchvision.models.AlexNet()))
    expected = binary_layers(session_output(ORIGINAL))
    # Five binary convs and three binary linears, with the original's shapes, in its order.
    assert len(expected) == 8
    assert binary_layers(printed) == expected
    assert printed.startswith("AlexNet(") and printed.count("[Binary]") == 8


def _read_lines(stream, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    write_small_mnist(tmp_path / "data")
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start_script())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           # Offline: a download attempt fails fast instead of reaching the network.
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    # SIGINT as a terminal sends it, even where this test runs as a background job (which
    # ignores it, and a child would inherit that).
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        # Wait for the line train() prints before its first step (or for the end of output).
        while (line := lines.get(timeout=600)) is not None:
            seen.append(line)
            if line.startswith("engine: "):
                break
        assert line is not None, "the quick start ended early:\n" + proc.communicate()[1]
        proc.send_signal(signal.SIGINT)  # a user's Ctrl-C: the 100 epochs take hours
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = "\n".join(seen)
    # print(model_binary): the original's binary layers, before any adaptation.
    assert binary_layers(stdout) == binary_layers(session_output(ORIGINAL))
    # TrainerMCMC(... dataset_name="MNIST" ...) fitted AlexNet to 1-channel 28x28, 10 classes.
    assert ("model: adapted to dataset=mnist: features.0: 1-channel 3x3 stride-1 stem "
            "(images under 64 px); features: 2x2 max pools; classifier.6: 10 classes (was 1000)"
            ) in seen
    # train(n_epoch=100, debug=0) started: interrupted there, by our signal, nothing else.
    assert seen[-1].startswith("engine: sampler (1 chain, cpu)")
    assert "trainer.train(n_epoch=100, debug=0)" in stderr and "in _train" in stderr
    assert stderr.rstrip().endswith("KeyboardInterrupt")
    assert proc.returncode != 0
