"""An asyncio loop on a thread of its own, for the scripted peers the tests drive from their own
thread: start() returns once the subclass's _setup() has run on the loop (or raises what it
raised), close() runs its _shutdown() there and stops the loop."""

import asyncio
import threading


class LoopThread:
    name = "loop"  # the thread's name, and what start() says did not start

    def __init__(self):
        self._loop = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None

    async def _setup(self):
        """Runs on the loop before start() returns."""

    async def _shutdown(self):
        """Runs on the loop before it stops."""

    def start(self, timeout=10):
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("%s did not start within %ss" % (self.name, timeout))
        if self._error:
            raise self._error
        return self

    def close(self, timeout=10):
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
        except Exception:  # noqa: BLE001 - closing is best effort; the thread is a daemon
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._setup())
        except Exception as e:  # noqa: BLE001 - reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()
