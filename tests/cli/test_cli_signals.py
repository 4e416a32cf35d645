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
        code = proc.wait(timeout=600)
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


def test_a_stop_signal_during_a_store_write_waits_for_it_and_closes_the_run(cli_popen,
                                                                             tmp_path) -> None:
    """SIGTERM while the epoch's metrics wait on the SQLite store's lock: the write ends, then
    the run stops as the signal asks, closed as KILLED with that epoch logged (cut in the middle,
    the write's open statement held the lock, and the run's closing write failed with "database
    is locked" after 20 s)."""
    import sqlite3

    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    ckpt = tmp_path / "ckpt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = cli_popen([*LONG, f"trainer.checkpoint_dir={ckpt}"], tmp_path, stdout, stderr)
    db = sqlite3.connect(tmp_path / "mlflow.db", timeout=60, isolation_level=None)
    try:
        while not (ckpt / "mlflow_run_id").exists():  # the run is open, epoch 1 trains
            assert proc.poll() is None, err.read_text()
            time.sleep(0.05)
        db.execute("BEGIN EXCLUSIVE")  # the epoch's log_batch will wait on this lock
        while not (ckpt / "last.pt").exists():  # epoch 1 checkpointed: its metrics come next
            assert proc.poll() is None, err.read_text()
            time.sleep(0.05)
        time.sleep(2.0)  # a few lines of Python to the write, which then waits on the lock
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        db.execute("ROLLBACK")
        code = proc.wait(timeout=600)
    finally:
        proc.kill()
    output = out.read_text() + err.read_text()
    assert code == 128 + signal.SIGTERM, output
    assert "Traceback" not in output and "database is locked" not in output, output
    run_id = (ckpt / "mlflow_run_id").read_text().strip()
    status, = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    steps = {s for s, in db.execute("SELECT step FROM metrics WHERE run_uuid = ? AND key = ?",
                                   (run_id, "val_accuracy"))}
    assert status == "KILLED" and 1 in steps, (status, steps)


def test_a_signal_inside_a_shielded_write_is_raised_when_the_write_ends() -> None:
    import os

    from sweeps.cli.main import _raise_interrupt
    from sweeps.tracking.shield import shielded

    done = []

    @shielded
    def write() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10_000))  # the handler runs here and holds the stop
        done.append(True)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            write()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert done


def test_a_second_signal_during_a_write_that_hangs_ends_the_process_at_once() -> None:
    import subprocess
    import sys

    code = """if True:
        import os, signal, time
        from sweeps.cli.main import _raise_interrupt
        from sweeps.tracking.shield import shielded
        signal.signal(signal.SIGTERM, _raise_interrupt)

        @shielded
        def hangs():
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10_000))
            print("held", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(600)

        hangs()
    """
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert proc.stdout == "held\n" and proc.stderr.count("interrupted (SIGTERM)") == 1
