"""The ceiling for bench/collector.py: an ASGI app that reads the body and answers 200, on
uvicorn with the collector's server settings. Whatever it reaches, the collector cannot.

    python bench/bare_asgi.py --port 8000 [--workers 1]
"""

from __future__ import annotations

import argparse
from typing import Any

_OK = b'{"accepted":1}'
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _OK})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "bare_asgi:app",
        app_dir=str(__import__("pathlib").Path(__file__).parent),
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
