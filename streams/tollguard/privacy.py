"""Keeping phone numbers out of logs (metrics never carry them: see app/metrics.py).

Signal reasons can name a dialled number ("... to the same number
+23276123456 ..."): that belongs on the control topic, which enforcers and
analysts read, but not in a log that ends up in a shared log store. Below
DEBUG, numbers in logged text keep their country and range and lose the
subscriber digits. The dead-letter topic is different: it holds raw input by
design and must be protected like `calls.events` (README, "Privacy").
"""

from __future__ import annotations

import logging
import re
from typing import Final

from tollguard.engine.events import mask_number

# Seven or more digits in a row, optionally after "+": a dialled number, not a count.
_NUMBER: Final = re.compile(r"\+?\d{7,}")


def mask_numbers(text: str) -> str:
    """`text` with every phone-number-like run of digits masked."""
    return _NUMBER.sub(lambda m: mask_number(m.group(0)), text)


def for_log(logger: logging.Logger, text: str) -> str:
    """`text` as it may be logged by `logger`: unmasked only when it logs at DEBUG."""
    return text if logger.isEnabledFor(logging.DEBUG) else mask_numbers(text)
