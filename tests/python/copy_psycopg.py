"""psycopg 3 against Weft: cursor.copy() in and out, and a failed COPY that leaves the
connection usable.

Run by tests/it/clients.rs as `python3 copy_psycopg.py "<conninfo>"`; prints OK and exits 0,
or prints what went wrong and exits 1.
"""

import sys

import psycopg


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


def main():
    with psycopg.connect(sys.argv[1], autocommit=True) as conn:
        conn.execute("CREATE TABLE pyc (id int PRIMARY KEY, t text, ts timestamp)")
        with conn.cursor() as cur:
            with cur.copy("COPY pyc (id, t, ts) FROM STDIN") as copy:
                copy.write_row((1, "a\tb", "2024-01-01 00:00:00"))
                copy.write_row((2, None, None))
            check("rows copied in", cur.rowcount, 2)
            with cur.copy("COPY pyc TO STDOUT") as copy:
                rows = list(copy.rows())
            check("rows copied out", rows, [("1", "a\tb", "2024-01-01 00:00:00"), ("2", None, None)])
            with cur.copy("COPY (SELECT id, t FROM pyc ORDER BY id) TO STDOUT WITH (FORMAT csv)") as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
            check("csv out", data, b"1,a\tb\n2,\n")
        try:
            with conn.cursor() as cur:
                with cur.copy("COPY pyc (id) FROM STDIN") as copy:
                    copy.write_row((1,))
            sys.exit("a duplicate key was copied in")
        except psycopg.errors.UniqueViolation:
            pass
        # An exception inside the block makes psycopg send CopyFail (the server answers 57014,
        # which psycopg consumes before re-raising the exception): nothing is kept.
        try:
            with conn.cursor() as cur:
                with cur.copy("COPY pyc (id) FROM STDIN") as copy:
                    copy.write_row((3,))
                    raise RuntimeError("client gives up")
            sys.exit("the COPY did not fail")
        except RuntimeError:
            pass
        check("rows after the failed COPY", conn.execute("SELECT count(*) FROM pyc").fetchone()[0], 2)
    print("OK")


if __name__ == "__main__":
    main()
