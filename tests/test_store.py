import multiprocessing
import sqlite3
import time

import pytest

from robustbench_cgn.components import MetricResult
from robustbench_cgn.errors import RunBusyError, StoreError
from robustbench_cgn.store import SCHEMA_VERSION, ResultsStore


def start(store, run_id, seed=0):
    return store.start_run(
        run_id,
        generator="g",
        classifier="c",
        benchmark="b",
        mix="generated",
        seed=seed,
        data_source="src",
        spec={"seed": seed},
        provenance={},
        workdir="/tmp/x",
    )


def test_run_lifecycle_and_metrics(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        record = start(store, "abc")
        assert record.status == "running" and record.attempts == 1 and not record.is_stale()
        store.record_metric("abc", MetricResult("acc", 90.0, n=10, protocol="p"), main=True)
        store.record_metric("abc", MetricResult("acc", 91.0, n=10, key="head"))
        assert store.recorded_metric_keys("abc") == {("acc", ""), ("acc", "head")}
        store.finish_run("abc", status="complete", wall_time_s=1.5)
        assert store.get_run("abc").status == "complete"
        frame = store.metrics_frame()
        assert sorted(frame["value"]) == [90.0, 91.0]
        record = start(store, "abc")  # a second attempt keeps metrics unless fresh
        assert record.attempts == 2 and store.recorded_metric_keys("abc")
        store.start_run(
            "abc",
            generator="g",
            classifier="c",
            benchmark="b",
            mix="generated",
            seed=0,
            data_source="src",
            spec={},
            provenance={},
            workdir="/x",
            fresh=True,
        )
        assert store.recorded_metric_keys("abc") == set()


def test_incomplete_runs_are_hidden_from_frames(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        start(store, "a")
        store.record_metric("a", MetricResult("acc", 1.0, n=1))
        assert store.metrics_frame().empty
        assert len(store.metrics_frame(complete_only=False)) == 1


def test_failed_transaction_rolls_back(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(RuntimeError), store.transaction() as cursor:
            cursor.execute(
                "INSERT INTO runs (run_id, generator, classifier, benchmark, mix, seed,"
                " data_source, spec, status, created_at) VALUES ('x','g','c','b','m',0,"
                "'s','{}','running','now')"
            )
            raise RuntimeError("crash mid-transaction")
        assert store.get_run("x") is None


def test_stale_running_record(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        start(store, "a")
        with store.transaction() as cursor:
            cursor.execute("UPDATE runs SET pid = 999999999 WHERE run_id = 'a'")
        assert store.get_run("a").is_stale()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(StoreError, match="newer cgnbench"):
        ResultsStore(path)


def test_read_only_database_file_gives_store_error(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    store = ResultsStore(path)
    store._connection.execute("PRAGMA query_only = ON")  # works even as root
    with pytest.raises(StoreError, match="cannot write"):
        start(store, "a")


def _writer(path: str, prefix: str, count: int) -> None:
    store = ResultsStore(path)
    for index in range(count):
        run_id = f"{prefix}{index}"
        start(store, run_id, seed=index)
        for metric in range(3):
            store.record_metric(run_id, MetricResult(f"m{metric}", float(index), n=1))
        store.finish_run(run_id, status="complete", wall_time_s=0.0)
    store.close()


def _holder(path: str, started, release) -> None:
    store = ResultsStore(path)
    start(store, "same")
    started.set()
    release.wait(60)
    store.finish_run("same", status="complete", wall_time_s=1.0)
    store.close()


def test_a_run_live_in_another_process_is_not_started_twice(tmp_path):
    """Issue 20: the check and the claim are one transaction; the second start of a live
    run is refused (one line naming it), and once finished it is not restarted."""
    path = str(tmp_path / "r.sqlite")
    ResultsStore(path).close()
    context = multiprocessing.get_context("spawn")
    started, release = context.Event(), context.Event()
    holder = context.Process(target=_holder, args=(path, started, release))
    holder.start()
    try:
        assert started.wait(60)
        with ResultsStore(path) as store:
            with pytest.raises(
                RunBusyError, match=f"run same is being run by process {holder.pid}"
            ):
                start(store, "same")
            assert store.get_run("same").attempts == 1
    finally:
        release.set()
        holder.join(60)
    with ResultsStore(path) as store:
        kept = store.start_run(
            "same", generator="g", classifier="c", benchmark="b", mix="generated", seed=0,
            data_source="src", spec={}, provenance={}, workdir="/x", unless_complete=True,
        )  # fmt: skip
        assert kept.status == "complete" and kept.attempts == 1 and kept.wall_time_s == 1.0


def _lock_holder(path: str, locked, seconds: float) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    locked.set()
    time.sleep(seconds)
    connection.execute("ROLLBACK")
    connection.close()


@pytest.mark.parametrize("holds_s,gives_up", [(1.5, False), (30.0, True)])
def test_a_held_write_lock_is_announced_then_waited_for_or_named(
    tmp_path, monkeypatch, capsys, holds_s, gives_up
):
    """Issue 20: a store locked by another process made cgnbench wait two silent minutes."""
    import robustbench_cgn.store as store_module

    monkeypatch.setattr(store_module, "NOTICE_AFTER_S", 0.3)
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 4.0)
    path = str(tmp_path / "r.sqlite")
    ResultsStore(path).close()
    context = multiprocessing.get_context("spawn")
    locked = context.Event()
    holder = context.Process(target=_lock_holder, args=(path, locked, holds_s))
    holder.start()
    try:
        assert locked.wait(60)
        with ResultsStore(path) as store:
            started = time.monotonic()
            if gives_up:
                with pytest.raises(StoreError, match=r"locked by another process for \d+ s"):
                    start(store, "x")
            else:
                start(store, "x")
                assert store.get_run("x").status == "running"
            assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.join(30)
    notices = capsys.readouterr().err.count("waiting for the results store")
    assert notices == 1


def _open_store(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        ResultsStore(path).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(str(exc))


def test_processes_opening_a_fresh_store_together_all_succeed(tmp_path):
    """Two `cgnbench run` started together on a new home: switching the new file to WAL
    returned "database is locked" at once in one of them (4 of 120 opens before the retry)."""
    context = multiprocessing.get_context("fork")
    outcomes = []
    for attempt in range(20):
        path = str(tmp_path / f"r{attempt}.sqlite")
        barrier, results = context.Barrier(3), context.Queue()
        openers = [context.Process(target=_open_store, args=(path, barrier, results))
                   for _ in range(3)]  # fmt: skip
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(60)
        outcomes += [results.get(timeout=10) for _ in openers]
    assert outcomes == ["ok"] * 60, [o for o in outcomes if o != "ok"][:3]


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ResultsStore(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, p, 40)) for p in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    with ResultsStore(path) as store:
        assert len(store.list_runs()) == 80
        assert len(store.metrics_frame()) == 240


def test_a_full_disk_is_one_clear_error_and_loses_nothing_already_written(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    start(store, "kept")
    store.record_metric("kept", MetricResult("m", 1.0, n=1))
    pages = store._connection.execute("PRAGMA page_count").fetchone()[0]
    store._connection.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL from here on
    with pytest.raises(StoreError, match="disk is full"):
        for index in range(1000):
            start(store, f"big{index}", seed=index)
    store.close()
    reopened = ResultsStore(path)
    assert reopened.get_run("kept") is not None
    assert ("m", "") in reopened.recorded_metric_keys("kept")


def test_an_unusable_results_location_is_one_clear_line(tmp_path):
    from conftest import run_cli

    result = run_cli("--results", "/proc/cgnbench/results.sqlite", "leaderboard", check=False)
    assert result.returncode == 2 and "cannot create the results folder" in result.stderr
    assert "Traceback" not in result.stderr
