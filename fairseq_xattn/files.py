"""Reading the small files users hand to commands, with errors that name the file and the flag."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence, Union

from .errors import UserError


def read_json(path: Union[str, Path], flag: str, required_keys: Sequence[str] = (), what: str = "") -> Any:
    """The JSON object in ``path``; a missing, malformed or wrong-kind file is a :class:`UserError`.

    ``flag`` names the option that gave the file; ``required_keys`` are the top-level keys the expected
    kind of file has, ``what`` says which command writes it (for the message).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{flag} {path}: not valid JSON ({e})") from None
    missing = [k for k in required_keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise UserError(f"{flag} {path}: not the expected kind of file (no {', '.join(map(repr, missing))})"
                        + (f"; give the JSON written by {what}" if what else ""))
    return data
