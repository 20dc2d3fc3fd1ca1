"""
The stand-in images honour the parts of the official images' contracts that
the project relies on, and the Compose override selects them.

Every Docker object gets a unique per-run name and is removed by name after
the test; network traffic goes only to 127.0.0.1 and to containers made here.
"""

import json
import re
import time
from pathlib import Path

import psycopg
import pytest
import requests

from tests.compose import engine, images
from tests.support.stack import connect

pytestmark = [
    pytest.mark.engine,
    pytest.mark.standins,
    pytest.mark.usefixtures("docker_engine"),
]

POSTGRES = engine.STANDIN_IMAGES["postgres"]
NGINX = engine.STANDIN_IMAGES["nginx"]
PYTHON = engine.STANDIN_IMAGES["python"]


# --------------------------------------------------------------------------
# helpers


def docker(*args, **kwargs):
    return engine.docker(*args, **kwargs)


def published_port(container, port):
    """The 127.0.0.1 host port Docker published for CONTAINER's PORT/tcp."""
    out = docker("port", container, f"{port}/tcp").stdout.split()
    host, _, host_port = out[0].rpartition(":")
    assert host == "127.0.0.1", out
    return int(host_port)


def logs(container):
    result = docker("logs", container, check=False)
    return result.stdout + result.stderr


def running(container):
    state = docker("inspect", "--format", "{{.State.Running}}", container)
    return state.stdout.strip() == "true"


def inspect_image(image):
    return json.loads(docker("image", "inspect", image).stdout)[0]["Config"]


def wait_until(probe, container, what, timeout=90):
    """Return probe()'s first truthy value; fail with the logs if none comes."""
    deadline = time.monotonic() + timeout
    error = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # the probe's failure while not ready yet
            error = exc
        else:
            if value:
                return value
        if not running(container):
            break
        time.sleep(0.5)
    pytest.fail(
        f"{what} did not happen (last error: {error!r}); "
        f"container logs:\n{logs(container)}"
    )


def pg_connect(port, user, password, dbname):
    database = {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": port,
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": dbname,
    }
    return connect(database, connect_timeout=5, autocommit=True)


def start_postgres(names, label, *, env, volume, command=(), extra=()):
    name = names.container(label)
    args = ["run", "--detach", "--name", name, "--publish", "127.0.0.1::5432"]
    args += ["--volume", f"{volume}:/var/lib/postgresql", *extra]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    docker(*args, POSTGRES, *command)
    return name, published_port(name, 5432)


def wait_for_postgres(name, port, user, password, dbname):
    def probe():
        with pg_connect(port, user, password, dbname) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    wait_until(probe, name, f"a TCP connection as {user} to {dbname}")


def pid1(container):
    """(Name, real uid) of PID 1 in CONTAINER."""
    status = docker("exec", container, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return fields["Name"].strip(), fields["Uid"].split()[0]


def stop_and_exit_code(container):
    docker("stop", "--time", "30", container, timeout=60)
    code = docker("inspect", "--format", "{{.State.ExitCode}}", container)
    return int(code.stdout.strip())


# --------------------------------------------------------------------------
# postgres


def test_postgres_image_has_the_18_layout(docker_names):
    config = inspect_image(POSTGRES)
    assert "PGDATA=/var/lib/postgresql/18/docker" in config["Env"]
    assert list(config["Volumes"]) == ["/var/lib/postgresql"]
    assert config["StopSignal"] == "SIGINT"
    assert config["Cmd"] == ["postgres"]

    # A fresh named volume copies the image directory's ownership, so the
    # postgres user can create PGDATA in it; psql and pg_isready are on PATH.
    volume = docker_names.volume("pgfresh")
    out = docker(
        *("run", "--rm", "--name", docker_names.container("pgstat")),
        *("--volume", f"{volume}:/var/lib/postgresql", "--entrypoint", "sh"),
        POSTGRES,
        "-c",
        "stat -c '%U %a' /var/lib/postgresql"
        " && command -v psql && command -v pg_isready",
    ).stdout.split("\n")
    assert out[0] == "postgres 1777"
    assert out[1].endswith("/psql")
    assert out[2].endswith("/pg_isready")


def test_postgres_env_user_db_and_password_auth_over_tcp(docker_names):
    user, password, dbname = "signup_owner", "s3cret 'pass' $word", "signup_db"
    name, port = start_postgres(
        docker_names,
        "pgenv",
        env={
            "POSTGRES_USER": user,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": dbname,
        },
        volume=docker_names.volume("pgenv"),
        command=["-c", "max_connections=42"],  # "-..." goes to postgres
    )
    wait_for_postgres(name, port, user, password, dbname)

    with pg_connect(port, user, password, dbname) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), rolsuper,"
            " rolpassword LIKE 'SCRAM-SHA-256$%',"
            " current_setting('max_connections'),"
            " current_setting('server_encoding')"
            " FROM pg_authid WHERE rolname = current_user"
        ).fetchone()
    assert row == (user, dbname, True, True, "42", "UTF8")

    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        pg_connect(port, user, password + "x", dbname)
    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        pg_connect(port, "postgres", password, dbname)  # no such role either

    # The server runs as postgres (uid 999) and is PID 1.
    assert pid1(name) == ("postgres", "999")
    # As in the official image, init ran on a Unix-socket-only server: nothing
    # listened on TCP before the init finished.
    before_ready = logs(name).split("PostgreSQL init process complete")[0]
    assert "listening on Unix socket" in before_ready
    assert "listening on IPv4" not in before_ready
    # As in the official image, 127.0.0.1 inside the container is trusted
    # (initdb's default pg_hba lines), so in-container probes need no password.
    probe = docker(
        *("exec", name, "psql", "-h", "127.0.0.1", "-U", user, "-d", dbname),
        *("-w", "-tAc", "SELECT 1"),
        check=False,
    )
    assert probe.stdout.strip() == "1", probe.stderr
    ready = docker(
        "exec", name, "pg_isready", "-h", "127.0.0.1", "-U", user, "-d", dbname
    )
    assert "accepting connections" in ready.stdout

    # STOPSIGNAL SIGINT: fast shutdown, clean exit.
    assert stop_and_exit_code(name) == 0
    assert "received fast shutdown request" in logs(name)


def test_postgres_file_variants(docker_names, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    values = {"user": "file_user", "password": "file-pass-9", "db": "file_db"}
    for key, value in values.items():
        path = secrets / key
        path.write_text(value + "\n")  # a trailing newline, as editors leave
        path.chmod(0o400)  # root-only: read before privileges are dropped
    name, port = start_postgres(
        docker_names,
        "pgfile",
        env={
            "POSTGRES_USER_FILE": "/run/secrets/user",
            "POSTGRES_PASSWORD_FILE": "/run/secrets/password",
            "POSTGRES_DB_FILE": "/run/secrets/db",
        },
        volume=docker_names.volume("pgfile"),
        command=["postgres", "-c", "shared_buffers=32MB"],
        extra=["--volume", f"{secrets}:/run/secrets:ro"],
    )
    wait_for_postgres(name, port, "file_user", "file-pass-9", "file_db")
    with pg_connect(port, "file_user", "file-pass-9", "file_db") as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), current_setting('shared_buffers')"
        ).fetchone()
    assert row == ("file_user", "file_db", "32MB")
    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        pg_connect(port, "file_user", "file-pass-9\n", "file_db")


def test_postgres_initialises_only_an_empty_volume(docker_names):
    volume = docker_names.volume("pgkeep")
    env = {"POSTGRES_USER": "keeper", "POSTGRES_DB": "keep"}
    first, port = start_postgres(
        docker_names,
        "pgkeep1",
        env={**env, "POSTGRES_PASSWORD": "first-password"},
        volume=volume,
    )
    wait_for_postgres(first, port, "keeper", "first-password", "keep")
    with pg_connect(port, "keeper", "first-password", "keep") as conn:
        conn.execute("CREATE TABLE survivor (note text)")
        conn.execute("INSERT INTO survivor VALUES ('kept across restarts')")
    assert stop_and_exit_code(first) == 0
    docker("rm", first)

    # Same volume, new container, changed variables: no init, old password.
    second, port = start_postgres(
        docker_names,
        "pgkeep2",
        env={**env, "POSTGRES_PASSWORD": "second-password", "POSTGRES_DB": "other"},
        volume=volume,
    )
    wait_for_postgres(second, port, "keeper", "first-password", "keep")
    with pg_connect(port, "keeper", "first-password", "keep") as conn:
        assert conn.execute("SELECT note FROM survivor").fetchall() == [
            ("kept across restarts",)
        ]
        databases = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert "other" not in databases
    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        pg_connect(port, "keeper", "second-password", "keep")
    assert "Skipping initialization" in logs(second)
    assert "init process complete" not in logs(second)


@pytest.mark.parametrize(
    ("env", "mount_at", "message"),
    [
        pytest.param(
            {},
            "/var/lib/postgresql",
            "superuser password is not specified",
            id="no-password",
        ),
        pytest.param(
            {"POSTGRES_PASSWORD": "a", "POSTGRES_PASSWORD_FILE": "/etc/hostname"},
            "/var/lib/postgresql",
            "both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set",
            id="password-and-file",
        ),
        pytest.param(
            {"POSTGRES_PASSWORD": "a"},
            "/var/lib/postgresql/data",
            "in 18+",
            id="pre-18-mount-point",
        ),
    ],
)
def test_postgres_refuses_to_start(docker_names, env, mount_at, message):
    name = docker_names.container("pgrefuse")
    args = ["run", "--name", name]
    args += ["--volume", f"{docker_names.volume('pgrefuse')}:{mount_at}"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    result = docker(*args, POSTGRES, check=False, timeout=60)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


# --------------------------------------------------------------------------
# versions

# stand-in -> (command, what it prints, the testing page's way to name it)
VERSION_PROBES = {
    "postgres": (("postgres", "--version"), r"\(PostgreSQL\) (\d+)\.", "PostgreSQL {}"),
    "python": (("python", "--version"), r"^Python (\d+\.\d+)\.", "Python {}"),
    "nginx": (("nginx", "-v"), r"nginx/(\d+\.\d+)\.", "nginx {}"),
}


def test_the_standins_run_the_versions_the_testing_page_names(docker_names):
    documented = images.documented_versions()
    assert len(documented) == len(VERSION_PROBES)
    for official, version in documented.items():
        name = official.partition(":")[0]
        command, pattern, shown = VERSION_PROBES[name]
        result = docker(
            *("run", "--rm", "--name", docker_names.container(f"version-{name}")),
            *("--entrypoint", command[0], engine.STANDIN_IMAGES[name], *command[1:]),
        )
        found = re.search(pattern, result.stdout + result.stderr, flags=re.MULTILINE)
        assert found, (name, result.stdout + result.stderr)
        assert shown.format(found[1]) == version, official


# --------------------------------------------------------------------------
# nginx


def http_get(port, path="/", host="standin.test"):
    session = requests.Session()
    session.trust_env = False  # never a proxy for 127.0.0.1
    return session.get(
        f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=5
    )


def test_nginx_renders_templates_like_the_official_image(docker_names, tmp_path):
    templates = tmp_path / "templates"
    (templates / "extra").mkdir(parents=True)
    (templates / "default.conf.template").write_text(
        "server {\n"
        "    listen 8080;\n"
        "    resolver ${NGINX_LOCAL_RESOLVERS} valid=10s;\n"
        "    location / {\n"
        "        default_type text/plain;\n"
        '        return 200 "greeting=${SIGNUP_GREETING} host=$host'
        ' uri=$request_uri\\n";\n'
        "    }\n"
        "}\n"
    )
    (templates / "extra" / "note.conf.template").write_text("# ${SIGNUP_GREETING}\n")
    network = docker_names.network("ngnet")
    docker("network", "create", network)
    name = docker_names.container("nginx")
    docker(
        *("run", "--detach", "--name", name, "--network", network),
        *("--publish", "127.0.0.1::8080"),
        *("--env", "SIGNUP_GREETING=hello-from-env"),
        *("--env", "NGINX_ENTRYPOINT_LOCAL_RESOLVERS=1"),
        *("--volume", f"{templates}:/etc/nginx/templates:ro"),
        NGINX,
    )
    port = published_port(name, 8080)
    response = wait_until(
        lambda: http_get(port, "/probe"), name, "an HTTP answer from nginx"
    )
    assert response.status_code == 200
    assert response.text == "greeting=hello-from-env host=standin.test uri=/probe\n"

    rendered = docker("exec", name, "cat", "/etc/nginx/conf.d/default.conf").stdout
    assert "resolver 127.0.0.11 " in rendered  # Docker's DNS on a user network
    assert "$host" in rendered
    assert "${" not in rendered
    note = docker("exec", name, "cat", "/etc/nginx/conf.d/extra/note.conf").stdout
    assert note == "# hello-from-env\n"

    assert pid1(name)[0] == "nginx"
    uids = docker(
        "exec", name, "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status"
    ).stdout
    assert "\t101\t" in uids  # workers run as user nginx (uid 101)
    assert '"GET /probe HTTP/1.1" 200' in logs(name)  # access log on stdout
    assert stop_and_exit_code(name) == 0  # STOPSIGNAL SIGQUIT: graceful


def test_nginx_envsubst_settings_and_filter(docker_names, tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "tpl" / "site.tpl").write_text(
        "app=${APP_NAME} other=${OTHER_NAME} missing=${NOT_DEFINED} host=$host\n"
    )
    (tmp_path / "tpl" / "skipped.template").write_text("${APP_NAME}\n")
    result = docker(
        *("run", "--name", docker_names.container("ngfilter")),
        *("--volume", f"{tmp_path / 'tpl'}:/tpl:ro"),
        *("--volume", f"{tmp_path / 'out'}:/out"),
        *("--env", "NGINX_ENVSUBST_TEMPLATE_DIR=/tpl"),
        *("--env", "NGINX_ENVSUBST_TEMPLATE_SUFFIX=.tpl"),
        *("--env", "NGINX_ENVSUBST_OUTPUT_DIR=/out"),
        *("--env", "NGINX_ENVSUBST_FILTER=^APP_"),
        *("--env", "APP_NAME=signup", "--env", "OTHER_NAME=filtered-out"),
        NGINX,
        *("nginx", "-v"),  # the hooks run for any nginx command
        timeout=60,
    )
    assert "Running envsubst on /tpl/site.tpl to /out/site" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["site"]
    assert (tmp_path / "out" / "site").read_text() == (
        "app=signup other=${OTHER_NAME} missing=${NOT_DEFINED} host=$host\n"
    )


def test_nginx_image_config_like_the_official_image(docker_names):
    config = inspect_image(NGINX)
    assert config["Entrypoint"] == ["/docker-entrypoint.sh"]
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert config["StopSignal"] == "SIGQUIT"
    result = docker(
        *("run", "--rm", "--name", docker_names.container("ngconf")),
        *("--entrypoint", "sh", NGINX, "-c"),
        "command -v curl && command -v envsubst && nginx -T 2>&1",
    )
    out = result.stdout
    assert "/curl\n" in out  # the official Debian-based image ships curl
    assert "/envsubst\n" in out
    assert "user  nginx;" in out
    assert "worker_processes  auto;" in out
    assert "pid        /var/run/nginx.pid;" in out
    assert "include /etc/nginx/conf.d/*.conf;" in out
    assert "sites-enabled" not in out
    assert "# configuration file /etc/nginx/conf.d/default.conf:" in out


# --------------------------------------------------------------------------
# python and the Compose override

FAKE_COMPOSE = """\
services:
  db:
    image: postgres:18
    environment:
      POSTGRES_DB: signup
    volumes:
      - db-data:/var/lib/postgresql
  web:
    image: {web_image}
    build:
      context: .
      target: web
      args:
        OTHER_ARG: kept
  nginx:
    image: {nginx_image}
    build:
      context: .
      target: nginx
    ports:
      - "127.0.0.1:8080:80"
volumes:
  db-data:
"""

# Shaped like docker/Dockerfile: base images as build arguments.
PROJECT_STYLE_DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.13-slim
ARG NGINX_IMAGE=nginx:1.30

FROM ${PYTHON_IMAGE} AS web
RUN python -m venv /opt/venv \\
    && /opt/venv/bin/pip install --no-cache-dir sqlparse==0.6.1
CMD ["/opt/venv/bin/python", "-c", \
"import sqlparse, sys; print(sqlparse.__version__, sys.prefix)"]

FROM ${NGINX_IMAGE} AS nginx
RUN echo built-on-the-stand-in > /usr/share/nginx/html/marker.txt
"""

STANDIN_ARGS = {"PYTHON_IMAGE": PYTHON, "NGINX_IMAGE": NGINX}


def write_fake_project(tmp_path, docker_names):
    images = {"web_image": docker_names.image("web")}
    images["nginx_image"] = docker_names.image("nginx")
    (tmp_path / "compose.yaml").write_text(FAKE_COMPOSE.format(**images))
    (tmp_path / "Dockerfile").write_text(PROJECT_STYLE_DOCKERFILE)
    return images


def resolved_services(project):
    return json.loads(project("config", "--format", "json").stdout)["services"]


def test_override_swaps_only_the_base_images(compose_project, docker_names, tmp_path):
    images = write_fake_project(tmp_path, docker_names)
    plain = compose_project(tmp_path / "compose.yaml", label="plain", standins=False)
    swapped = compose_project(tmp_path / "compose.yaml", label="swapped")
    before, after = resolved_services(plain), resolved_services(swapped)

    assert before["db"]["image"] == "postgres:18"
    assert after["db"]["image"] == POSTGRES
    assert after["db"]["pull_policy"] == "never"
    assert after["web"]["build"]["args"] == {"OTHER_ARG": "kept", **STANDIN_ARGS}
    assert after["nginx"]["build"]["args"] == STANDIN_ARGS
    # built images keep their own names (never a stand-in's tag)
    assert after["web"]["image"] == images["web_image"]
    assert after["nginx"]["image"] == images["nginx_image"]
    # everything else is untouched
    for service in ("db", "nginx", "web"):
        for key in set(before[service]) | set(after[service]):
            if key not in ("image", "pull_policy", "build"):
                assert before[service].get(key) == after[service].get(key), key
        for key in set(before[service].get("build", {})) - {"args"}:
            assert before[service]["build"][key] == after[service]["build"][key]


def test_override_fits_the_project_compose_file(compose_project):
    """Every base image the project's stack needs resolves to a stand-in."""
    project = compose_project(label="project")
    services = resolved_services(project)
    assert set(services) >= {"db", "web", "nginx", "mailer"}
    built = {s["image"] for s in services.values() if "build" in s}
    for name, service in services.items():
        image = service.get("image", "")
        if "build" not in service and image in built:
            continue  # another service's build (the mailer runs web's image)
        if "build" not in service:
            assert image.startswith("signup-standin/"), (name, image)
            assert service.get("pull_policy") == "never", name
            continue
        assert not image.startswith("signup-standin/"), (name, image)
        build = service["build"]
        dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
        base_args = re.findall(
            r"^ARG\s+(\w+_IMAGE)\b", dockerfile.read_text(), flags=re.MULTILINE
        )
        assert base_args, f"{dockerfile} takes no *_IMAGE build arguments"
        for arg in base_args:
            assert build.get("args", {}).get(arg, "").startswith("signup-standin/"), (
                name,
                arg,
            )


def test_python_and_nginx_standins_as_build_bases(
    compose_project, docker_names, tmp_path
):
    images = write_fake_project(tmp_path, docker_names)
    project = compose_project(tmp_path / "compose.yaml", label="pybuild")

    build = project("build", "web", "nginx", timeout=600, check=False)
    assert build.returncode == 0, build.stdout + build.stderr

    result = docker(
        *("run", "--rm", "--name", docker_names.container("pyrun")),
        images["web_image"],
    )
    assert result.stdout.split() == ["0.6.1", "/opt/venv"]
    marker = docker(
        *("run", "--rm", "--name", docker_names.container("ngrun")),
        *("--entrypoint", "cat", images["nginx_image"]),
        "/usr/share/nginx/html/marker.txt",
    )
    assert marker.stdout == "built-on-the-stand-in\n"
    base = inspect_image(PYTHON)
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in base["Env"]
