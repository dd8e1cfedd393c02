"""Fuzzing statistics: how many generated requests the run sent (``test_fuzz.py``)."""

import collections


def pytest_terminal_summary(terminalreporter):
    from tests.unit.web import test_fuzz

    if not test_fuzz.SENT:
        return
    by_backend: collections.Counter = collections.Counter()
    by_status: collections.Counter = collections.Counter()
    for (backend, _operation, status), count in test_fuzz.SENT.items():
        by_backend[backend] += count
        by_status[status] += count
    terminalreporter.write_line(
        f"fuzz: {sum(by_backend.values())} generated requests "
        f"({', '.join(f'{b}: {n}' for b, n in sorted(by_backend.items()))}); "
        f"by status: {', '.join(f'{s}: {n}' for s, n in sorted(by_status.items()))}"
    )
