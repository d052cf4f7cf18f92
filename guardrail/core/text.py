"""Text from outside (request metadata, model ids, alarm names, reasons, actors) made safe for where it
goes. Pure.

- A shell: `shell_quote` every outside value of a printed command, so a pasted command runs exactly what
  it shows (no extra flags, no `$(...)`).
- A terminal: `one_line` escapes control characters (newlines, tabs, ESC of ANSI sequences, C1 controls)
  and the Unicode line separators and bidi overrides, so one entry is one row and nothing is drawn that
  the text did not say.
"""

from __future__ import annotations

import shlex

_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029) or ch in _BIDI


def one_line(text: object) -> str:
    """`text` for a terminal: every control character shown as an escape (`\\n`, `\\x1b`), never acted on."""
    s = text if isinstance(text, str) else str(text)
    if not any(_unsafe(ch) for ch in s):  # the usual case: nothing to copy
        return s
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in s)


def shell_quote(value: object) -> str:
    """One shell word that is exactly `value` (POSIX sh, bash, zsh)."""
    return shlex.quote(value if isinstance(value, str) else str(value))
