"""The link registry and connection strings: schemes, refusals that name the known ones,
duplicates, lazy imports of the drivers and their foreign libraries, and passwords masked for
display."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import drivers
from drivers import (
    LINKS,
    ConnectionTarget,
    Link,
    LinkConfigError,
    LinkRegistry,
    TcpDriver,
    UnknownSchemeError,
    mask_connection_string,
    open_link,
    parse_connection_string,
)
from vareon_runtime.errors import DuplicateKeyError, UnknownKeyError
from vareon_runtime.keyed import Keyed

ROOT = Path(__file__).resolve().parents[2]


def test_the_runtime_knows_its_schemes() -> None:
    assert LINKS.schemes() == ["loop", "mqtt", "rfc2217", "serial", "socket", "tcp"]


def test_an_unknown_scheme_is_a_422_naming_the_known_ones() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        parse_connection_string("foo://x")
    error = info.value
    assert error.status == 422
    assert str(error) == (
        "no device driver for the scheme 'foo'; known: loop, mqtt, rfc2217, serial, socket, tcp"
        " (or a device path such as /dev/ttyUSB0)"
    )
    # The keyed registry's uniform details, and the scheme as before.
    assert isinstance(error, UnknownKeyError)
    assert error.details == {"field": "connectionString", "key": "foo", "known": LINKS.schemes(), "scheme": "foo"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "a connection string cannot be empty"),
        ("ttyUSB0", "'ttyUSB0' is neither a device path"),
        ("/dev/ttyUSB0?baudrate=", "baudrate must be a positive integer, not ''"),
        ("/dev/ttyUSB0?rtscts", "rtscts must be 1 or 0"),
    ],
)
def test_malformed_strings_are_refused(raw: str, message: str) -> None:
    with pytest.raises(LinkConfigError, match=message):
        parse_connection_string(raw)


def test_the_registry_refuses_a_scheme_twice_and_bad_names() -> None:
    registry = LinkRegistry()
    assert isinstance(registry, Keyed)
    registry.register("tcp", lambda: LINKS.driver("tcp"))
    with pytest.raises(DuplicateKeyError, match="a link driver is already registered as 'tcp'"):
        registry.register("tcp", lambda: LINKS.driver("tcp"))
    for bad in ("TCP", "my scheme", "a/b"):
        with pytest.raises(ValueError, match="a link scheme is a lower-case word"):
            registry.register(bad, lambda: LINKS.driver("tcp"))
    with pytest.raises(ValueError, match="a link driver key is a non-empty string, not ''"):
        registry.register("", lambda: LINKS.driver("tcp"))
    # The runtime's own schemes are taken, loaded or still a path.
    with pytest.raises(DuplicateKeyError, match="a link driver is already registered as 'mqtt'"):
        LINKS.register("mqtt", lambda: LINKS.driver("tcp"))
    assert registry.schemes() == ["tcp"]


def test_a_driver_registered_by_its_path_is_made_on_first_use() -> None:
    registry = LinkRegistry()
    registry.register("raw", "drivers.tcp:TcpDriver")
    assert registry.schemes() == ["raw"]
    driver = registry.driver("raw")
    assert isinstance(driver, TcpDriver)
    assert registry.driver("raw") is driver
    with pytest.raises(UnknownSchemeError, match="no device driver for the scheme 'tcp'; known: raw"):
        registry.driver("tcp")


class _Pipe:
    """A link to nowhere: what is sent comes back (a driver written against the Protocol)."""

    def __init__(self) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[bytes](10)

    @property
    def description(self) -> str:
        return "a pipe"

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.receive_channel.receive()

    async def send(self, data: bytes) -> None:
        await self.send_channel.send(data)

    async def aclose(self) -> None:
        await self.send_channel.aclose()


class _PipeDriver:
    def __init__(self) -> None:
        self.opened: list[ConnectionTarget] = []

    def check(self, target: ConnectionTarget) -> None:
        if target.options:
            raise LinkConfigError("a pipe takes no options")

    async def open(self, target: ConnectionTarget) -> _Pipe:
        self.opened.append(target)
        return _Pipe()


async def test_a_registered_driver_is_made_once_on_first_use_and_opens_links() -> None:
    made: list[_PipeDriver] = []

    def factory() -> _PipeDriver:
        made.append(_PipeDriver())
        return made[-1]

    registry = LinkRegistry()
    registry.register("pipe", factory)
    assert made == []
    with pytest.raises(LinkConfigError, match="a pipe takes no options"):
        parse_connection_string("pipe://x?a=1", registry=registry)
    with trio.fail_after(5):
        link = await open_link("pipe://somewhere/else", registry=registry)
        assert isinstance(link, Link)
        await link.send(b"ping")
        assert await link.receive() == b"ping"
        await link.aclose()
    assert len(made) == 1
    assert made[0].opened[0].location == "somewhere" and made[0].opened[0].path == "else"
    with pytest.raises(UnknownSchemeError, match="known: pipe"):
        parse_connection_string("tcp://h:1", registry=registry)


async def test_every_driver_returns_a_link() -> None:
    with trio.fail_after(5):
        link = await open_link("loop://")
        try:
            assert isinstance(link, Link)
        finally:
            await link.aclose()


WATCHED = ("drivers.serial", "drivers.tcp", "drivers.mqtt", "drivers.process", "serial", "paho")
"""The driver modules and foreign libraries whose import the lazy registry defers."""


def _modules_after(code: str) -> list[list[str]]:
    """Run ``code`` in a fresh interpreter; each ``loaded()`` in it reports which of
    :data:`WATCHED` were imported so far."""
    prelude = f"import sys\ndef loaded():\n    print(sorted(m for m in sys.modules if m in {WATCHED!r}))\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [ast.literal_eval(line) for line in result.stdout.splitlines()]


def test_drivers_and_their_libraries_are_imported_only_when_a_link_needs_them() -> None:
    assert _modules_after(
        "import drivers\n"
        "loaded()\n"
        "from drivers import LINKS, parse_connection_string\n"
        "loaded()\n"
        "parse_connection_string('tcp://h:1')\n"
        "loaded()\n"
        "parse_connection_string('/dev/ttyUSB0?baudrate=9600')\n"
        "parse_connection_string('mqtt://u:p@broker/t')\n"
        "loaded()\n"
    ) == [
        [],  # the face imports nothing by itself
        [],  # the registry knows every scheme without importing a driver
        ["drivers.tcp"],
        ["drivers.mqtt", "drivers.serial", "drivers.tcp"],  # checking a string needs no foreign library
    ]


def test_pyserial_is_imported_when_a_serial_link_opens() -> None:
    assert _modules_after(
        "import trio\n"
        "from drivers import open_link\n"
        "async def main():\n"
        "    link = await open_link('loop://')\n"
        "    await link.aclose()\n"
        "trio.run(main)\n"
        "loaded()\n"
    ) == [["drivers.serial", "serial"]]


def test_link_imports_no_driver() -> None:
    # The drivers import drivers.link (for ConnectionTarget); the reverse would be a cycle.
    tree = ast.parse((ROOT / "drivers" / "link.py").read_text())
    imported = [
        alias.name if isinstance(node, ast.Import) else f"{node.module}"
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert [name for name in imported if name.split(".")[-1] in ("serial", "tcp", "mqtt")] == []


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("mqtt://printer:s3cret@broker:1883/p1/state", "mqtt://printer:***@broker:1883/p1/state"),
        ("mqtt://printer:s3cr%40t@broker/p1?qos=1", "mqtt://printer:***@broker/p1?qos=1"),
        ("mqtt://printer:p@ss@broker/t/#", "mqtt://printer:***@broker/t/#"),
        ("mqtt://printer:pa/ss@broker/t", "mqtt://printer:***@broker/t"),
        ("rfc2217://admin:pw@10.0.0.2:2217", "rfc2217://admin:***@10.0.0.2:2217"),
        ("mqtt://printer@broker/t", "mqtt://printer@broker/t"),
        ("mqtt://broker/t?client_id=a@b:c", "mqtt://broker/t?client_id=a@b:c"),
        ("tcp://192.168.1.50:5000", "tcp://192.168.1.50:5000"),
        ("/dev/ttyUSB0?baudrate=115200", "/dev/ttyUSB0?baudrate=115200"),
        ("loop://", "loop://"),
        ("not a url", "not a url"),
    ],
)
def test_mask_connection_string_hides_only_the_password(raw: str, shown: str) -> None:
    assert mask_connection_string(raw) == shown


def test_a_target_never_shows_its_password() -> None:
    target = parse_connection_string("mqtt://printer:s3cret@broker/t")
    assert "s3cret" not in repr(target)
    assert "printer:***@broker" in repr(target)


def test_the_package_face_lists_every_public_name() -> None:
    # The imports for type checkers and the lazy face's table name the same things.
    tree = ast.parse((ROOT / "drivers" / "__init__.py").read_text())
    (checking,) = [node for node in tree.body if isinstance(node, ast.If)]
    checked = {
        (node.module, alias.name)
        for node in ast.walk(checking)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("drivers.")
        for alias in node.names
    }
    assert checked == {(module, name) for module, names in drivers._EXPORTS.items() for name in names}
    eager = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module in ("drivers.errors", "drivers.link")
        for alias in node.names
    }
    assert eager == {*drivers.errors.__all__, *drivers.link.__all__}
    public = {
        name
        for name, value in vars(drivers).items()
        if not name.startswith("_") and not isinstance(value, type(drivers)) and name != "annotations"
    }
    assert public <= set(drivers.__all__), f"drivers.__all__ misses {sorted(public - set(drivers.__all__))}"
    assert [name for name in drivers.__all__ if not hasattr(drivers, name)] == []
