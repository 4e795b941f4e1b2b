"""Structure-aware fuzzing of the config loader (issue 9, point 10a).

Every variable gets values built from what operators (and templating accidents) actually
produce: empty, whitespace, unicode including lone surrogates and NUL, huge, negative, zero,
out of range, Go durations with odd units, URLs assembled from odd parts, and password files of
every kind (missing, a directory, a FIFO, a device, a dangling symlink, not UTF-8, huge, empty).
The only exception allowed out is `ConfigError`, and no error text (nor a loaded Config's repr)
may contain a secret the loader was fed. The default run is hypothesis' bounded one; `just fuzz`
runs the `fuzz` profile with many more examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gopher_updater import config
from gopher_updater.secret import SecretFileError, read_secret_file

pytestmark = pytest.mark.fuzz

SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
#: Secrets carry markers no other strategy produces, so "the message contains the secret" is
#: a real leak and never a coincidence of short strings.
PASSWORD = st.text(SAFE, min_size=4, max_size=40).map(lambda s: "Pw" + "SeCrEt" + s)
URL_PASSWORD = st.text(SAFE, min_size=4, max_size=20).map(lambda s: "UrLSeCrEt" + s)
FILE_SECRET = "FiLeSeCrEt-0123456789"

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=80)  # surrogates, NUL, ...
NUMBERS = st.integers(min_value=-(10**30), max_value=10**30).map(str)
SPECIAL = st.sampled_from(
    ["", " ", "\t", "\n", " \r\n ", "\x00", "0", "-0", "-1", "1e9", "nan", "inf", "\ud800", "é"]
)
HUGE = st.sampled_from(["x" * 100_000, "9" * 5000, "a/" * 40_000, "1h" * 20_000])
DURATIONS = st.builds(
    lambda n, unit, sign: f"{sign}{n}{unit}",
    st.one_of(st.integers(0, 10**25).map(str), st.sampled_from(["1.", ".5", "0.1", ".", ""])),
    st.sampled_from(["ns", "us", "µs", "μs", "ms", "s", "m", "h", "d", "", "S", "sec", "mss"]),
    st.sampled_from(["", "-", "+"]),
)
HOSTS = st.one_of(
    st.sampled_from(
        ["localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]", "[::1", "::", "a..b", "-x", "x_y"]
    ),
    st.sampled_from(["999.1.1.1", "1.2.3", "a" * 64, ("a" * 63 + ".") * 5, "é.example", "xn--"]),
    st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,20}){0,3}", fullmatch=True),
    ANY_TEXT,
)
PORTS = st.one_of(
    st.none(), st.integers(-5, 70000).map(str), st.sampled_from(["", "abc", "0x50", "٣", "9" * 30])
)


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str | None]:
    """A URL from odd parts, and the password in its userinfo (if any)."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "ftp", "", "javascript", "file"]))
    password = draw(st.one_of(st.none(), URL_PASSWORD))
    userinfo = f"{draw(st.text(SAFE, max_size=8))}:{password}@" if password else ""
    port = draw(PORTS)
    path = draw(st.one_of(st.just(""), st.just("/"), st.text(max_size=30).map(lambda p: "/" + p)))
    tail = draw(st.sampled_from(["", "?q=1", "#f", "/../", "//x", "@evil"]))
    sep = draw(st.sampled_from(["://", ":/", ":", ""]))
    host = draw(HOSTS)
    url = f"{scheme}{sep}{userinfo}{host}{'' if port is None else ':' + port}{path}{tail}"
    if draw(st.booleans()) and len(url) < 3000:
        url += "/" + "p" * draw(st.integers(0, 3000))
    return url, password


@st.composite
def url_lists(draw: st.DrawFn) -> tuple[str, list[str]]:
    """RPC_URL: one URL or several, comma-separated, and the passwords in their userinfo."""
    items = draw(st.lists(urls(), min_size=1, max_size=draw(st.sampled_from([1, 3, 10]))))
    sep = draw(st.sampled_from([",", ", ", ",,", " , "]))
    return sep.join(u for u, _ in items), [p for _, p in items if p]


@pytest.fixture(scope="module")
def secret_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Files of every kind (module-scoped: hypothesis re-runs the test body many times)."""
    root = tmp_path_factory.mktemp("secret-files")
    good = root / "good"
    good.write_text(FILE_SECRET + "\n")
    latin1 = root / "latin1"
    latin1.write_bytes(FILE_SECRET.encode() + b"\xe9\xff")
    huge = root / "huge"
    huge.write_bytes(FILE_SECRET.encode() * 10_000)
    empty = root / "empty"
    empty.write_bytes(b"")
    blank = root / "blank"
    blank.write_bytes(b" \r\n\n")
    fifo = root / "fifo"
    os.mkfifo(fifo)
    dangling = root / "dangling"
    dangling.symlink_to(root / "nowhere")
    directory = root / "dir"
    directory.mkdir()
    yield [
        str(p)
        for p in (good, latin1, huge, empty, blank, fifo, dangling, directory, root / "missing")
    ] + ["/dev/null", "/dev/zero", "", " ", "rel/ative", "\x00", "\udcff", "\ud800", "x" * 300]


#: Secret variables whose value is itself the secret (URLs with a credential path, tokens).
SECRET_VALUES = (
    "FLUX_RECEIVER_URL",
    "FLUX_RECEIVER_TOKEN",
    "NOTIFY_WEBHOOK_URL",
    "NOTIFY_WEBHOOK_TOKEN",
    "NOTIFY_URLS",
)
PATH_SECRET = st.text(SAFE, min_size=4, max_size=20).map(lambda s: "PaThSeCrEt" + s)
SCHEMES = st.sampled_from(["http", "https", "json", "ftp", "slack", "nosuch", ""])


@st.composite
def secret_urls(draw: st.DrawFn) -> tuple[str, list[str]]:
    """One to three URLs (comma or space separated) whose paths, passwords and queries hold
    secrets; hosts are shown by design (a webhook's host, a receiver's origin)."""
    out, secrets = [], []
    for _ in range(draw(st.integers(1, 3))):
        path, password = draw(PATH_SECRET), draw(URL_PASSWORD)
        secrets += [path, password]
        userinfo = draw(st.sampled_from(["", f"u:{password}@"]))
        tail = draw(st.sampled_from(["", f"?token={password}", "#f", "/", ","]))
        host = draw(st.sampled_from(["127.0.0.1:9", "flux.example", "[::1]:80", "h:0", "é"]))
        out.append(f"{draw(SCHEMES)}://{userinfo}{host}/hook/{path}{tail}")
    return draw(st.sampled_from([",", " ", ", "])).join(out), secrets


def _secret_value(name: str) -> st.SearchStrategy[tuple[str, list[str]]]:
    if name.endswith("TOKEN"):
        return st.one_of(PASSWORD.map(lambda p: (p, [p])), SPECIAL.map(lambda v: (v, [])))
    return st.one_of(secret_urls(), SPECIAL.map(lambda v: (v, [])))


def _values(name: str) -> st.SearchStrategy[str]:
    generic = st.one_of(SPECIAL, ANY_TEXT, NUMBERS, HUGE)
    default = config.ENV_VARS.get(name)
    known = st.just(default) if default is not None else st.just("x")
    if name in ("POLL_INTERVAL", "REQUEST_TIMEOUT", "UPGRADE_STUCK_AFTER"):
        return st.one_of(DURATIONS, generic, known)
    if name == "RPC_QUORUM":
        return st.one_of(PORTS.map(lambda p: p or ""), generic, known)
    if name == "NOTIFY_EVENTS":
        return st.one_of(
            st.sampled_from(["all", "promoted,stuck", "PROMOTED stuck", "nope", ",,", "all,x"]),
            generic,
        )
    if name == "HTTP_HOST":
        return st.one_of(HOSTS, generic, known)
    if name == "HTTP_PORT":
        return st.one_of(PORTS.map(lambda p: p or ""), generic, known)
    if name in ("DRY_RUN", "OVERWRITE_TARGET", "PPROF_ENABLED"):
        return st.one_of(st.sampled_from(["true", "FALSE", "yes", "No", "1", "0", "on"]), generic)
    if name in ("LOG_LEVEL", "LOG_FORMAT"):
        return st.one_of(st.sampled_from(["debug", "INFO", "json", "console", "xml"]), generic)
    if name in ("REPO_PATH",):
        return st.one_of(st.from_regex(r"[a-z0-9/._-]{1,300}", fullmatch=True), generic, known)
    if name.endswith("PREFIX"):
        return st.one_of(st.sampled_from(["", "release-", "mainnet-", "v"]), generic)
    return st.one_of(generic, known)


@st.composite
def environments(draw: st.DrawFn, files: list[str]) -> tuple[dict[str, str], list[str]]:
    """An environment over every variable (each maybe unset) and the secrets it holds."""
    env: dict[str, str] = {}
    secrets: list[str] = [FILE_SECRET]
    for name in config.ENV_VARS:
        if draw(st.booleans()):
            continue  # unset
        if name == "DOCKERHUB_PASSWORD":
            value = draw(st.one_of(PASSWORD, SPECIAL))
            secrets.append(value) if "SeCrEt" in value else None
        elif name.endswith("_FILE"):
            value = draw(st.sampled_from(files))
        elif name in SECRET_VALUES:
            value, fed = draw(_secret_value(name))
            secrets += fed
        elif name == "RPC_URL":
            value, passwords = draw(st.one_of(url_lists(), _values(name).map(lambda v: (v, []))))
            secrets += passwords
        elif name == "REGISTRY_URL":
            value, password = draw(st.one_of(urls(), _values(name).map(lambda v: (v, None))))
            if password:
                secrets.append(password)
        else:
            value = draw(_values(name))
        env[name] = value
    return env, secrets


def _check(env: dict[str, str], secrets: list[str]) -> None:
    try:
        cfg = config.load(env)
    except config.ConfigError as exc:
        text = str(exc)
        assert exc.problems, "a ConfigError must name at least one problem"
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"secret in the error message: {text!r}"
    else:
        shown = repr(cfg) + str(cfg)
        assert not [s for s in secrets if s in shown]
        assert cfg.target_prefix and cfg.target_prefix != cfg.source_prefix


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_fuzz_every_variable_at_once(secret_files: list[str], data: st.DataObject) -> None:
    env, secrets = data.draw(environments(secret_files))
    _check(env, secrets)


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(config.ENV_VARS)))
def test_fuzz_one_variable_in_a_valid_environment(
    secret_files: list[str], data: st.DataObject, name: str
) -> None:
    """One bad variable among good ones: it alone must be named, nothing else may break."""
    env = {
        "DOCKERHUB_USER": "me",
        "DOCKERHUB_PASSWORD": "PwSeCrEtvalid-password",
        "REPO_PATH": "me/node",
        "TARGET_PREFIX": "mainnet-",
    }
    secrets = [env["DOCKERHUB_PASSWORD"], FILE_SECRET]
    if name == "DOCKERHUB_PASSWORD_FILE":
        del env["DOCKERHUB_PASSWORD"]
        env[name] = data.draw(st.sampled_from(secret_files))
    elif name.endswith("_FILE"):
        env[name] = data.draw(st.sampled_from(secret_files))
    elif name in SECRET_VALUES:
        env[name], fed = data.draw(_secret_value(name))
        secrets += fed
    elif name == "RPC_URL":
        env[name], passwords = data.draw(url_lists())
        secrets += passwords
    elif name == "REGISTRY_URL":
        env[name], password = data.draw(urls())
        secrets += [password] if password else []
    elif name == "DOCKERHUB_PASSWORD":
        env[name] = data.draw(st.one_of(PASSWORD, SPECIAL, ANY_TEXT.map(lambda t: "PwSeCrEt" + t)))
        secrets = [env[name], FILE_SECRET] if "SeCrEt" in env[name] else [FILE_SECRET]
    else:
        env[name] = data.draw(_values(name))
    try:
        config.load(env)
    except config.ConfigError as exc:
        named = {p.split(":", 1)[0] for p in exc.problems}
        # A `_FILE` may be blamed under its variable's name (not both, or a bad value read).
        alone = {name, name.removesuffix("_FILE"), "DOCKERHUB_PASSWORD", "TARGET_PREFIX"}
        assert named <= alone, exc.problems
    _check(env, secrets)


@FUZZ
@given(content=st.binary(max_size=300), exact=st.booleans())
def test_fuzz_secret_file_content(
    tmp_path_factory: pytest.TempPathFactory, content: bytes, exact: bool
) -> None:
    """Any bytes: a Secret with the (maybe stripped) text, or an error about the file only."""
    path = tmp_path_factory.mktemp("content", numbered=True) / "secret"
    path.write_bytes(content)
    try:
        secret = read_secret_file(str(path), exact=exact)
    except SecretFileError as exc:
        # The message is the path and a fixed reason: nothing of the content can be in it.
        assert str(exc) == f"{str(path)!r}: {exc.reason}"
        assert exc.reason in ("is not UTF-8 text", "is empty", "holds only whitespace")
    else:
        text = content.decode()
        assert secret.reveal() == (text if exact else text.rstrip("\r\n"))
        assert secret.reveal().strip()
