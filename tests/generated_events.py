"""Events made by the database itself, for tests that need many: sent from Python, 100,000 rows
took seconds of the test process's CPU (a dict and a JSON document each) for work that took the
database a fraction of that."""

from sqlalchemy import BigInteger, String, cast, literal, select

from opencues.storage.schema import events


def generated_events(account_id: str, count: int, *, user: str = "u", users: int = 500, first_timestamp: int = 0):
    """An INSERT of ``count`` events named ``e`` with empty attributes, timestamps
    ``first_timestamp`` + 0…count-1, spread over ``users`` user ids (``user`` + the event's number
    modulo ``users``; ``user`` itself when ``users`` is 1), from a counting query."""
    numbers = select(literal(0, BigInteger).label("i")).cte("numbers", recursive=True)
    numbers = numbers.union_all(select(numbers.c.i + 1).where(numbers.c.i < count - 1))
    user_id = literal(user) if users == 1 else literal(user) + cast(numbers.c.i % users, String)
    rows = select(
        literal(account_id), user_id, literal("e"), numbers.c.i + literal(first_timestamp, BigInteger), literal({}, events.c.attributes.type)
    )
    return events.insert().from_select(["account_id", "user_id", "name", "timestamp", "attributes"], rows)
