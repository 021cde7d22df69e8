"""The configuration reference, generated from the code that reads the configuration.

Three sources, so the README's table cannot drift from them (a test compares):
the server's `Settings` fields (with their docstrings), the `mrmctl` options
that read an environment variable (from the click command tree), and the
annotated `mrm.toml` example in `mrm.deploy.config`'s docstring (which a test
also parses with the real loader).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from typing import Any

import click

# Variables `mrmctl` reads without a command-line option.
CLIENT_ONLY_ENV = {
    "MRM_LEDGER_VKEY": (
        "",
        "The ledger's verifier key to pin (name+hash+key); otherwise mrmctl trusts the "
        "first key it sees for an origin (TOFU) and remembers it.",
    ),
    "MRM_CONFIG_DIR": (
        "$XDG_CONFIG_HOME/mrm",
        "Where mrmctl keeps the checkpoints and keys it trusts.",
    ),
    "MRM_DEBUG": ("", "Set to 1 to print a traceback along with an error (mrm and mrmctl)."),
    "MRM_TOKEN": (
        "",
        "A bearer token for the services (never logged). Ignored when --token-file is given.",
    ),
    "MRM_TOKEN_FILE": ("", "A file holding the bearer token (0600); read after MRM_TOKEN."),
    "MRM_OIDC_TOKEN": (
        "",
        "An OIDC id-token (a CI job's) to present instead of a bearer token; the "
        "registry verifies it against its configured issuers.",
    ),
    "MRM_OIDC_TOKEN_FILE": ("", "A file holding the OIDC id-token (e.g. GitLab's)."),
    "MRM_OIDC_AUDIENCE": (
        "mrm",
        "The audience mrmctl asks GitHub Actions for when it requests the job's id-token "
        "(ACTIONS_ID_TOKEN_REQUEST_URL); must match the server's [[oidc]] audience.",
    ),
    "MRM_AUTH": (
        "",
        "Set to `none` to send no credentials at all (for a server started with --insecure).",
    ),
}
_TOML_LINE = re.compile(r"^(?P<key>[A-Za-z_]+)\s*=\s*(?P<value>.+?)\s*(#\s*(?P<note>.*))?$")


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def server_rows() -> Iterator[tuple[str, str, str]]:
    from mrm.core.settings import Settings

    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else field.default
        yield f"MRM_{name.upper()}", str(default), field.description or ""


def _client_options(command: click.Command) -> Iterator[click.Option]:
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar:
            yield param
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _client_options(sub)


def client_rows() -> Iterator[tuple[str, str, str]]:
    from mrm.cli.main import mrmctl

    seen: set[str] = set()
    for option in _client_options(mrmctl):
        names = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or ())
        for var in names:
            if var not in seen:
                seen.add(var)
                help_text = re.sub(r"\s*\(env [A-Z_]+\)", "", option.help or "")
                default = option.default if isinstance(option.default, str | int | float) else ""
                flag = max(option.opts, key=len)
                yield var, str(default), f"`{flag}`: {help_text}"
    for var, (default, text) in CLIENT_ONLY_ENV.items():
        if var not in seen:
            yield var, default, text


def toml_example() -> str:
    """The annotated mrm.toml from mrm.deploy.config's docstring."""
    from mrm.deploy import config

    doc = config.__doc__ or ""
    start = doc.index("\n    [")
    return "\n".join(line[4:] for line in doc[start:].strip("\n").splitlines()) + "\n"


def toml_rows() -> Iterator[tuple[str, str, str]]:
    table = ""
    for line in toml_example().splitlines():
        line = line.strip()
        if line.startswith("["):
            table = line.strip("[]")
            continue
        match = _TOML_LINE.match(line)
        if match:
            yield f"{table}.{match['key']}", match["value"], match["note"] or ""


def parsed_toml_example() -> dict[str, Any]:
    return tomllib.loads(toml_example())


def markdown() -> str:
    """The README's configuration section body."""
    parts = []
    for title, second, rows in (
        ("Server (`mrm up`, `mrm serve`; environment)", "default", server_rows()),
        ("Client (`mrmctl`; environment, or the option named)", "default", client_rows()),
        ("`mrm.toml` (next to the model code; read by `mrmctl deploy`)", "example", toml_rows()),
    ):
        parts.append(f"**{title}**\n\n| name | {second} | meaning |\n|---|---|---|")
        parts.extend(f"| `{n}` | {_cell(d) and f'`{_cell(d)}`'} | {_cell(t)} |" for n, d, t in rows)
        parts.append("")
    return "\n".join(parts)
