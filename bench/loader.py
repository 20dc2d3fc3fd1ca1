"""Fill accounts_signup with realistic sign-ups in one COPY, the same for a seed.
The secondary indexes are dropped and rebuilt in the same transaction: far faster
than a million updates, and the unique one still checks every row."""

import random
import time
import unicodedata
from datetime import UTC, datetime, timedelta

FIRST_NAMES = """
    Ada Grace Alan Margaret Katherine Dorothy Barbara Frances Radia Hedy Linus Guido Ken
    Dennis Bjarne James Anders Yukihiro Larry Brendan Sophie Emma Olivia Noah Liam Lucas
    Mia Léa Chloé Zoë Noémie Hélène José María Lucía Sofía Martín Andrés Begoña Iñigo
    João Conceição Jürgen Lukas Jonas Anna Lena Søren Åsa Björn Øystein Ingrid Łukasz
    Małgorzata Wojciech Agnieszka Paweł Zofia Krzysztof Jiří Ioana Mihai Dmitri Olga
    Nikolai Tatiana Aleksandr Yevgenia Aarav Priya Ananya Rohan Vikram Lakshmi Wei Li
    Xiaoming Mei Jian Hiroshi Yuki Haruto Sakura Minh Linh Thanh Ji-woo Seo-yeon Fatima
    Omar Layla Youssef Amira Karim Nour Mehmet Ayşe Emre Elif Chidi Amara Kwame Abena
    Tendai Thandiwe Sipho Aroha Tane Siobhán Seán Niamh Eoin Mary-Jane Jean-Luc
    Anne-Marie Renée D'Arcy
"""
LAST_NAMES = """
    Lovelace Hopper Turing Hamilton Johnson Vaughan Liskov Allen Perlman Lamarr Torvalds
    van-Rossum Thompson Ritchie Stroustrup Gosling Hejlsberg Matsumoto Wall Eich Smith
    Jones Williams Brown Taylor Martin Bernard Dubois Lefèvre Moreau García Rodríguez
    Fernández López Martínez Muñoz Gonçalves Müller Schmidt Schneider Fischer Weiß Größ
    Nørgaard Ångström Lindqvist Kowalski Kowalska Wiśniewski Wójcik Dvořák Novák Popescu
    Ivanov Petrova Smirnov Sharma Patel Iyer Reddy Gupta Wang Zhang Chen Liu Nakamura
    Tanaka Suzuki Nguyễn Trần Kim Park Lee Haddad Khalil Mansour Yılmaz Öztürk Şahin
    Okafor Mensah Boateng Dlamini Ngata O'Brien O'Connor MacLeod Ní-Bhriain Smith-Jones
    de-la-Cruz van-der-Berg
"""  # noqa: RUF001 (the Turkish dotless i)
# Providers people sign up with, with how often, roughly.
DOMAINS = """
    gmail.com:30 outlook.com:8 hotmail.com:7 yahoo.com:7 icloud.com:6 proton.me:3
    gmx.de:3 web.de:2 orange.fr:2 libero.it:1 yandex.ru:1 qq.com:2 naver.com:1
    example.org:4 mail.example.com:3 university.example.edu:3 company.example:4
"""
# Letters NFKD does not take apart, and the apostrophe.
ASCII_FOLD = str.maketrans("łŁøØđ\u0131", "lLoOdi", "'") | {ord("ß"): "ss"}
# How people make an email's local part from their name, the first most often.
LOCAL_PARTS = """
    {first}.{last}{n} {first}.{last}{n} {first}.{last}{n} {initial}{last}{n}
    {last}.{first}_{n} {first}{n} {first}-{last}.{n}
"""
YEARS = 3
COLUMNS = ("name", "email", "signed_up_at")


def ascii_fold(text):
    text = unicodedata.normalize("NFKD", text.translate(ASCII_FOLD))
    return "".join(char for char in text if char.isascii())


def rows(count, seed=2026, now=None):
    """COUNT (name, email, signed_up_at text) tuples, oldest first."""
    rng = random.Random(seed)
    # (display, ASCII for the email); in a last name a hyphen stands for a space.
    firsts = [(first, ascii_fold(first).lower()) for first in FIRST_NAMES.split()]
    lasts = [
        (last.replace("-", " "), ascii_fold(last).replace("-", "").lower())
        for last in LAST_NAMES.split()
    ]
    domains = [
        domain
        for domain, weight in (entry.split(":") for entry in DOMAINS.split())
        for _ in range(int(weight))
    ]
    now = now or datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=365 * YEARS)
    span = (now - start).total_seconds()
    choice, random_ = rng.choice, rng.random
    local_parts = LOCAL_PARTS.split()
    for number in range(count):
        first, first_ascii = choice(firsts)
        last, last_ascii = choice(lasts)
        roll = random_()
        if roll < 0.04:
            name = f"{first} {choice(lasts)[0]} {last}"
        elif roll < 0.06:
            name = f"{first.upper()} {last.upper()}"
        elif roll < 0.08:
            name = f"{first.lower()} {last.lower()}"
        else:
            name = f"{first} {last}"
        local = local_parts[number % len(local_parts)].format(
            first=first_ascii, initial=first_ascii[0], last=last_ascii, n=number
        )
        if random_() >= 0.05:
            local = local.lower()
        email = f"{local}@{choice(domains)}"
        # More sign-ups lately, as a growing site has; the jitter keeps ties rare.
        fraction = (number + random_()) / count
        when = start + timedelta(seconds=span * fraction**0.6)
        yield name, email, when.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def secondary_indexes(conn, table="accounts_signup"):
    """(name, definition) of TABLE's indexes that no constraint owns."""
    return conn.execute(
        """
        SELECT i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = %s::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
        ORDER BY i.relname
        """,
        (table,),
    ).fetchall()


def load(conn, count, *, seed=2026, maintenance_work_mem="256MB"):
    """COPY COUNT sign-ups into accounts_signup on CONN, indexes rebuilt, then
    VACUUM ANALYZE (so CONN must be in autocommit mode); the timings."""
    timings = {"rows": count}
    started = time.monotonic()
    with conn.transaction():
        conn.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
        indexes = secondary_indexes(conn)
        for name, _definition in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        with conn.cursor().copy(
            f"COPY accounts_signup ({', '.join(COLUMNS)}) FROM STDIN"
        ) as copy:
            for row in rows(count, seed=seed):
                copy.write_row(row)
        timings["copy_s"] = time.monotonic() - started
        for _name, definition in indexes:
            conn.execute(definition)
        timings["index_s"] = time.monotonic() - started - timings["copy_s"]
    vacuum_started = time.monotonic()
    conn.execute("VACUUM (ANALYZE) accounts_signup")
    timings["vacuum_s"] = time.monotonic() - vacuum_started
    timings["total_s"] = time.monotonic() - started
    timings["indexes"] = [name for name, _ in indexes]
    return timings
