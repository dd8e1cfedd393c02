"""A pytest plugin that counts new PostgreSQL connections (``psycopg``) per test and per caller.

    PYTHONPATH=$PWD:$PWD/bench pytest -p count_connections … ; python bench/count_connections.py

Each test process writes ``$COUNT_CONNECTIONS_OUT-<worker>.json`` (default
``/tmp/opencues-connections``); run as a script, this file sums them: the callers opening most,
then the tests. A session the test harness hands back (``tests/conftest.py``,
``_KeptPostgresSessions``) is not a new connection and is not counted.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import sys
import threading
import traceback

OUT = os.environ.get("COUNT_CONNECTIONS_OUT", "/tmp/opencues-connections")
_current = ["<set-up>"]
_by_test: collections.Counter = collections.Counter()
_by_caller: collections.Counter = collections.Counter()


def _caller() -> str:
    frames = [f for f in traceback.extract_stack()[:-2] if "/opencues/" in f.filename or "/tests/" in f.filename]
    where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in reversed(frames[-4:]))
    return f"{where} [{threading.current_thread().name}]"


def _install() -> None:
    import psycopg

    connect = psycopg.Connection.connect.__func__

    def counted(cls, *args, **kwargs):
        _by_test[_current[0]] += 1
        _by_caller[_caller()] += 1
        return connect(cls, *args, **kwargs)

    psycopg.Connection.connect = classmethod(counted)
    psycopg.connect = psycopg.Connection.connect  # (the module's name is bound at import)


_install()  # on import (``-p``): before tests/conftest.py wraps ``psycopg.connect`` in its turn


def pytest_runtest_setup(item):
    _current[0] = item.nodeid


def pytest_sessionfinish(session):
    with open(f"{OUT}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.json", "w") as f:
        json.dump({"by_test": _by_test, "by_caller": _by_caller}, f)


if __name__ == "__main__":
    tests, callers = collections.Counter(), collections.Counter()
    for path in glob.glob(f"{OUT}-*.json"):
        with open(path) as f:
            counts = json.load(f)
        tests.update(counts["by_test"])
        callers.update(counts["by_caller"])
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print(f"{sum(tests.values())} new connections, in {len(tests)} tests (or set-ups)")
    for caller, n in callers.most_common(top):
        print(f"{n:6}  {caller}")
    for test, n in tests.most_common(top):
        print(f"{n:6}  {test}")
