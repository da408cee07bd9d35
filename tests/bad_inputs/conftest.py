"""Fixtures of the bad-input corpus: the services of ``bad_input_services``, each started
once per module and only when a case needs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bad_input_services import Service, clean_env
from callback_receiver import Receiver


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-inputs")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def worker(corpus_root: Path) -> Iterator[Service]:
    root = corpus_root / "worker"
    env = clean_env(
        root,
        KALLA_SOURCE_ROOTS=str(corpus_root / "cases"),
        KALLA_CALLBACK_RETRY_SECONDS="2",
        KALLA_CALLBACK_TIMEOUT="2",
        KALLA_WORKER_CONCURRENCY="2",
    )
    service = Service("worker", root, env).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def app(corpus_root: Path) -> Iterator[Service]:
    root = corpus_root / "app"
    env = clean_env(
        root,
        DATABASE_URL=f"sqlite:///{root / 'kalla.db'}",
        KALLA_MAX_UPLOAD_SIZE=str(256 * 1024),
    )
    service = Service("serve", root, env).start()
    yield service
    service.stop()
