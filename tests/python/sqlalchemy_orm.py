"""SQLAlchemy 2 (with psycopg 3) against Weft: create_all, the ORM's unit of work (its
"insertmanyvalues" bulk INSERT … RETURNING), eager loading, grouping by a primary key, JSONB
lookups, ARRAY columns (executemany of bound arrays, contains/overlap/any, a subscript), a
PostgreSQL upsert with parameters, and reflection through pg_catalog (Alembic's autogenerate
reads the same).

Run by tests/it/clients.rs as `python3 sqlalchemy_orm.py "<conninfo>"`; prints OK and exits 0,
or prints what went wrong and exits 1.
"""

import decimal
import sys
import uuid

from sqlalchemy import (ForeignKey, Integer, Numeric, String, any_, create_engine, func, inspect,
                        select, text)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import (DeclarativeBase, Mapped, Session, joinedload, mapped_column,
                            relationship, selectinload)


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


class Base(DeclarativeBase):
    pass


class Team(Base):
    __tablename__ = "sa_team"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    players: Mapped[list["Player"]] = relationship(back_populates="team")


class Player(Base):
    __tablename__ = "sa_player"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("sa_team.id"))
    score: Mapped[decimal.Decimal] = mapped_column(Numeric(8, 2), default=0)
    data: Mapped[dict] = mapped_column(JSONB, default=dict)
    uid: Mapped[uuid.UUID] = mapped_column(UUID, default=uuid.uuid4)
    team: Mapped[Team] = relationship(back_populates="players")


class Tagged(Base):
    __tablename__ = "sa_tagged"
    id: Mapped[int] = mapped_column(primary_key=True)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    nums: Mapped[list[int]] = mapped_column(ARRAY(Integer), nullable=True)


def main():
    params = dict(p.split("=", 1) for p in sys.argv[1].split())
    url = (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
           f"{params.get('port', '5433')}/{params.get('dbname', 'postgres')}")
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        red, blue = Team(name="red"), Team(name="blue")
        s.add_all([red, blue])
        s.flush()
        s.add_all([
            Player(name=f"p{i}", team=[red, blue][i % 2], score=decimal.Decimal(i), data={"i": i})
            for i in range(6)
        ])
        s.commit()
        check("players", s.scalar(select(func.count()).select_from(Player)), 6)
        check("selectinload",
              [(t.name, sorted(p.name for p in t.players))
               for t in s.scalars(select(Team).options(selectinload(Team.players)).order_by(Team.name))],
              [("blue", ["p1", "p3", "p5"]), ("red", ["p0", "p2", "p4"])])
        check("joinedload",
              [(p.name, p.team.name)
               for p in s.scalars(select(Player).options(joinedload(Player.team)).order_by(Player.name).limit(2))],
              [("p0", "red"), ("p1", "blue")])
        check("group by primary key",
              s.execute(select(Team.name, func.sum(Player.score), func.count(Player.id))
                        .join(Player).group_by(Team.id).order_by(Team.name)).all(),
              [("blue", decimal.Decimal("9.00"), 3), ("red", decimal.Decimal("6.00"), 3)])
        check("jsonb path",
              s.scalars(select(Player.name).where(Player.data["i"].as_integer() > 3).order_by(Player.name)).all(),
              ["p4", "p5"])
    with engine.begin() as c:
        c.execute(pg_insert(Team).values(id=1, name="red")
                  .on_conflict_do_update(index_elements=["id"], set_={"name": "RED"}))
        check("upsert", c.execute(text("SELECT name FROM sa_team ORDER BY id")).scalars().all(), ["RED", "blue"])
        c.execute(Player.__table__.insert(),
                  [{"name": f"b{i}", "team_id": 1, "score": 1, "data": {}, "uid": uuid.uuid4()} for i in range(20)])
        check("executemany", c.execute(text("SELECT count(*) FROM sa_player")).scalar(), 26)
    with Session(engine) as s:
        s.add_all([Tagged(id=1, tags=["a", "b c"], nums=[1, 2]), Tagged(id=2, tags=["c"], nums=[]),
                   Tagged(id=3, tags=[], nums=None)])
        s.commit()
        check("array contains", s.scalars(select(Tagged.id).where(Tagged.tags.contains(["a"]))).all(), [1])
        check("array overlap",
              s.scalars(select(Tagged.id).where(Tagged.tags.overlap(["c", "b c"])).order_by(Tagged.id)).all(),
              [1, 2])
        check("array any", s.scalars(select(Tagged.id).where(2 == any_(Tagged.nums))).all(), [1])
        check("array subscript", s.scalars(select(Tagged.tags[2]).order_by(Tagged.id)).all(), ["b c", None, None])
        t = s.get(Tagged, 2)
        t.tags = t.tags + ["x"]
        s.commit()
        check("array update", s.get(Tagged, 2).tags, ["c", "x"])
    i = inspect(engine)
    check("tables", sorted(t for t in i.get_table_names() if t.startswith("sa_")),
          ["sa_player", "sa_tagged", "sa_team"])
    check("array columns", [(c["name"], repr(c["type"])) for c in i.get_columns("sa_tagged")],
          [("id", "INTEGER()"), ("tags", "ARRAY(VARCHAR(length=20))"), ("nums", "ARRAY(INTEGER())")])
    check("columns", [c["name"] for c in i.get_columns("sa_player")],
          ["id", "name", "team_id", "score", "data", "uid"])
    check("primary key", i.get_pk_constraint("sa_player")["constrained_columns"], ["id"])
    check("foreign keys", [(f["constrained_columns"], f["referred_table"], f["referred_columns"])
                           for f in i.get_foreign_keys("sa_player")],
          [(["team_id"], "sa_team", ["id"])])
    check("indexes", [(x["name"], x["column_names"], x["unique"]) for x in i.get_indexes("sa_player")],
          [("ix_sa_player_name", ["name"], False)])
    check("unique constraints", [u["column_names"] for u in i.get_unique_constraints("sa_team")], [["name"]])
    print("OK")


if __name__ == "__main__":
    main()
