"""Checks before work: configs and services at start-up (:mod:`.preflight`, :mod:`.services`),
and a full disk told apart from other errors (:mod:`.disk`)."""
