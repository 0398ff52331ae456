"""psycopg 3 against Weft, as ORMs use it: a bulk insert through UNNEST of typed array
parameters (Django 5.2's bulk_create), `= ANY(%s)` with lists, GROUP BY a primary key,
named (server-side) cursors, and array columns read in binary (one and two dimensions).

Run by tests/it/clients.rs as `python3 orm_psycopg.py "<conninfo>"`; prints OK and exits 0,
or prints what went wrong and exits 1.
"""

import datetime
import decimal
import sys
import uuid

import psycopg
from psycopg.types.json import Jsonb


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


UTC = datetime.timezone.utc


def main():
    with psycopg.connect(sys.argv[1], autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orm_item (id bigserial PRIMARY KEY, name varchar(50), price numeric(8, 2),"
            " born date, at timestamptz, tag uuid, meta jsonb, ok boolean)"
        )
        rows = [
            ("a", decimal.Decimal("1.50"), datetime.date(2020, 1, 2),
             datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.UUID(int=1), Jsonb({"k": 1}), True),
            ("b", decimal.Decimal("20"), None, None, uuid.UUID(int=2), Jsonb([1, "x"]), False),
            ("c", None, datetime.date(1999, 12, 31),
             datetime.datetime(1999, 12, 31, 23, 59, tzinfo=UTC), None, None, None),
        ]
        columns = list(map(list, zip(*rows)))
        cur = conn.execute(
            "INSERT INTO orm_item (name, price, born, at, tag, meta, ok) SELECT * FROM UNNEST("
            "(%s)::varchar[], (%s)::numeric[], (%s)::date[], (%s)::timestamp with time zone[],"
            " (%s)::uuid[], (%s)::jsonb[], (%s)::boolean[]) RETURNING id",
            columns,
        )
        check("ids returned", [r[0] for r in cur.fetchall()], [1, 2, 3])
        got = conn.execute(
            "SELECT name, price, born, at, tag, meta, ok FROM orm_item ORDER BY id"
        ).fetchall()
        want = [
            ("a", decimal.Decimal("1.50"), datetime.date(2020, 1, 2),
             datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.UUID(int=1), {"k": 1}, True),
            ("b", decimal.Decimal("20.00"), None, None, uuid.UUID(int=2), [1, "x"], False),
            ("c", None, datetime.date(1999, 12, 31),
             datetime.datetime(1999, 12, 31, 23, 59, tzinfo=UTC), None, None, None),
        ]
        check("rows inserted from arrays", [tuple(r) for r in got], want)

        # Lists as parameters of `= ANY(%s)`, of each type.
        for column, values, names in [
            ("tag", [uuid.UUID(int=2), uuid.UUID(int=9)], ["b"]),
            ("born", [datetime.date(1999, 12, 31)], ["c"]),
            ("price", [decimal.Decimal("1.5"), decimal.Decimal("7")], ["a"]),
            ("at", [datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)], ["a"]),
        ]:
            got = conn.execute(
                f"SELECT name FROM orm_item WHERE {column} = ANY(%s) ORDER BY name", [values]
            ).fetchall()
            check(f"{column} = ANY(list)", [r[0] for r in got], names)
        got = conn.execute("SELECT %s::uuid[]", [[uuid.UUID(int=3)]]).fetchone()[0]
        check("a uuid[] result", got, [uuid.UUID(int=3)])
        got = conn.execute("SELECT %s::numeric[]", [[decimal.Decimal("1.25"), decimal.Decimal("3")]]).fetchone()[0]
        check("a numeric[] result", got, [decimal.Decimal("1.25"), decimal.Decimal("3")])
        try:
            conn.execute("SELECT %s::jsonb[]", [["{not json"]])
            sys.exit("an invalid jsonb element was accepted")
        except psycopg.errors.InvalidTextRepresentation:
            pass

        # executemany of an INSERT whose parameters are cast, and an upsert whose SET takes a
        # parameter (SQLAlchemy's and Django's upserts).
        conn.cursor().executemany(
            "INSERT INTO orm_item (id, name) VALUES (%s::INTEGER, %s::VARCHAR)", [(10, "j"), (11, "k")]
        )
        conn.cursor().executemany(
            "INSERT INTO orm_item (id, name) VALUES (%(id)s::INTEGER, %(name)s::VARCHAR)"
            " ON CONFLICT (id) DO UPDATE SET name = %(new)s::VARCHAR WHERE orm_item.id <> %(skip)s",
            [{"id": 10, "name": "x", "new": "J", "skip": 0}, {"id": 11, "name": "x", "new": "K", "skip": 11}],
        )
        got = conn.execute("SELECT id, name FROM orm_item WHERE id >= 10 ORDER BY id").fetchall()
        check("upsert with parameters", got, [(10, "J"), (11, "k")])
        conn.execute("DELETE FROM orm_item WHERE id >= 10")
        check("SHOW TRANSACTION ISOLATION LEVEL",
              conn.execute("SHOW TRANSACTION ISOLATION LEVEL").fetchone()[0] in ("repeatable read", "read committed"), True)

        # GROUP BY the primary key admits the table's other columns (Django's annotate()).
        conn.execute("CREATE TABLE orm_part (id bigserial PRIMARY KEY, item_id bigint, n int)")
        conn.execute("INSERT INTO orm_part (item_id, n) VALUES (1, 1), (1, 2), (2, 5)")
        got = conn.execute(
            "SELECT i.id, i.name, count(p.id), sum(p.n) FROM orm_item i"
            " LEFT JOIN orm_part p ON p.item_id = i.id GROUP BY i.id ORDER BY i.id"
        ).fetchall()
        check("GROUP BY primary key", got, [(1, "a", 2, 3), (2, "b", 1, 5), (3, "c", 0, None)])

        # A named cursor: DECLARE with parameters, Describe of the portal, FETCH in batches.
        with conn.transaction():
            with conn.cursor(name="orm_curs") as cur:
                cur.itersize = 2
                cur.execute("SELECT id, name FROM orm_item WHERE id >= %s ORDER BY id", [1])
                check("cursor description", [d.name for d in cur.description], ["id", "name"])
                check("named cursor rows", list(cur), [(1, "a"), (2, "b"), (3, "c")])
        # WITH HOLD outlives its transaction, and reads the rows as they were when declared.
        with conn.cursor(name="orm_hold", withhold=True) as cur:
            cur.execute("SELECT name FROM orm_item ORDER BY id")
            conn.execute("DELETE FROM orm_item WHERE id = 1")
            check("held cursor rows", cur.fetchmany(2), [("a",), ("b",)])
            check("held cursor rest", cur.fetchall(), [("c",)])
        conn.execute("CREATE TABLE orm_grid (id int PRIMARY KEY, cells int[])")
        with conn.cursor(binary=True) as cur:
            cur.executemany("INSERT INTO orm_grid VALUES (%s, %s)", [(1, [1, 2]), (2, [3, None])])
            cur.execute("SELECT cells FROM orm_grid ORDER BY id")
            check("arrays in binary", cur.fetchall(), [([1, 2],), ([3, None],)])
            cur.execute("SELECT array_agg(cells ORDER BY id) FROM orm_grid")
            check("two dimensions in binary", cur.fetchall(), [([[1, 2], [3, None]],)])
    print("OK")


if __name__ == "__main__":
    main()
