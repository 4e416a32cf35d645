"""Masking of passwords and tokens in printed and written configuration."""

from mcmc_core.secrets import MASK, is_secret_key, mask_config, mask_text, mask_url


def test_url_passwords_are_masked_and_the_rest_kept():
    assert mask_url("postgresql+psycopg://me:s3cret@db:5432/optuna") == (
        "postgresql+psycopg://me:***@db:5432/optuna")
    assert mask_url("http://user:pw@127.0.0.1:5000") == "http://user:***@127.0.0.1:5000"
    assert mask_url("https://ghp_abc@host/x") == "https://***@host/x"
    assert mask_url("https://host/api?token=abc&experiment=1") == (
        "https://host/api?token=***&experiment=1")
    for plain in ("sqlite:///outputs/sweeps/x/optuna.db", "mysql://me@host/db", "not a url", 3):
        assert mask_url(plain) == plain


def test_secret_keys_and_urls_in_a_config_tree():
    tree = {"tracking": {"uri": "http://u:pw@h:5000", "experiment": "e"},
            "study": {"storage": "postgresql://u:pw@h/db", "n_trials": 4},
            "api_token": "abc", "db_password": "pw", "password": None,
            "hosts": ["http://a:pw@b"], "passes": 3}
    masked = mask_config(tree)
    assert "pw" not in repr(masked) and "abc" not in repr(masked)
    assert masked["api_token"] == masked["db_password"] == MASK
    assert masked["password"] is None and masked["passes"] == 3
    assert masked["study"]["n_trials"] == 4 and masked["tracking"]["experiment"] == "e"
    assert tree["tracking"]["uri"] == "http://u:pw@h:5000"  # the original is untouched


def test_text_and_keys():
    assert mask_text("cannot reach http://a:b@c/d or postgresql://x:y@z/db") == (
        "cannot reach http://a:***@c/d or postgresql://x:***@z/db")
    assert is_secret_key("tracking.token") and is_secret_key("MLFLOW_TRACKING_PASSWORD")
    assert not is_secret_key("hydra.sweeper.storage") and not is_secret_key("trainer.epochs")


def test_schemeless_passwords_and_secret_overrides_in_text():
    assert mask_text("hydra.sweeper.storage='postgresql:me:pw@db/x'") == (
        "hydra.sweeper.storage='postgresql:***@db/x'")
    assert mask_text("+tracking.api_token=abc,seed=3 db_password=pw") == (
        "+tracking.api_token=***,seed=3 db_password=***")
    for plain in ("seed=3 model=mlp", "mail me@host", "http://127.0.0.1:5000/#/experiments/1",
                  "sqlite:///outputs/optuna.db"):
        assert mask_text(plain) == plain
    assert mask_config(["tracking.uri=http://u:pw@h:5000", "+x.token=abc"]) == [
        "tracking.uri=http://u:***@h:5000", "+x.token=***"]


def test_violation_lines_mask_the_value():
    from mcmc_core._validation import violation

    assert violation("hydra.sweeper.storage", "postgresql://u:pw@h/db", "x") == (
        "hydra.sweeper.storage='postgresql://u:***@h/db' is not allowed: expected x")
    assert violation("tracking.token", "abc", "x") == (
        "tracking.token='***' is not allowed: expected x")
    assert violation("trainer.epochs", -1, "x") == "trainer.epochs=-1 is not allowed: expected x"


def test_log_records_are_masked_by_the_handler_filter():
    import io
    import logging

    from sweeps.cli.masking import MaskingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("test-secrets-masking")
    logger.addHandler(handler)
    try:
        logger.warning("cannot reach %s", "http://u:pw@h:5000")
        try:
            raise ConnectionError("postgresql://u:pw@h/db refused")
        except ConnectionError:
            logger.exception("storage")
    finally:
        logger.removeHandler(handler)
    assert "pw" not in stream.getvalue()
    assert "cannot reach http://u:***@h:5000" in stream.getvalue()
    assert "postgresql://u:***@h/db refused" in stream.getvalue()
