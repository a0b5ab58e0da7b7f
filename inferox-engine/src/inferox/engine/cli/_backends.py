"""``inferox backends``: installed backend plugins, their versions, devices and architectures.

What a blocked plugin (``INFEROX_BLOCKED_PLUGINS``) contributes is not listed: its backends, the
architectures it defines, and other plugins' implementations on its backends (the registry hides
those); nor is an implementation of an architecture that no installed, unblocked plugin defines.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from inferox.core.errors import InferoxError
from inferox.engine.cli._group import EPILOG, cli, console


@cli.command(epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-devices", is_flag=True, help="Do not import frameworks to list devices.")
def backends(as_json: bool, no_devices: bool) -> None:
    """List installed backend plugins: versions, availability (and why not), devices, architectures."""
    from inferox.core import get_registry

    registry = get_registry()
    defined = set(registry.schema_names())
    rows: list[dict[str, Any]] = []
    for info in registry.list_backends():
        row: dict[str, Any] = {
            "name": info.name,
            "plugin": info.plugin,
            "plugin_version": info.plugin_version,
            "versions": info.versions,
            "available": info.available,
            "reason": info.reason,
            "devices": [],
            "architectures": sorted(a for a in registry.architectures(info.name) if a in defined),
        }
        if info.available and not no_devices:
            try:
                backend = registry.get_backend(info.name)
                row["devices"] = [
                    {"id": str(d.id), "name": d.name, "available": d.available, "memory_total": getattr(d.memory, "total", None) if d.memory else None}
                    for d in backend.devices()
                ]
                # The framework's own version string, apart: labelling it with the backend's name
                # read as if a distribution of that name were installed ("npdemo 2.4.6").
                row["backend_version"] = backend.version
            except InferoxError as exc:
                row["available"], row["reason"] = False, exc.message
        rows.append(row)
    failures = [{"plugin": f.name, "error": f.error} for f in registry.failures]
    # Every architecture some plugin defines, who defines it, and which backends implement it.
    schemas = [
        {"name": s.name, "plugin": s.plugin, "model_types": list(s.model_types), "backends": registry.backends_for(s.name)}
        for s in (registry.schema(n) for n in registry.schema_names())
    ]
    if as_json:
        click.echo(json.dumps({"backends": rows, "architectures": schemas, "plugin_failures": failures, "blocked": sorted(registry.blocked)}, indent=2))
        return
    out = console()
    table = Table(title="Inferox backends")
    for col in ("backend", "plugin", "versions", "available", "devices", "architectures"):
        table.add_column(col)
    for row in rows:
        versions = ", ".join(f"{k} {v or 'missing'}" for k, v in row["versions"].items())
        if row.get("backend_version") and row["backend_version"] not in row["versions"].values():
            versions = ", ".join(filter(None, [versions, f"reports {row['backend_version']}"]))
        avail = "[green]yes[/]" if row["available"] else f"[red]no[/]: {escape(str(row['reason']))}"
        devices = ", ".join(d["id"] + ("" if d["available"] else " (unavailable)") for d in row["devices"]) or "-"
        table.add_row(escape(str(row["name"])), escape(f"{row['plugin']} {row['plugin_version'] or ''}".strip()), escape(str(versions)), avail, escape(str(devices)), escape(", ".join(row["architectures"])) or "-")
    out.print(table)
    for a in schemas:
        out.print(f"architecture {a['name']} (plugin {a['plugin']}): {', '.join(a['backends']) or 'no backend implements it'}")
    if not rows:
        out.print("no backend plugins installed (pip install inferox-torch or inferox-jax)")
    for f in failures:
        out.print(f"[yellow]plugin {escape(str(f['plugin']))} failed to load:[/] {escape(str(f['error']))}")
    if registry.blocked:
        out.print(f"blocked by INFEROX_BLOCKED_PLUGINS: {escape(', '.join(sorted(registry.blocked)))}")
