"""Django 5.2 against Weft, as a Django application uses it: `migrate` of the contrib apps and of
a small app, then ORM operations whose SQL Weft must run as PostgreSQL does (bulk_create through
UNNEST of typed arrays, annotate() grouping by the primary key, Subquery(qs[:1]), iterator()
over a named cursor, JSON lookups, savepoints, constraint errors, ArrayField lookups).

Run by tests/it/clients.rs as `python3 django_orm.py "<conninfo>"`; prints OK and exits 0,
or prints what went wrong and exits 1.
"""

import datetime
import decimal
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django
from django.conf import settings


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


def configure(conninfo):
    params = dict(p.split("=", 1) for p in conninfo.split())
    settings.configure(
        SECRET_KEY="test",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django_app",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": params.get("host", "127.0.0.1"),
                "PORT": params.get("port", "5433"),
                "USER": params.get("user", "postgres"),
                "NAME": params.get("dbname", "postgres"),
            }
        },
    )
    django.setup()


def main():
    configure(sys.argv[1])
    from django.core.management import call_command
    from django.db import IntegrityError, transaction
    from django.db.models import (Avg, Case, Count, Exists, F, Max, OuterRef, Q, Subquery,
                                  Sum, Value, When, Window)
    from django.db.models.functions import Coalesce, Concat, Length, Lower, RowNumber, TruncDay

    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import Group, Permission, User
    from django_app.models import Author, Book, Shelf

    ann = Author.objects.create(name="Ann", born=datetime.date(1970, 1, 2), meta={"x": 1, "tags": ["a", "b"]})
    bob = Author.objects.create(name="Bob", meta={"x": 2})
    cy = Author.objects.create(name="Cy")
    Book.objects.bulk_create([
        Book(title=f"T{i}", author=[ann, bob, cy][i % 3], price=decimal.Decimal(i) + decimal.Decimal("0.5"),
             tags=[i, "t"], ref=uuid.UUID(int=i))
        for i in range(10)
    ])
    check("books", Book.objects.count(), 10)
    check("select_related",
          [(b.title, b.author.name) for b in Book.objects.select_related("author").order_by("title")[:3]],
          [("T0", "Ann"), ("T1", "Bob"), ("T2", "Cy")])
    check("prefetch_related",
          [(a.name, sorted(b.title for b in a.books.all())) for a in Author.objects.prefetch_related("books").order_by("name")],
          [("Ann", ["T0", "T3", "T6", "T9"]), ("Bob", ["T1", "T4", "T7"]), ("Cy", ["T2", "T5", "T8"])])
    check("annotate count",
          list(Author.objects.annotate(n=Count("books")).order_by("name").values_list("name", "n")),
          [("Ann", 4), ("Bob", 3), ("Cy", 3)])
    check("annotate sum, max",
          list(Author.objects.annotate(s=Sum("books__price"), m=Max("books__price")).order_by("name").values_list("name", "s", "m")),
          [("Ann", decimal.Decimal("20.00"), decimal.Decimal("9.50")),
           ("Bob", decimal.Decimal("13.50"), decimal.Decimal("7.50")),
           ("Cy", decimal.Decimal("16.50"), decimal.Decimal("8.50"))])
    check("count with filter", Author.objects.aggregate(n=Count("books", filter=Q(books__price__gt=5))), {"n": 5})
    check("avg", Book.objects.aggregate(a=Avg("price"))["a"], decimal.Decimal("5"))
    check("json key", list(Author.objects.filter(meta__x=1).values_list("name", flat=True)), ["Ann"])
    check("json contains", list(Author.objects.filter(meta__contains={"x": 2}).values_list("name", flat=True)), ["Bob"])
    check("json has_key", list(Author.objects.filter(meta__has_key="tags").values_list("name", flat=True)), ["Ann"])
    check("json path", list(Author.objects.filter(meta__tags__0="a").values_list("name", flat=True)), ["Ann"])
    check("json list contains", Book.objects.filter(tags__contains=[3]).count(), 1)
    check("icontains", list(Book.objects.filter(title__icontains="t1").values_list("title", flat=True)), ["T1"])
    check("regex", Book.objects.filter(title__regex=r"^T[0-4]$").count(), 5)
    check("uuid in", Book.objects.filter(ref__in=[uuid.UUID(int=1), uuid.UUID(int=2)]).count(), 2)
    check("update with F", Book.objects.filter(price__lt=3).update(price=F("price") * 2), 3)
    check("Subquery of one row",
          list(Author.objects.annotate(top=Subquery(
              Book.objects.filter(author=OuterRef("pk")).order_by("-price").values("title")[:1]
          )).order_by("name").values_list("name", "top")),
          [("Ann", "T9"), ("Bob", "T7"), ("Cy", "T8")])
    check("Exists",
          list(Author.objects.filter(Exists(Book.objects.filter(author=OuterRef("pk"), price__gt=8))).order_by("name").values_list("name", flat=True)),
          ["Ann", "Cy"])
    check("window",
          list(Book.objects.annotate(r=Window(RowNumber(), partition_by=F("author"), order_by=F("price").desc())).order_by("title").values_list("title", "r")[:4]),
          [("T0", 4), ("T1", 3), ("T2", 3), ("T3", 3)])
    check("coalesce",
          list(Author.objects.annotate(b=Coalesce("born", Value(datetime.date(2000, 1, 1)))).order_by("name").values_list("b", flat=True)),
          [datetime.date(1970, 1, 2), datetime.date(2000, 1, 1), datetime.date(2000, 1, 1)])
    check("concat, lower, length",
          list(Author.objects.annotate(x=Concat("name", Value("-"), Lower("name")), n=Length("name")).order_by("name").values_list("x", "n")),
          [("Ann-ann", 3), ("Bob-bob", 3), ("Cy-cy", 2)])
    check("trunc day", Book.objects.annotate(d=TruncDay("published")).values("d").distinct().count(), 1)
    check("distinct on",
          list(Book.objects.order_by("author_id", "-price").distinct("author_id").values_list("title", flat=True)),
          ["T9", "T7", "T8"])
    check("case", list(Book.objects.annotate(c=Case(When(price__gt=5, then=Value("hi")), default=Value("lo"))).order_by("title").values_list("c", flat=True))[4:7],
          ["lo", "hi", "hi"])
    check("get_or_create", Author.objects.get_or_create(name="Dee")[1], True)
    check("get_or_create again", Author.objects.get_or_create(name="Dee")[1], False)

    try:
        with transaction.atomic():
            Author.objects.create(name="Eve")
            with transaction.atomic():
                Author.objects.create(name="Fay")
                raise ValueError
    except ValueError:
        pass
    check("savepoints", sorted(Author.objects.values_list("name", flat=True)), ["Ann", "Bob", "Cy", "Dee"])
    try:
        with transaction.atomic():
            Author.objects.create(name="Ann")
        sys.exit("a duplicate name was accepted")
    except IntegrityError:
        pass
    try:
        with transaction.atomic():
            Book.objects.create(title="neg", author=ann, price=-1)
        sys.exit("a negative price was accepted")
    except IntegrityError:
        pass
    check("iterator (named cursor)", sum(1 for _ in Book.objects.iterator(chunk_size=3)), 10)
    check("delete cascades", Author.objects.filter(name="Cy").delete(), (4, {"django_app.Book": 3, "django_app.Author": 1}))
    check("bulk_update", Book.objects.bulk_update(
        [Book(id=b.id, title=b.title + "x") for b in Book.objects.all()], ["title"]), 7)
    check("titles", sorted(Book.objects.values_list("title", flat=True)),
          ["T0x", "T1x", "T3x", "T4x", "T6x", "T7x", "T9x"])

    Shelf.objects.bulk_create([Shelf(labels=["a", "b"], counts=[1, None]), Shelf(labels=["b c"]),
                               Shelf(labels=[], counts=[3])])
    shelves = list(Shelf.objects.order_by("id"))
    check("arrays read back", [(s.labels, s.counts) for s in shelves],
          [(["a", "b"], [1, None]), (["b c"], None), ([], [3])])
    first = shelves[0].id

    def shelf_ids(qs):
        return [i - first for i in qs.order_by("id").values_list("id", flat=True)]
    check("array contains", shelf_ids(Shelf.objects.filter(labels__contains=["b"])), [0])
    check("array contained_by", shelf_ids(Shelf.objects.filter(labels__contained_by=["a", "b", "x"])), [0, 2])
    check("array overlap", shelf_ids(Shelf.objects.filter(labels__overlap=["a", "b c"])), [0, 1])
    check("array len", shelf_ids(Shelf.objects.filter(labels__len=1)), [1])
    check("array index", shelf_ids(Shelf.objects.filter(labels__0="b c")), [1])
    check("array exact", shelf_ids(Shelf.objects.filter(counts=[3])), [2])
    check("array slice", list(Shelf.objects.filter(id=first).values_list("labels__0_1", flat=True)), [["a"]])
    Shelf.objects.filter(id=first).update(labels=["z"] * 3)
    check("array update", Shelf.objects.get(id=first).labels, ["z", "z", "z"])
    try:
        with transaction.atomic():
            Shelf.objects.create(labels=["x" * 21])
        sys.exit("a label longer than varchar(20) was accepted")
    except django.db.utils.DataError:
        pass

    user = User.objects.create_user("joe", "joe@example.com", "pw")
    group = Group.objects.create(name="g1")
    user.groups.add(group)
    group.permissions.add(*Permission.objects.filter(codename__in=["add_group", "add_permission"]))
    check("permissions", sorted(User.objects.get(username="joe").get_all_permissions()),
          ["auth.add_group", "auth.add_permission"])

    # The schema editor reads constraints and indexes back (get_constraints: unnest(conkey) WITH
    # ORDINALITY in a correlated ARRAY(…), unnest(indkey, indoption) beside pg_index) before it
    # drops an index or a unique constraint.
    from django.db import connection
    from django.db import models as m

    def constraints(table):
        with connection.cursor() as c:
            got = connection.introspection.get_constraints(c, table)
        return {k: (v["columns"], v["unique"], v["index"], v["primary_key"], v["foreign_key"])
                for k, v in got.items()}

    fk = ("django_app_author", "id")
    book = {
        "django_app_book_pkey": (["id"], True, False, True, None),
        "django_app_book_author_id_4e69c439_fk_django_app_author_id": (["author_id"], False, False, False, fk),
        "django_app_book_author_id_4e69c439": (["author_id"], False, True, False, None),
        "price_nonneg": (["price"], False, False, False, None),
    }
    check("book constraints", constraints("django_app_book"), {
        **book,
        "django_app_book_title_c347a1de": (["title"], False, True, False, None),
        "django_app_book_title_c347a1de_like": (["title"], False, True, False, None),
    })
    like = {"django_app_author_pkey": (["id"], True, False, True, None),
            "django_app_author_name_edf88fc4_like": (["name"], False, True, False, None)}
    check("author constraints", constraints("django_app_author"),
          {**like, "django_app_author_name_key": (["name"], True, False, False, None)})

    with connection.schema_editor() as editor:
        title = m.CharField(max_length=300)
        title.set_attributes_from_name("title")
        title.model = Book
        editor.alter_field(Book, Book._meta.get_field("title"), title, strict=True)
        loose = m.CharField(max_length=150)
        loose.set_attributes_from_name("name")
        loose.model = Author
        editor.alter_field(Author, Author._meta.get_field("name"), loose, strict=True)
        unique = m.CharField(max_length=150, unique=True)
        unique.set_attributes_from_name("name")
        unique.model = Author
        editor.alter_field(Author, loose, unique, strict=True)
    check("book constraints after AlterField", constraints("django_app_book"), book)
    check("author constraints after AlterField", constraints("django_app_author"),
          {**like, "django_app_author_name_edf88fc4_uniq": (["name"], True, False, False, None)})
    Author.objects.create(name="N" * 150)
    try:
        with transaction.atomic():
            Author.objects.create(name="N" * 150)
        sys.exit("a duplicate name was accepted after AlterField")
    except IntegrityError:
        pass
    print("OK")


if __name__ == "__main__":
    main()
