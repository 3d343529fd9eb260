"""The Celery app of the cluster rows (bench/python/celery_bench.py): a Redis broker and result
backend at $BENCH_REDIS, and the same trivial tasks as the Rust side."""

import os

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"])
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task
def plus_one(x):
    return x + 1


@app.task
def plus_one_chunk(xs):
    return [x + 1 for x in xs]
