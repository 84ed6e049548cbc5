# The part of systemd-python (python3-systemd) that zelador uses.
from typing import IO, Any

LOG_INFO: int

def send(MESSAGE: str, MESSAGE_ID: Any = ..., CODE_FILE: Any = ..., CODE_LINE: Any = ...,
         CODE_FUNC: Any = ..., **kwargs: Any) -> None: ...
def stream(identifier: str | None = ..., priority: int = ..., level_prefix: bool = ...) -> IO[str]: ...

class Reader:
    def __init__(self, flags: int = ..., path: str | None = ..., files: Any = ...,
                 namespace: Any = ...) -> None: ...
