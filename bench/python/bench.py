"""CPython side of the multiproc side-by-side benchmarks.

Usage: python3 bench/python/bench.py <scenario> <iterations>

Runs one scenario `iterations` times after one untimed warm-up operation and prints one JSON
line: {"per_op_s": <seconds per operation>}. The Rust runner (bench/src/main.rs) calls this once
per repetition, interleaved with the Rust side of the same scenario.

To add a scenario, write a function taking the iteration count and returning seconds per
operation, and register it in SCENARIOS under the name the Rust `Scenario` gives as its
python counterpart.
"""

import json
import multiprocessing
import sys
import time


def trivial():
    pass


def start_join(method, iterations):
    ctx = multiprocessing.get_context(method)

    def once():
        p = ctx.Process(target=trivial)
        p.start()
        p.join()

    # Warm-up: starts the fork server, imports the start method's modules.
    once()
    t0 = time.perf_counter()
    for _ in range(iterations):
        once()
    return (time.perf_counter() - t0) / iterations


def lock_uncontended(iterations):
    lock = multiprocessing.Lock()
    t0 = time.perf_counter()
    for _ in range(iterations):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - t0) / iterations


def semaphore_uncontended(iterations):
    sem = multiprocessing.Semaphore(1)
    t0 = time.perf_counter()
    for _ in range(iterations):
        sem.acquire()
        sem.release()
    return (time.perf_counter() - t0) / iterations


def _count_under_lock(lock, start, counter, rounds):
    start.wait()
    for _ in range(rounds):
        with lock:
            counter.value += 1


def lock_contended(iterations):
    ctx = multiprocessing.get_context("fork")
    lock = ctx.Lock()
    start = ctx.Barrier(3)
    counter = ctx.RawValue("q", 0)
    half = iterations // 2
    workers = [ctx.Process(target=_count_under_lock, args=(lock, start, counter, half)) for _ in range(2)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    if counter.value != 2 * half:
        raise SystemExit("count %d instead of %d" % (counter.value, 2 * half))
    return elapsed / (2 * half)


def _pong(ping, pong, rounds):
    for _ in range(rounds):
        ping.wait()
        ping.clear()
        pong.set()


def event_pingpong(iterations):
    ctx = multiprocessing.get_context("fork")
    ping, back = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_pong, args=(ping, back, iterations + 1))
    other.start()
    ping.set()
    back.wait()
    back.clear()
    t0 = time.perf_counter()
    for _ in range(iterations):
        ping.set()
        back.wait()
        back.clear()
    elapsed = time.perf_counter() - t0
    other.join()
    return elapsed / iterations


def _echo(conn, rounds):
    for _ in range(rounds):
        conn.send(conn.recv() + 1)


def pipe_round_trip(iterations):
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_echo, args=(theirs, iterations + 1))
    child.start()
    ours.send(0)
    ours.recv()
    t0 = time.perf_counter()
    for i in range(iterations):
        ours.send(i)
        if ours.recv() != i + 1:
            raise SystemExit("wrong echo")
    elapsed = time.perf_counter() - t0
    child.join()
    return elapsed / iterations


def _drain(conn, count):
    for _ in range(count):
        conn.recv_bytes()
    conn.send_bytes(b"done")


def pipe_one_way(iterations, size):
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_drain, args=(theirs, iterations))
    child.start()
    message = b"\x07" * size
    t0 = time.perf_counter()
    for _ in range(iterations):
        ours.send_bytes(message)
    ours.recv_bytes()
    elapsed = time.perf_counter() - t0
    child.join()
    return elapsed / iterations


def _produce(q, go, n, size):
    go.wait()
    item = (lambda i: i) if size == 8 else (lambda i: bytes([i % 256]) * size)
    for i in range(n):
        q.put(item(i))


def queue_one_to_one(iterations, size, simple=False):
    ctx = multiprocessing.get_context("fork")
    q = ctx.SimpleQueue() if simple else ctx.Queue()
    go = ctx.Event()
    producer = ctx.Process(target=_produce, args=(q, go, iterations, size))
    producer.start()
    t0 = time.perf_counter()
    go.set()
    for _ in range(iterations):
        q.get()
    elapsed = time.perf_counter() - t0
    producer.join()
    return elapsed / iterations


def _produce_then_stop(q, go, n):
    go.wait()
    for i in range(n):
        q.put(i)


def _consume_until_sentinel(q, go, taken):
    go.wait()
    count = 0
    while q.get() is not None:
        count += 1
    with taken.get_lock():
        taken.value += count


def queue_two_by_two(iterations):
    ctx = multiprocessing.get_context("fork")
    q, go, taken = ctx.Queue(), ctx.Event(), ctx.Value("q", 0)
    half = iterations // 2
    producers = [ctx.Process(target=_produce_then_stop, args=(q, go, half)) for _ in range(2)]
    consumers = [ctx.Process(target=_consume_until_sentinel, args=(q, go, taken)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    t0 = time.perf_counter()
    go.set()
    for p in producers:
        p.join()
    q.put(None)
    q.put(None)
    for c in consumers:
        c.join()
    elapsed = time.perf_counter() - t0
    if taken.value != 2 * half:
        raise SystemExit("%d items taken instead of %d" % (taken.value, 2 * half))
    return elapsed / (2 * half)


def _queue_echo(requests, replies):
    while True:
        x = requests.get()
        if x is None:
            return
        replies.put(x + 1)


def _round_trip_setup():
    ctx = multiprocessing.get_context("fork")
    requests, replies = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_queue_echo, args=(requests, replies))
    child.start()
    requests.put(0)
    replies.get()
    return requests, replies, child


def queue_round_trip(iterations):
    requests, replies, child = _round_trip_setup()
    t0 = time.perf_counter()
    for i in range(iterations):
        requests.put(i)
        if replies.get() != i + 1:
            raise SystemExit("wrong reply")
    elapsed = time.perf_counter() - t0
    requests.put(None)
    child.join()
    return elapsed / iterations


def queue_round_trip_async(iterations):
    """The round trip from asyncio: the way Python code awaits a multiprocessing queue is to run
    its blocking get in a thread pool."""
    import asyncio

    requests, replies, child = _round_trip_setup()

    async def trips():
        loop = asyncio.get_running_loop()
        for i in range(iterations):
            requests.put(i)
            if await loop.run_in_executor(None, replies.get) != i + 1:
                raise SystemExit("wrong reply")

    t0 = time.perf_counter()
    asyncio.run(trips())
    elapsed = time.perf_counter() - t0
    requests.put(None)
    child.join()
    return elapsed / iterations


def _work_off(q):
    while q.get() is not None:
        q.task_done()
    q.task_done()


def joinable_queue(iterations):
    ctx = multiprocessing.get_context("fork")
    q = ctx.JoinableQueue()
    worker = ctx.Process(target=_work_off, args=(q,))
    worker.start()
    q.put(0)
    q.join()
    t0 = time.perf_counter()
    for i in range(iterations):
        q.put(i)
    q.join()
    elapsed = time.perf_counter() - t0
    q.put(None)
    worker.join()
    return elapsed / iterations


def plus_one(x):
    return x + 1


def _started_pool():
    pool = multiprocessing.get_context("fork").Pool(2)
    pool.apply(plus_one, (0,))
    return pool


def _finish(pool):
    pool.close()
    pool.join()


def pool_map(iterations, chunksize):
    pool = _started_pool()
    t0 = time.perf_counter()
    out = pool.map(plus_one, range(iterations), chunksize)
    elapsed = time.perf_counter() - t0
    if out[-1] != iterations:
        raise SystemExit("wrong map result")
    _finish(pool)
    return elapsed / iterations


def pool_imap_unordered(iterations):
    pool = _started_pool()
    t0 = time.perf_counter()
    total = sum(pool.imap_unordered(plus_one, range(iterations)))
    elapsed = time.perf_counter() - t0
    if total != iterations * (iterations + 1) // 2:
        raise SystemExit("wrong imap_unordered result")
    _finish(pool)
    return elapsed / iterations


def pool_apply_async(iterations):
    pool = _started_pool()
    t0 = time.perf_counter()
    results = [pool.apply_async(plus_one, (i,)) for i in range(iterations)]
    for i, r in enumerate(results):
        if r.get() != i + 1:
            raise SystemExit("wrong apply_async result")
    elapsed = time.perf_counter() - t0
    _finish(pool)
    return elapsed / iterations


def _started_executor():
    import concurrent.futures

    executor = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    executor.submit(plus_one, 0).result()
    return executor


def executor_submit(iterations):
    executor = _started_executor()
    t0 = time.perf_counter()
    futures = [executor.submit(plus_one, i) for i in range(iterations)]
    for i, f in enumerate(futures):
        if f.result() != i + 1:
            raise SystemExit("wrong submit result")
    elapsed = time.perf_counter() - t0
    executor.shutdown()
    return elapsed / iterations


def executor_map(iterations):
    executor = _started_executor()
    t0 = time.perf_counter()
    last = 0
    for last in executor.map(plus_one, range(iterations)):
        pass
    elapsed = time.perf_counter() - t0
    if last != iterations:
        raise SystemExit("wrong executor map result")
    executor.shutdown()
    return elapsed / iterations


def _add(v, go, n):
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def value_increments(iterations):
    ctx = multiprocessing.get_context("fork")
    v, go = ctx.Value("q", 0), ctx.Event()
    half = iterations // 2
    workers = [ctx.Process(target=_add, args=(v, go, half)) for _ in range(2)]
    for w in workers:
        w.start()
    t0 = time.perf_counter()
    go.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    if v.value != 2 * half:
        raise SystemExit("lost increments")
    return elapsed / (2 * half)


_MIB = 1 << 20
_SEGMENT = 256 * _MIB


def _write_segment(name):
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name)
    chunk = b"\x07" * _MIB
    for i in range(_SEGMENT // _MIB):
        shm.buf[i * _MIB:(i + 1) * _MIB] = chunk
    shm.close()


def shared_memory_256m(iterations):
    from multiprocessing import shared_memory

    ctx = multiprocessing.get_context("fork")
    total = 0.0
    for _ in range(iterations):
        t0 = time.perf_counter()
        shm = shared_memory.SharedMemory(create=True, size=_SEGMENT)
        child = ctx.Process(target=_write_segment, args=(shm.name,))
        child.start()
        child.join()
        checksum = 0
        for i in range(_SEGMENT // _MIB):
            chunk = bytes(shm.buf[i * _MIB:(i + 1) * _MIB])
            checksum += chunk[-1]
        shm.close()
        shm.unlink()
        total += time.perf_counter() - t0
        if checksum != 7 * (_SEGMENT // _MIB):
            raise SystemExit("wrong bytes read back")
    return total / iterations


def _manager_dict_calls(d, n):
    for i in range(n // 2):
        d[i % 100] = i
        d.get(i % 100)
    return n // 2 * 2


def _manager_queue_calls(q, n):
    for i in range(n // 2):
        q.put(i)
        q.get()
    return n // 2 * 2


def _manager_lock_calls(lock, n):
    for _ in range(n):
        lock.acquire()
        lock.release()
    return n


def _time_in_child(calls, proxy, go, n, out):
    go.wait()
    t0 = time.perf_counter()
    done = calls(proxy, n)
    out.put((time.perf_counter() - t0) / done)


def _manager_calls_from_child(make, calls, iterations):
    """Per-call time of `calls(proxy, n)` run in a forked child on a fresh manager's `make(m)`."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        proxy, go, out = make(manager), ctx.Event(), ctx.Queue()
        child = ctx.Process(target=_time_in_child, args=(calls, proxy, go, max(iterations, 2), out))
        child.start()
        go.set()
        per_op = out.get()
        child.join()
    return per_op


def manager_dict_calls(iterations):
    return _manager_calls_from_child(lambda m: m.dict(), _manager_dict_calls, iterations)


def manager_queue_calls(iterations):
    return _manager_calls_from_child(lambda m: m.Queue(), _manager_queue_calls, iterations)


def manager_lock_calls(iterations):
    return _manager_calls_from_child(lambda m: m.Lock(), _manager_lock_calls, iterations)


def _manager_count(d, lock, go, n):
    go.wait()
    for _ in range(n):
        with lock:
            d["n"] = d.get("n", 0) + 1


def manager_counter_locked(iterations):
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        d, lock, go = manager.dict(), ctx.Lock(), ctx.Event()
        each = max(iterations // 4, 1)
        workers = [ctx.Process(target=_manager_count, args=(d, lock, go, each)) for _ in range(4)]
        for w in workers:
            w.start()
        t0 = time.perf_counter()
        go.set()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        if d["n"] != each * 4:
            raise SystemExit("lost increments")
    return elapsed / (each * 4)


def _celery(kind):
    def scenario(iterations):
        import celery_bench

        return celery_bench.run(kind, iterations)

    return scenario


SCENARIOS = {
    "celery_delay_get": _celery("delay_get"),
    "celery_group": _celery("group"),
    "celery_chunked": _celery("chunked"),
    "manager_dict_calls": manager_dict_calls,
    "manager_counter_locked": manager_counter_locked,
    "manager_queue_calls": manager_queue_calls,
    "manager_lock_calls": manager_lock_calls,
    "value_increments": value_increments,
    "shared_memory_256m": shared_memory_256m,
    "pool_map_default": lambda n: pool_map(n, None),
    "pool_map_chunksize_1": lambda n: pool_map(n, 1),
    "pool_imap_unordered": pool_imap_unordered,
    "pool_apply_async": pool_apply_async,
    "executor_submit": executor_submit,
    "executor_map": executor_map,
    "queue_1to1_8": lambda n: queue_one_to_one(n, 8),
    "queue_1to1_64": lambda n: queue_one_to_one(n, 64),
    "simple_queue_1to1_8": lambda n: queue_one_to_one(n, 8, simple=True),
    "queue_2x2_8": queue_two_by_two,
    "queue_1to1_64k": lambda n: queue_one_to_one(n, 64 << 10),
    "queue_1to1_1m": lambda n: queue_one_to_one(n, 1 << 20),
    "joinable_queue": joinable_queue,
    "queue_round_trip": queue_round_trip,
    "queue_round_trip_async": queue_round_trip_async,
    "pipe_round_trip": pipe_round_trip,
    "pipe_one_way_64": lambda n: pipe_one_way(n, 64),
    "pipe_one_way_1m": lambda n: pipe_one_way(n, 1 << 20),
    "lock_uncontended": lock_uncontended,
    "semaphore_uncontended": semaphore_uncontended,
    "lock_contended": lock_contended,
    "event_pingpong": event_pingpong,
    "start_join_fork": lambda n: start_join("fork", n),
    "start_join_spawn": lambda n: start_join("spawn", n),
    "start_join_forkserver": lambda n: start_join("forkserver", n),
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in SCENARIOS:
        sys.exit("usage: bench.py <%s> <iterations>" % "|".join(SCENARIOS))
    iterations = int(sys.argv[2])
    if iterations < 1:
        sys.exit("iterations must be at least 1")
    per_op = SCENARIOS[sys.argv[1]](iterations)
    print(json.dumps({"per_op_s": per_op}), flush=True)


if __name__ == "__main__":
    main()
