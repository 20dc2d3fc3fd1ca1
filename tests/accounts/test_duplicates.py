"""A second sign-up with a known address looks exactly like a new one."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client

from accounts.models import Signup
from tests.support.forms import signed


@pytest.mark.django_db
@pytest.mark.parametrize(
    "second_email",
    ["ada@example.com", "ADA@example.com", "Ada@Example.Com", "  ada@EXAMPLE.com "],
)
def test_sequential_duplicate_gets_the_same_response_and_keeps_the_row(
    client, second_email
):
    first = client.post("/", signed({"name": "Ada", "email": "ada@example.com"}))
    second = client.post("/", signed({"name": "Someone Else", "email": second_email}))

    assert (second.status_code, second["Location"]) == (
        first.status_code,
        first["Location"],
    )
    assert second.content == first.content
    signup = Signup.objects.get()
    assert (signup.name, signup.email) == ("Ada", "ada@example.com")


@pytest.mark.django_db
def test_the_database_itself_refuses_a_case_variant():
    Signup.objects.create(name="Ada", email="ada@example.com")

    with pytest.raises(IntegrityError), transaction.atomic():
        Signup.objects.create(name="Ada", email="ADA@EXAMPLE.COM")
    assert Signup.objects.count() == 1


def post_at_once(payloads):
    """POST each payload from its own thread (and so its own connection)."""
    barrier = threading.Barrier(len(payloads))
    results = [None] * len(payloads)
    backend_pids = [None] * len(payloads)

    def worker(index, payload):
        try:
            client = Client()
            client.get("/")  # opens this thread's connection before the race
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend_pids[index] = cursor.fetchone()[0]
            barrier.wait(timeout=10)
            response = client.post("/", signed(payload))
            results[index] = (response.status_code, response.get("Location"))
        except Exception as exc:  # reported by the assertion below
            results[index] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(i, payload))
        for i, payload in enumerate(payloads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, backend_pids


@pytest.mark.django_db(transaction=True)
def test_simultaneous_identical_signups_give_one_row_and_two_thank_yous():
    payload = {"name": "Ada", "email": "ada@example.com"}

    results, pids = post_at_once([payload, payload])

    assert results == [(302, "/thanks/"), (302, "/thanks/")]
    assert len(set(pids)) == 2, "each request must use its own connection"
    assert Signup.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_case_variants_give_one_row():
    emails = [
        "ada@example.com",
        "ADA@example.com",
        "Ada@EXAMPLE.COM",
        "aDa@example.com",
    ]

    results, pids = post_at_once(
        [{"name": f"Ada {i}", "email": email} for i, email in enumerate(emails)]
    )

    assert results == [(302, "/thanks/")] * len(emails)
    assert len(set(pids)) == len(emails)
    assert Signup.objects.count() == 1
    assert Signup.objects.get().email.lower() == "ada@example.com"
