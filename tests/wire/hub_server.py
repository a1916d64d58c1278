"""A MongoDB-wire-protocol hub for the test tier, run as its own process under Python 3.13:

    python hub_server.py DATA_FILE PORT

It serves mongoeco's SQLite-backed engine on 127.0.0.1:PORT (so its data survives a restart),
prints "listening PORT" once it accepts connections, and stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys

from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve(path: str, port: int) -> None:
    server = AsyncMongoEcoProxyServer(engine=SQLiteEngine(path), host="127.0.0.1", port=port)
    address = await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {address.port}", flush=True)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
