"""psycopg 3 against Weft: LISTEN, then conn.notifies() for plain NOTIFY and for a live query.

Run by tests/it/clients.rs as `python3 notify_psycopg.py "<conninfo>"`; prints OK and exits 0,
or prints what went wrong and exits 1. Every wait is bounded (notifies(timeout=...)).
"""

import json
import sys
import time

import psycopg

DEADLINE = 30.0


def next_notify(conn, channel):
    """The next notification on `channel` within DEADLINE seconds, else fail."""
    end = time.monotonic() + DEADLINE
    while True:
        left = end - time.monotonic()
        if left <= 0:
            sys.exit(f"no notification on {channel!r} within {DEADLINE} s")
        for n in conn.notifies(timeout=left, stop_after=1):
            if n.channel != channel:
                sys.exit(f"unexpected notification {n!r}")
            return n


def main():
    conninfo = sys.argv[1]
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as listener, \
            psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as writer:
        listener.execute("LISTEN events")

        # Plain NOTIFY from another session, and pg_notify.
        writer.execute("NOTIFY events, 'hello from psycopg'")
        n = next_notify(listener, "events")
        assert n.payload == "hello from psycopg", n
        # The notifying session's pid as the protocol reports it (BackendKeyData). Weft's
        # pg_backend_pid() returns a different number (known defect), so it is not compared.
        assert n.pid == writer.info.backend_pid, (n.pid, writer.info.backend_pid)
        writer.execute("SELECT pg_notify('events', %s)", ["second"])
        assert next_notify(listener, "events").payload == "second"

        # A live query: a matching insert, an update, a row that stops matching.
        writer.execute("CREATE TABLE orders (id int PRIMARY KEY, customer text, status text)")
        writer.execute(
            "CREATE LIVE QUERY open_orders AS "
            "SELECT customer FROM orders WHERE status = 'open'"
        )
        listener.execute("LISTEN open_orders")
        writer.execute("INSERT INTO orders VALUES (1, 'ada', 'open'), (2, 'bob', 'closed')")
        change = json.loads(next_notify(listener, "open_orders").payload)
        assert change["op"] == "insert", change
        assert change["key"] == {"id": 1}, change
        assert change["row"] == {"customer": "ada"}, change
        pos = change["pos"]
        writer.execute("UPDATE orders SET customer = 'ada l.' WHERE id = 1")
        change = json.loads(next_notify(listener, "open_orders").payload)
        assert change["op"] == "update" and change["row"] == {"customer": "ada l."}, change
        assert change["old"] == {"customer": "ada"} and change["pos"] > pos, change
        writer.execute("UPDATE orders SET status = 'shipped' WHERE id = 1")
        change = json.loads(next_notify(listener, "open_orders").payload)
        assert change["op"] == "delete" and change["key"] == {"id": 1}, change

        # After UNLISTEN nothing more arrives: a marker on another channel comes first.
        listener.execute("UNLISTEN open_orders")
        listener.execute("LISTEN marker")
        writer.execute("INSERT INTO orders VALUES (3, 'cy', 'open')")
        writer.execute("NOTIFY marker")
        n = next(iter(listener.notifies(timeout=DEADLINE, stop_after=1)), None)
        assert n is not None and n.channel == "marker", n
    print("OK")


if __name__ == "__main__":
    main()
