"""Reading the small files users hand to commands, and checking the paths they name (inputs that exist,
outputs that can be written), with errors that name the file and the flag."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from .errors import UserError


def check_input_file(path: Union[str, Path], flag: str) -> Path:
    """``path`` as a :class:`Path` if it is an existing file; else a :class:`UserError` naming ``flag``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file")
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file")
    return path


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


def check_output(path: Union[str, Path], flag: str, inputs: Mapping[str, Any] = None, folder: bool = False) -> Path:
    """Refuse, before any work, an output the command could not write or that would land inside an input.

    ``inputs``: flag -> path (or list of paths) of what the command reads; an output equal to or inside
    an input folder (a store, a data folder) is refused, so that a command never writes into its input.
    ``folder``: the output is a folder (else a file, whose parent folder is created here).
    """
    out = Path(path)
    if folder:
        if out.exists() and not out.is_dir():
            raise UserError(f"{flag} {path}: exists and is not a folder; give a folder")
    elif out.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    resolved = out.resolve()
    for in_flag, in_paths in (inputs or {}).items():
        for in_path in ([in_paths] if isinstance(in_paths, (str, Path)) else in_paths or []):
            source = Path(in_path).resolve()
            if source.is_dir() and (resolved == source or source in resolved.parents):
                raise UserError(f"{flag} {path} is inside {in_flag} {in_path}; write the output elsewhere "
                                "(a command never writes into its input)")
    parent = out if folder else out.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UserError(f"{flag} {path}: {ancestor} is a file, not a folder")
            break
    if not folder:
        parent.mkdir(parents=True, exist_ok=True)
    return out
