#!/usr/bin/env python3
# Foreign-key overhead: single-row autocommit inserts into a table with a foreign key (bc) and
# into the same table without one (bc2), 3 rounds of 3,000 each, one client (psycopg 3).
# usage: bench/fk-inserts.py PORT   (a running Weft or PostgreSQL on 127.0.0.1, user postgres)
import psycopg, time, sys, statistics
port = int(sys.argv[1])
conn = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True)
c = conn.cursor()
c.execute("DROP TABLE IF EXISTS bc, bc2, bp")
c.execute("CREATE TABLE bp (id int PRIMARY KEY)")
c.execute("INSERT INTO bp SELECT g FROM generate_series(1, 1000) g")
c.execute("CREATE TABLE bc (id int PRIMARY KEY, pid int REFERENCES bp)")
c.execute("CREATE TABLE bc2 (id int PRIMARY KEY, pid int)")
N = 3000
res = {}
for rnd in range(3):
    for t in ("bc2", "bc"):
        start = time.perf_counter()
        for i in range(N):
            c.execute(f"INSERT INTO {t} VALUES (%s, %s)", (rnd * N + i, i % 1000 + 1))
        res.setdefault(t, []).append(N / (time.perf_counter() - start))
for t, v in res.items():
    print(port, t, "median inserts/s", round(statistics.median(v)), [round(x) for x in v])
