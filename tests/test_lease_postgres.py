"""The PostgreSQL lease store on a real server: controllers in separate processes never share a board, a
SIGKILLed one frees its board, quarantine and run records behave as the file store's, the tables come up when
controllers start at once, and a lost or unreachable server is one line without the password."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from harness.errors import LeaseError
from harness.lease import BoardRecord, Holder, acquire
from harness.lease.postgres import PostgresLeaseStore
from harness.urls import hide_password
from tests.sshd import free_port

REPO = Path(__file__).resolve().parent.parent
#: a controller: leases one of argv[2:] from the store at argv[1], says which, holds it until a line on stdin
CONTROLLER = """
import sys
from harness.lease import acquire
from harness.lease.postgres import PostgresLeaseStore
lease = acquire(sys.argv[2:], PostgresLeaseStore(sys.argv[1]), timeout=30, purpose="controller test")
print(lease.board, flush=True)
sys.stdin.readline()
lease.release()
"""

Spawn = Callable[[str, list[str]], "subprocess.Popen[str]"]


@pytest.fixture
def prefix() -> str:
    """Board names of this test alone: the server is shared by the session."""
    return f"pg-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresLeaseStore]:
    with contextlib.closing(PostgresLeaseStore(postgres_url)) as leases:
        yield leases


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Starts controller processes; any still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(url: str, boards: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", CONTROLLER, url, *boards], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def leased(proc: subprocess.Popen[str]) -> str:
    """The board a controller says it leased (bounded: its own acquire gives up after 30 s)."""
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline().strip() if ready else ""
    if not line:
        proc.kill()
        pytest.fail(f"the controller leased nothing: {proc.stderr.read().strip()}")
    return line


def test_two_controllers_never_share_a_board(postgres_url: str, store: PostgresLeaseStore, prefix: str,
                                             spawn: Spawn) -> None:
    boards = [f"{prefix}-b1", f"{prefix}-b2"]
    first, second = spawn(postgres_url, boards), spawn(postgres_url, boards)
    assert {leased(first), leased(second)} == set(boards)
    holders = [store.holder(board) for board in boards]
    assert {h.pid for h in holders if h} == {first.pid, second.pid}
    assert all(h and h.purpose == "controller test" and h.host == socket.gethostname() for h in holders)

    with pytest.raises(LeaseError) as caught:
        acquire(boards, store, timeout=1, purpose="a third controller")
    message = str(caught.value)
    assert f"pid {first.pid} on {socket.gethostname()}" in message
    assert f"pid {second.pid} on {socket.gethostname()}" in message

    for proc in (first, second):
        _, err = proc.communicate("\n", timeout=30)
        assert proc.returncode == 0, err
    assert [store.holder(board) for board in boards] == [None, None]
    with psycopg.connect(postgres_url) as connection:  # each released its holder row
        rows = connection.execute("SELECT count(*) FROM jetson_hil_leases WHERE board = ANY(%s)", (boards,))
        assert rows.fetchone() == (0,)


def test_a_sigkilled_controller_frees_its_board(postgres_url: str, store: PostgresLeaseStore, prefix: str,
                                                spawn: Spawn) -> None:
    board = f"{prefix}-k"
    proc = spawn(postgres_url, [board])
    assert leased(proc) == board
    held = store.holder(board)
    assert held is not None and held.pid == proc.pid
    with pytest.raises(LeaseError, match=f"pid {proc.pid}"):
        acquire([board], store, timeout=0)  # alive, it holds the board: only the kill frees it

    proc.kill()
    proc.wait(timeout=30)
    with acquire([board], store, timeout=10, purpose="after the kill") as lease:
        assert lease.board == board
        # this store's probe sees its own process's lease as taken: the lease has a connection of its own
        now_held = store.holder(board)
        assert now_held is not None and now_held.pid == os.getpid() and now_held.purpose == "after the kill"
    assert store.holder(board) is None


def test_quarantine_and_run_records(postgres_url: str, prefix: str) -> None:
    # the SQLAlchemy form of the URL (as the results history takes it) names the same store
    store = PostgresLeaseStore(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    q1, q2 = f"{prefix}-q1", f"{prefix}-q2"
    try:
        assert store.quarantined(q1) is None
        store.quarantine(q1, "did not answer its health check", recheck_after_s=None)
        kept = store.quarantined(q1)
        assert kept is not None and kept.reason == "did not answer its health check"
        assert kept.recheck_at is None and not kept.due()
        with acquire([q1, q2], store, timeout=5) as lease:
            assert lease.board == q2
        with pytest.raises(LeaseError, match=f"{q1} quarantined .*did not answer"):
            acquire([q1], store, timeout=0)

        store.quarantine(q1, "lost mid-run", recheck_after_s=0)  # due now: the next lease checks it again
        due = store.quarantined(q1)
        assert due is not None and due.reason == "lost mid-run" and due.due()
        with acquire([q1, q2], store, timeout=5) as lease:
            assert lease.board == q1
        store.release_quarantine(q1)
        assert store.quarantined(q1) is None

        assert store.record(q1) == BoardRecord()
        assert store.record_run(q1, "night-1", "lost", infra_failure=True).infra_failures == 1
        second = store.record_run(q1, "night-2", "unreachable", infra_failure=True)
        assert (second.last_run, second.outcome, second.infra_failures) == ("night-2", "unreachable", 2)
        assert store.record(q1) == second
        clean = store.record_run(q1, "night-3", "failed", infra_failure=False)  # failing tests are not infra
        assert (clean.last_run, clean.outcome, clean.infra_failures) == ("night-3", "failed", 0)
        assert store.record(q1) == clean
        assert store.record(q2) == BoardRecord()
    finally:
        store.close()


def test_controllers_starting_at_once_create_the_tables_and_count_every_run(postgres_url: str, prefix: str) -> None:
    """On a fresh database: every controller's first call races to create the tables, then all count failures
    of one board at once; none fails and no count is lost."""
    database = prefix.replace("-", "_")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    url = f"{postgres_url.rsplit('/', 1)[0]}/{database}"
    controllers, runs = 8, 10
    stores = [PostgresLeaseStore(url) for _ in range(controllers)]
    start = threading.Barrier(controllers)
    errors: list[BaseException] = []

    def controller(leases: PostgresLeaseStore) -> None:
        try:
            start.wait(timeout=30)
            for night in range(runs):
                leases.record_run("shared", f"night-{night}", "lost", infra_failure=True)
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=controller, args=(leases,)) for leases in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert stores[0].record("shared").infra_failures == controllers * runs
    finally:
        for leases in stores:
            leases.close()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {database} WITH (FORCE)")


def test_a_connection_the_server_ended(postgres_url: str, store: PostgresLeaseStore, prefix: str) -> None:
    """The store says so in one line and connects again on its next call; a lease whose connection ended has
    lost its lock with it, and releasing it is quiet."""
    board = f"{prefix}-t"
    lease = acquire([board], store, timeout=5)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                              "WHERE application_name = 'jetson-hil lease store' AND pid <> pg_backend_pid()")
        assert len(ended.fetchall()) >= 2  # the store's own connection and the lease's
    with pytest.raises(LeaseError) as caught:
        store.record(board)
    assert store.shown in str(caught.value) and "\n" not in str(caught.value)
    assert store.holder(board) is None  # the server freed the lock with the session
    lease.release()
    lease.release()


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    url = f"postgresql://lab:secret@127.0.0.1:{free_port()}/leases"
    store = PostgresLeaseStore(url)
    assert store.shown == f"postgresql://lab:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    calls: list[Callable[[], object]] = [lambda: store.try_lease("b", Holder()), lambda: store.holder("b"),
                                         lambda: store.record("b"), lambda: acquire(["b"], store, timeout=5)]
    for call in calls:
        with pytest.raises(LeaseError) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and "secret" not in message
        assert f"cannot reach the lease store {store.shown}" in message and "lease_store" in message
    assert hide_password("postgresql://lab@db/leases?password=secret&sslmode=require") == (
        "postgresql://lab@db/leases?password=***&sslmode=require")


#: a pytest session that holds its leased board until a line on stdin
HOLDING_SESSION = """
import sys

from harness.pytest_plugin import leased_entry


def test_hold(request):
    print("LEASED", leased_entry(request.config).name, flush=True)
    sys.stdin.readline()
"""


def test_two_pytest_controllers_never_share_a_board_and_a_killed_one_frees_it(
        postgres_url: str, store: PostgresLeaseStore, prefix: str, tmp_path: Path) -> None:
    """Controllers as a farm runs them: pytest processes whose lab.yaml names the PostgreSQL lease store."""
    import yaml

    boards = [f"{prefix}-a", f"{prefix}-b"]
    lab = tmp_path / "lab.yaml"
    lab.write_text(yaml.safe_dump({"lease_store": postgres_url, "boards": [
        {"name": b, "profile": "xavier-nx", "tags": [prefix], "transport": {"kind": "local"}} for b in boards]}))
    (tmp_path / "test_hold.py").write_text(HOLDING_SESSION)
    started: list[subprocess.Popen[str]] = []

    def controller() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "test_hold.py", f"--lab={lab}",
                                 f"--device=tag:{prefix}", "--no-health-check", "--lease-timeout=30", "-s", "-q",
                                 "-p", "no:cacheprovider"],
                                cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        started.append(proc)
        assert proc.stdout is not None
        seen = []
        while select.select([proc.stdout], [], [], 60)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("LEASED "):
                return proc, line.split()[1]
        pytest.fail(f"the pytest controller leased nothing: {''.join(seen)[-2000:]}")

    try:
        first, first_board = controller()
        second, second_board = controller()
        assert {first_board, second_board} == set(boards)
        assert {store.holder(b).pid for b in boards} == {first.pid, second.pid}  # type: ignore[union-attr]
        first.kill()  # SIGKILL: no release, no session end; the server drops its connection and its lock
        first.wait(timeout=30)
        third, third_board = controller()  # waits (up to its lease timeout) until the killed one's board is free
        assert third_board == first_board and store.holder(first_board).pid == third.pid  # type: ignore[union-attr]
        for proc in (second, third):
            proc.communicate("\n", timeout=60)
            assert proc.returncode == 0
        assert all(store.holder(b) is None for b in boards)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
