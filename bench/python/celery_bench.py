"""Celery side of the cluster rows of the side-by-side benchmarks.

Each call starts its own redis-server on loopback TCP and a Celery prefork worker of 2
processes (Redis broker and result backend), runs one scenario, and stops both. Celery and the
redis client are installed from PyPI into target/bench-python on first use.

Scenarios (each returns seconds per task, or per item for the chunked map):
- delay_get: `plus_one.delay(x).get()`, one after another;
- group: a `group` of n separate `plus_one` tasks, then all results;
- chunked: n items hand-chunked 1000 per task in a `group`, then all results.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = os.path.normpath(os.path.join(HERE, "..", "..", "target", "bench-python"))


def _ensure_celery():
    sys.path.insert(0, PACKAGES)
    sys.path.insert(0, HERE)
    try:
        import celery  # noqa: F401
        import packaging  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--upgrade", "--target", PACKAGES, "celery>=5.3,<6", "redis>=4.5", "packaging"],
            check=True, stdout=subprocess.DEVNULL,
        )
        import importlib
        importlib.invalidate_caches()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stack:
    """A redis-server and a Celery worker, stopped on exit."""

    def __enter__(self):
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed (scripts/test installs it)")
        self.dir = tempfile.mkdtemp(prefix="celery-bench-")
        port = _free_port()
        self.server = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.worker = None
        try:
            return self._start(port)
        except BaseException:
            self.__exit__()
            raise

    def _start(self, port):
        url = "redis://127.0.0.1:%d/0" % port
        os.environ["BENCH_REDIS"] = url
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([PACKAGES, HERE]))
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-c", "2", "-P", "prefork",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
            cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import celery_app
        self.app = celery_app
        deadline = time.monotonic() + 60
        while True:
            try:
                if celery_app.plus_one.delay(0).get(timeout=5) == 1:
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        return self

    def __exit__(self, *exc):
        running = [p for p in (self.worker, self.server) if p is not None]
        for p in running:
            p.terminate()
        for p in running:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def run(kind, n):
    _ensure_celery()
    from celery import group

    with _Stack() as stack:
        tasks = stack.app
        if kind == "delay_get":
            t0 = time.perf_counter()
            for i in range(n):
                if tasks.plus_one.delay(i).get(timeout=60) != i + 1:
                    raise SystemExit("wrong result")
            return (time.perf_counter() - t0) / n
        if kind == "group":
            t0 = time.perf_counter()
            values = group(tasks.plus_one.s(i) for i in range(n)).apply_async().get(timeout=600)
            elapsed = time.perf_counter() - t0
            if values[-1] != n:
                raise SystemExit("wrong result")
            return elapsed / n
        if kind == "chunked":
            t0 = time.perf_counter()
            chunks = group(tasks.plus_one_chunk.s(list(range(i, min(i + 1000, n)))) for i in range(0, n, 1000))
            values = [v for chunk in chunks.apply_async().get(timeout=600) for v in chunk]
            elapsed = time.perf_counter() - t0
            if len(values) != n or values[-1] != n:
                raise SystemExit("wrong result")
            return elapsed / n
        raise SystemExit("unknown celery scenario %r" % kind)
