"""A stop signal to a running ``mcmc-train``: Ctrl-C (SIGINT), SIGTERM (``timeout``, a scheduler,
systemd) and SIGHUP (a closed terminal) each end it with one line and the shell's status for that
signal (128 + its number), never a traceback, its MLflow run closed and its last epoch
checkpoint kept."""

from __future__ import annotations

import signal
import time

import pytest

LONG = ["device=cpu", "dataset=synthetic", "trainer.epochs=50", "trainer.steps_per_epoch=2500"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_ends_a_run_with_one_line_and_its_status(cli_popen, tmp_path,
                                                                signum) -> None:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = cli_popen([*LONG, f"trainer.checkpoint_dir={tmp_path}/ckpt"], tmp_path, stdout,
                         stderr)
    try:
        checkpoint = tmp_path / "ckpt" / "last.pt"
        while not checkpoint.exists():  # the first epoch done
            assert proc.poll() is None, err.read_text()
            time.sleep(0.1)
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    output = out.read_text() + err.read_text()
    assert code == 128 + signum, output
    assert output.count("interrupted") == 1 and "run the same command to continue" in output
    assert "Traceback" not in output
    assert checkpoint.exists()


def test_an_error_raised_while_a_stop_signal_is_handled_counts_as_the_stop() -> None:
    """A signal that breaks an MLflow write whose clean-up then fails (SQLite's "database is
    locked" on rollback) still ends the run as that signal, not as a crash."""
    from sweeps.cli.train_app import _interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("database is locked") from None  # __context__ keeps the signal
    except RuntimeError as err:
        assert _interrupted(err)
    assert not _interrupted(RuntimeError("database is locked"))
