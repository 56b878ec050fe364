"""Errors: one OrchestraError subclass per library code (ORCH_EINVAL -> EINVAL),
each carrying the library's message (which names the file or role and the
cause)."""

from . import _native as N


class OrchestraError(Exception):
    """A library call failed. `code` is the library's (negative) code,
    `code_name` its name ("ORCH_ENOENT"), str() the library's message."""

    code = 0
    code_name = "ORCH_UNKNOWN"

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code
            self.code_name = N.orch_err_name(code).decode()


# the codes and their names, from the library's own table (orch_err_name)
_CODES = {}
for _code in range(-1, -256, -1):
    _name = N.orch_err_name(_code).decode()
    if _name == "ORCH_UNKNOWN":
        break
    _CODES[_name[len("ORCH_"):]] = _code
_BY_CODE = {}
for _name, _code in _CODES.items():
    _cls = type(_name, (OrchestraError,), {
        "code": _code, "code_name": "ORCH_" + _name,
        "__doc__": N.orch_strerror(_code).decode().capitalize() + " (ORCH_" + _name + ")."})
    globals()[_name] = _cls
    _BY_CODE[_code] = _cls
del _name, _code, _cls


def raise_for(rc, err):
    """Raises the subclass for rc with err's message (rc != 0)."""
    msg = err.msg.decode("utf-8", "replace") or N.orch_strerror(rc).decode()
    cls = _BY_CODE.get(rc, OrchestraError)
    raise cls(msg, rc)


__all__ = ["OrchestraError", "raise_for"] + list(_CODES)
