"""A database of their own for end-to-end servers, apart from pytest-django's test database."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def is_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def fresh_database_env(label: str) -> dict[str, str]:
    """Environment variables pointing a server at a new, empty database (migrate it next)."""
    if not is_postgres():
        path = Path(tempfile.mkdtemp(prefix=f"memcloud-{label}-")) / "db.sqlite3"
        return {"SQLITE_PATH": str(path), "DATABASE_URL": ""}
    import psycopg

    base = urlsplit(os.environ["DATABASE_URL"])
    name = f"{base.path.lstrip('/') or 'memcloud'}_{label}_{uuid.uuid4().hex[:6]}"
    admin = urlunsplit(base._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return {"DATABASE_URL": urlunsplit(base._replace(path=f"/{name}"))}


def drop_database(env: dict[str, str]) -> None:
    url = env.get("DATABASE_URL", "")
    if not url:
        return
    import psycopg

    base = urlsplit(url)
    name = base.path.lstrip("/")
    with psycopg.connect(urlunsplit(base._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
