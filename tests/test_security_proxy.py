"""Reverse proxies, the login cookie and cross-site forms, against real server processes behind
a real nginx (the README's snippet, and nginx's usual `proxy_pass` lines)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from lollms_server.testing import free_port

SERVER = [sys.executable, "-m", "lollms_server.cli"]
README = Path(__file__).resolve().parents[1] / "README.md"
NGINX_DEFAULT_LOCATION = """
location / {
    proxy_pass http://127.0.0.1:%(port)d;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
}
"""  # nginx's plain proxy_pass (Host: 127.0.0.1:<port>) with its usual X-Forwarded-For line
NGINX_BARE_LOCATION = "location / { proxy_pass http://127.0.0.1:%(port)d; }"  # no header at all


@dataclass
class Server:
    """A running lollms-server: its port, an admin and a user key, its log."""

    port: int
    admin_key: str
    user_key: str
    log_path: Path


@dataclass
class Reply:
    """What came back: status, headers (all values of each), body."""

    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str:
        """The first value of header `name` ('' when absent)."""
        return (self.headers.get(name.lower()) or [""])[0]


def send(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    tls: bool = False,
) -> Reply:
    """One request on a fresh connection, no redirects followed, headers sent as given."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=30, context=context
        )
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        found: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            found.setdefault(name.lower(), []).append(value)
        return Reply(response.status, found, response.read())
    finally:
        connection.close()


def _create_key(env: dict[str, str], role: str) -> str:
    done = subprocess.run(
        [*SERVER, "keys", "create", "--name", f"proxy-{role}", "--role", role],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on {port} within 60 s")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Two servers on loopback: one trusting 127.0.0.1 as its proxy, one trusting nobody."""
    started: list[subprocess.Popen[bytes]] = []
    found: dict[str, Server] = {}
    try:
        for name, proxies in (("trusted", '["127.0.0.1"]'), ("untrusted", "[]")):
            data = tmp_path_factory.mktemp(f"proxy-{name}")
            port = free_port()
            (data / "lollms.toml").write_text(
                f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
                f"[security]\ntrusted_proxies = {proxies}\n\n"
                '[bindings.echo]\ntype = "echo"\n\n[defaults]\nttt = "echo"\n',
                encoding="utf-8",
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
            env["LOLLMS_DATA_DIR"] = str(data)
            admin, user = _create_key(env, "admin"), _create_key(env, "user")
            log_path = data / "server.log"
            with log_path.open("wb") as log:
                started.append(subprocess.Popen(SERVER, env=env, stdout=log, stderr=log))
            found[name] = Server(port, admin, user, log_path)
        for (name, server), process in zip(found.items(), started, strict=True):
            _wait_for_port(server.port, process, f"the {name} server")
        yield found
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(timeout=30)


def readme_snippet(language: str, port: int) -> str:
    """The README's first ```<language> block, its upstream pointed at `port`."""
    pattern = rf"```{language}\n(.*?)```"
    blocks = re.findall(pattern, README.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, f"README.md has no ```{language} snippet"
    assert "127.0.0.1:9601" in blocks[0]
    return str(blocks[0]).replace("127.0.0.1:9601", f"127.0.0.1:{port}")


def readme_nginx_location(port: int) -> str:
    """The README's nginx `location` block, pointed at `port`."""
    return readme_snippet("nginx", port)


def _installed(name: str) -> str:
    binary = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (apt-get install {name})")
        pytest.skip(f"{name} is not installed")
    return binary


@pytest.fixture(scope="module")
def nginx(
    servers: dict[str, Server], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, int]]:
    """A real nginx in front of the servers; the name of each front -> its port."""
    binary = _installed("nginx")
    folder = tmp_path_factory.mktemp("nginx")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    trusted, untrusted = servers["trusted"].port, servers["untrusted"].port
    fronts = {
        "readme": (f"listen 127.0.0.1:{free_port()};", readme_nginx_location(trusted)),
        "readme-tls": (
            f"listen 127.0.0.1:{free_port()} ssl; ssl_certificate {folder}/cert.pem; "
            f"ssl_certificate_key {folder}/key.pem;",
            readme_nginx_location(trusted),
        ),
        "readme-untrusted": (f"listen 127.0.0.1:{free_port()};", readme_nginx_location(untrusted)),
        "default-untrusted": (
            f"listen 127.0.0.1:{free_port()};",
            NGINX_DEFAULT_LOCATION % {"port": untrusted},
        ),
        "bare-untrusted": (
            f"listen 127.0.0.1:{free_port()};",
            NGINX_BARE_LOCATION % {"port": untrusted},
        ),
    }
    temp = " ".join(
        f"{kind}_temp_path {folder}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    sites = "\n".join(f"server {{ {listen}\n{location} }}" for listen, location in fronts.values())
    (folder / "nginx.conf").write_text(
        f"daemon off; master_process off; pid {folder}/nginx.pid; error_log {folder}/error.log;\n"
        f"events {{}}\nhttp {{ access_log off; {temp}\n{sites}\n}}\n",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(folder / "nginx.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ports = {
        name: int(listen.split(":")[1].split()[0].rstrip(";"))
        for name, (listen, _) in fronts.items()
    }
    try:
        for port in ports.values():
            _wait_for_port(port, process, "nginx")
        yield ports
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def caddy(servers: dict[str, Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Caddy with the README's Caddyfile (served on plain http at a free port) in front
    of the server that trusts 127.0.0.1; its port."""
    binary = _installed("caddy")
    folder = tmp_path_factory.mktemp("caddy")
    port = free_port()
    site = readme_snippet("caddy", servers["trusted"].port)
    site = re.sub(r"^\S+ \{", f"http://127.0.0.1:{port} {{", site.strip(), count=1)
    (folder / "Caddyfile").write_text("{\n\tadmin off\n}\n" + site + "\n", encoding="utf-8")
    env = {**os.environ, "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data")}
    env["XDG_CONFIG_HOME"] = str(folder / "config")
    process = subprocess.Popen(
        [binary, "run", "--config", str(folder / "Caddyfile"), "--adapter", "caddyfile"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_port(port, process, "caddy")
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_the_readme_caddyfile_works_with_trusted_proxies(
    servers: dict[str, Server], caddy: int
) -> None:
    """Behind Caddy: no key is a 401 (also with a forged Host), a key works, the login form
    works from the proxied origin and refuses another site's."""
    trusted = servers["trusted"]
    path = "/api/v1/list_models"
    assert send(caddy, "GET", path).status == 401
    assert send(caddy, "GET", path, {"Host": f"127.0.0.1:{trusted.port}"}).status in (401, 404)
    key = {"Authorization": f"Bearer {trusted.user_key}"}
    assert send(caddy, "GET", path, key).status == 200
    same = {"Origin": f"http://127.0.0.1:{caddy}", "Sec-Fetch-Site": "same-origin"}
    assert _login(caddy, trusted.user_key, same).status == 303
    assert _login(caddy, trusted.user_key, {"Origin": "http://evil.example"}).status == 403


def test_a_proxied_request_is_never_local(
    servers: dict[str, Server], nginx: dict[str, int]
) -> None:
    """Through nginx (trusted or not, default or README config) no key means 401; a loopback
    request that carries any forwarding header is not local either."""
    untrusted = servers["untrusted"].port
    path = "/api/v1/list_models"
    assert send(untrusted, "GET", path).status == 200  # this machine itself: local access
    for front in ("bare-untrusted", "default-untrusted", "readme-untrusted", "readme"):
        assert send(nginx[front], "GET", path).status == 401, front
        # a client that names the backend as Host (passed on by `Host $http_host`)
        forged = {"Host": f"127.0.0.1:{untrusted}"}
        assert send(nginx[front], "GET", path, forged).status == 401, front
        user = {"Authorization": f"Bearer {servers['untrusted'].user_key}"}
        if front == "readme":
            user = {"Authorization": f"Bearer {servers['trusted'].user_key}"}
        assert send(nginx[front], "GET", path, user).status == 200, front
    for server in servers.values():
        for header, value in (
            ("X-Forwarded-For", "203.0.113.9"),
            ("Forwarded", "for=203.0.113.9"),
            ("X-Real-IP", "203.0.113.9"),
            ("Via", "1.1 proxy.example"),
            ("X-Forwarded-Host", "lollms.example"),
            ("X-Forwarded-Proto", "https"),
        ):
            assert send(server.port, "GET", path, {header: value}).status == 401, header
        # HTTP/1.0, as nginx's bare proxy_pass speaks it, is not local either
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
            assert sock.recv(4096).split(b"\r\n")[0].split()[1] == b"401"


def _login(
    port: int, key: str, headers: dict[str, str], next_: str = "/", *, tls: bool = False
) -> Reply:
    body = urlencode({"key": key, "next": next_}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    return send(port, "POST", "/login", form, body, tls=tls)


def _cookie_flags(reply: Reply) -> set[str]:
    cookie = next(c for c in reply.headers.get("set-cookie", []) if c.startswith("lollms_key="))
    return {part.strip().lower() for part in cookie.split(";")[1:]}


def test_login_cookie_is_secure_behind_a_trusted_https_proxy(
    servers: dict[str, Server], nginx: dict[str, int]
) -> None:
    key = servers["trusted"].user_key
    port = nginx["readme-tls"]
    over_tls = _login(port, key, {"Origin": f"https://127.0.0.1:{port}"}, tls=True)
    assert over_tls.status == 303, over_tls.body
    assert "secure" in _cookie_flags(over_tls)
    assert {"httponly", "samesite=strict"} <= _cookie_flags(over_tls)
    plain = _login(nginx["readme"], key, {"Origin": f"http://127.0.0.1:{nginx['readme']}"})
    assert plain.status == 303 and "secure" not in _cookie_flags(plain)
    # an untrusted peer saying https is not believed (the browser would drop the cookie)
    untrusted = servers["untrusted"]
    direct = _login(untrusted.port, untrusted.user_key, {"X-Forwarded-Proto": "https"})
    assert direct.status == 303 and "secure" not in _cookie_flags(direct)


def test_login_and_logout_refuse_cross_site_posts(
    servers: dict[str, Server], nginx: dict[str, int]
) -> None:
    port, key = nginx["readme"], servers["trusted"].user_key
    same = {"Origin": f"http://127.0.0.1:{port}"}
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", **same},
        {"Sec-Fetch-Site": "same-site", **same},
        {"Referer": "http://evil.example/page"},
    ):
        refused = _login(port, key, headers)
        assert refused.status == 403, headers
        assert not refused.headers.get("set-cookie"), headers
        logout = send(port, "POST", "/logout", {"Content-Length": "0", **headers})
        assert logout.status == 403, headers
    assert _login(port, key, {"Sec-Fetch-Site": "same-origin", **same}).status == 303
    assert _login(port, key, {}).status == 303  # not a browser (no Origin, no Fetch Metadata)
    assert send(port, "POST", "/logout", {"Content-Length": "0", **same}).status == 303


def test_cookie_state_changes_check_origin_without_fetch_metadata(
    servers: dict[str, Server], nginx: dict[str, int]
) -> None:
    """A browser without Sec-Fetch-Site still sends Origin: a foreign one is refused."""
    port = nginx["readme"]
    cookie = {"Cookie": f"lollms_key={servers['trusted'].user_key}"}
    body = b'{"input_data": [{"type": "text", "data": "hi"}]}'
    json_headers = {"Content-Type": "application/json", **cookie}
    foreign = send(
        port, "POST", "/api/v1/generate", {"Origin": "http://evil.example", **json_headers}, body
    )
    assert foreign.status == 403
    same = {"Origin": f"http://127.0.0.1:{port}", **json_headers}
    assert send(port, "POST", "/api/v1/generate", same, body).status == 200


@pytest.mark.parametrize(
    "target",
    ["/\t/evil.example", "/%09/evil.example", "/\\evil.example", "//evil.example",
     "/\r\nSet-Cookie: injected=1", "/\n/evil.example", "/\x00", "/a\x0b", "/\x7f",
     "https://evil.example/", "/ /evil.example", "/é"],
)  # fmt: skip
def test_next_after_login_stays_on_this_site(
    servers: dict[str, Server], nginx: dict[str, int], target: str
) -> None:
    port = nginx["readme"]
    reply = _login(port, servers["trusted"].user_key, {}, target)
    assert reply.status in (303, 400), reply.body
    if reply.status == 303:
        assert reply.header("Location") == "/"
    assert not any(c.startswith("injected") for c in reply.headers.get("set-cookie", []))


def test_next_after_login_keeps_a_local_path(
    servers: dict[str, Server], nginx: dict[str, int]
) -> None:
    reply = _login(nginx["readme"], servers["trusted"].user_key, {}, "/models?type=ttt")
    assert reply.status == 303 and reply.header("Location") == "/models?type=ttt"
