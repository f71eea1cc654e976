"""The database fixtures of tests/conftest.py give every test a real, fresh, isolated
database on each backend, and clean it up afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from conftest import MysqlServer, PostgresServer


@contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def create_probe_table(engine: Engine) -> sa.Table:
    metadata = sa.MetaData()
    probe = sa.Table(
        "probe",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
    )
    metadata.create_all(engine)
    return probe


def table_names(url: str) -> list[str]:
    with engine_for(url) as engine:
        return sa.inspect(engine).get_table_names()


def test_database_starts_empty(db_url: str) -> None:
    assert table_names(db_url) == []


def test_row_written_can_be_read_back(db_url: str) -> None:
    with engine_for(db_url) as engine:
        probe = create_probe_table(engine)
        with engine.begin() as conn:
            conn.execute(probe.insert(), [{"name": "first"}, {"name": "zweite Zeile ✓"}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(probe.c.id, probe.c.name).order_by(probe.c.id)).all()

    assert [tuple(row) for row in rows] == [(1, "first"), (2, "zweite Zeile ✓")]


def test_url_uses_the_expected_driver(db_url: str, db_backend: str) -> None:
    expected_driver = {"sqlite": "pysqlite", "postgres": "psycopg", "mysql": "pymysql"}
    with engine_for(db_url) as engine:
        assert engine.dialect.driver == expected_driver[db_backend]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1 + 1")).scalar_one() == 2


def test_each_database_is_isolated(
    db_url: str, db_backend: str, new_db_url: Callable[[str], str]
) -> None:
    other_url = new_db_url(db_backend)
    assert other_url != db_url

    with engine_for(db_url) as engine:
        create_probe_table(engine)

    assert table_names(db_url) == ["probe"]
    assert table_names(other_url) == []


def test_sqlite_database_lives_in_the_test_directory(sqlite_url: str, tmp_path: Path) -> None:
    assert sqlite_url == f"sqlite:///{tmp_path}/tasks.db"
    with engine_for(sqlite_url) as engine:
        create_probe_table(engine)
    assert (tmp_path / "tasks.db").is_file()


def test_postgres_url_names_a_fresh_tm_database(postgres_url: str) -> None:
    url = sa.make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.username) == ("127.0.0.1", 5432, "postgres")
    assert url.database is not None
    assert url.database.startswith("tm_")
    assert len(url.database) == len("tm_") + 16


def test_mysql_url_names_a_fresh_tm_database(mysql_url: str) -> None:
    url = sa.make_url(mysql_url)
    assert url.drivername == "mysql+pymysql"
    assert (url.host, url.port, url.username) == ("127.0.0.1", 3306, "root")
    assert url.query == {"charset": "utf8mb4"}
    assert url.database is not None
    assert url.database.startswith("tm_")
    with engine_for(mysql_url) as engine, engine.connect() as conn:
        charset = conn.execute(sa.text("SELECT @@character_set_database")).scalar_one()
    assert charset == "utf8mb4"


def postgres_database_exists(server: PostgresServer, name: str) -> bool:
    with server.admin_connection() as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        return bool(row.fetchone()[0])


def mysql_database_exists(server: MysqlServer, name: str) -> bool:
    with server.admin_connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (name,)
        )
        return bool(cur.fetchone()[0])


def test_postgres_database_is_dropped_despite_open_connections(
    postgres_server: PostgresServer,
) -> None:
    name = postgres_server.create_database()
    assert postgres_database_exists(postgres_server, name)

    with engine_for(postgres_server.url(name)) as engine:
        conn = engine.connect()
        conn.execute(sa.text("SELECT 1"))  # holds a backend open in a transaction
        postgres_server.drop_database(name)
        conn.invalidate()  # its server side was terminated by the drop

    assert not postgres_database_exists(postgres_server, name)


def test_mysql_database_is_dropped_despite_open_connections(mysql_server: MysqlServer) -> None:
    name = mysql_server.create_database()
    assert mysql_database_exists(mysql_server, name)

    with engine_for(mysql_server.url(name)) as engine:
        create_probe_table(engine)
        conn = engine.connect()
        # An open transaction that read the table holds a metadata lock on it.
        conn.execute(sa.text("SELECT count(*) FROM probe"))
        mysql_server.drop_database(name)
        conn.invalidate()  # its server side was killed by the drop

    assert not mysql_database_exists(mysql_server, name)
