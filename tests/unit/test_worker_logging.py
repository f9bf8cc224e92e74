import logging
import logging.config
import os
import re
from collections.abc import Iterator

import colorlog
import pytest

from tollguard.app.worker import logging_config


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_worker_log_lines_are_plain_text_at_the_configured_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.config.dictConfig(logging_config("info"))
    log = logging.getLogger("tollguard.detector")
    log.info("signal %s %s line=%s", "block", "critical", "pbx-1")
    log.debug("not at info")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1
    # mode's default layout, and no terminal colour codes in a log file
    assert re.fullmatch(
        rf"\[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}}\] \[{os.getpid()}\] \[INFO\]: "
        r"signal block critical line=pbx-1 ?",
        lines[0],
    ), lines[0]
    assert "\x1b" not in err
    # colorlog's formatter rebuilds its colour table for every record (~0.1 ms)
    (handler,) = logging.getLogger().handlers
    assert not isinstance(handler.formatter, colorlog.ColoredFormatter)
