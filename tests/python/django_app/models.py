"""Models of the Django test (django_orm.py): a foreign key, JSON, decimals, a check constraint,
array columns."""

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100, unique=True)
    born = models.DateField(null=True)
    meta = models.JSONField(default=dict)


class Book(models.Model):
    title = models.CharField(max_length=200, db_index=True)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    price = models.DecimalField(max_digits=8, decimal_places=2)
    published = models.DateTimeField(auto_now_add=True)
    tags = models.JSONField(default=list)
    ref = models.UUIDField(null=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gte=0), name="price_nonneg")
        ]


class Shelf(models.Model):
    """Array columns (django.contrib.postgres's ArrayField)."""

    labels = ArrayField(models.CharField(max_length=20), default=list)
    counts = ArrayField(models.IntegerField(null=True), null=True)
