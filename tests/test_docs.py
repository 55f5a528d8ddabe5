"""The documentation stays true to the code: every hook and config key is documented, and the
README's snippets run against the real thing."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import attrs
import yaml

import vmx_core.hookspecs
from tests.fakes.server import VmxProcess
from vmx_core.config import parse_config
from vmx_core.config.models import VmxConfig
from vmx_core.plugins import Plugins
from vmx_core.secrets import Secret
from vmx_providers.anthropic import AnthropicOptions
from vmx_providers.bedrock import BedrockOptions
from vmx_providers.mock import MockOptions
from vmx_providers.openai import OpenAIOptions

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


# -- helpers (each checked against a broken input below, so they can fail) ---------------------


def hookspec_names() -> list[str]:
    return sorted(
        name for name, fn in inspect.getmembers(vmx_core.hookspecs, inspect.isfunction) if name.startswith("vmx_")
    )


def sections(markdown: str, level: int) -> dict[str, str]:
    """Heading text -> the text up to the next heading of the same or a higher level."""
    pattern = re.compile(rf"^#{{1,{level}}} (.+)$", re.MULTILINE)
    heads = [(m.group(1).strip(), m.start(), m.end(), len(m.group(0)) - len(m.group(0).lstrip("#")))
             for m in pattern.finditer(markdown)]
    out: dict[str, str] = {}
    for i, (title, _, end, lvl) in enumerate(heads):
        if lvl != level:
            continue
        stop = next((start for _, start, _, lv in heads[i + 1 :] if lv <= level), len(markdown))
        out[title] = markdown[end:stop]
    return out


def missing_hook_sections(markdown: str) -> list[str]:
    present = set(sections(markdown, 2))
    return [name for name in hookspec_names() if name not in present]


def config_classes(root: type = VmxConfig) -> list[type]:
    """Every attrs class reachable from ``root`` through its fields' types, ``root`` first.

    ``Secret`` is a scalar of the file (a string that never prints), not a section."""
    seen: list[type] = []

    def visit(tp: Any) -> None:
        if tp is Secret:
            return
        if isinstance(tp, type) and attrs.has(tp):
            if tp in seen:
                return
            seen.append(tp)
            for hint in typing.get_type_hints(tp).values():
                visit(hint)
            return
        for arg in typing.get_args(tp):
            visit(arg)
        if isinstance(tp, types.UnionType):
            for arg in tp.__args__:
                visit(arg)

    visit(root)
    return seen


def undocumented_fields(markdown: str, classes: list[type]) -> list[str]:
    """``Class.field`` for each field without a ``| `field` |`` row in the section whose
    heading ends with ``(Class)``; a class without a section reports all its fields."""
    by_class = {m.group(1): body for title, body in sections(markdown, 3).items()
                if (m := re.search(r"\((\w+)\)$", title))}
    missing = []
    for cls in classes:
        body = by_class.get(cls.__name__, "")
        for field in attrs.fields(cls):
            if f"| `{field.name}` |" not in body:
                missing.append(f"{cls.__name__}.{field.name}")
    return missing


def code_block(markdown: str, lang: str, containing: str) -> str:
    blocks = re.findall(rf"^```{lang}\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    matching = [b for b in blocks if containing in b]
    assert matching, f"no ```{lang} block containing {containing!r}"
    return str(matching[0])


# -- (a) hooks --------------------------------------------------------------------------------


def test_every_hookspec_has_a_section_in_plugin_hooks_md() -> None:
    """Each ``vmx_*`` hookspec has its own ``## vmx_name`` section in docs/plugin_hooks.md."""
    names = hookspec_names()
    assert len(names) >= 10
    assert missing_hook_sections((DOCS / "plugin_hooks.md").read_text()) == []


def test_missing_hook_section_is_detected() -> None:
    """The hook check reports a hookspec whose section was removed from the document."""
    text = (DOCS / "plugin_hooks.md").read_text()
    broken = text.replace("## vmx_startup\n", "## startup things\n")
    assert missing_hook_sections(broken) == ["vmx_startup"]


def test_plugin_hooks_md_documents_no_hook_that_does_not_exist() -> None:
    """Every ``## vmx_*`` section of docs/plugin_hooks.md names a real hookspec."""
    documented = {t for t in sections((DOCS / "plugin_hooks.md").read_text(), 2) if t.startswith("vmx_")}
    assert documented == set(hookspec_names())


def test_hook_sections_state_firstresult_as_declared() -> None:
    """Each hook section says ``firstresult`` exactly when the hookspec declares it."""
    docs = sections((DOCS / "plugin_hooks.md").read_text(), 2)
    for name in hookspec_names():
        firstresult = getattr(vmx_core.hookspecs, name).vmx_spec["firstresult"]
        body = " ".join(docs[name].split())  # Markdown may wrap a phrase across lines
        if firstresult:
            assert "**`firstresult`**" in body and "Not `firstresult`" not in body, name
        else:
            assert "Not `firstresult`" in body and "**`firstresult`**" not in body, name


# -- (b) configuration keys -------------------------------------------------------------------


def test_every_config_field_is_documented() -> None:
    """Each field of each attrs class reachable from VmxConfig has a row in configuration.md."""
    classes = config_classes()
    names = {c.__name__ for c in classes}
    assert {"VmxConfig", "ServerConfig", "ResourceConfig", "ModelRef", "CapacityLimit", "SplitChoice",
            "CircuitBreakerConfig", "ApiKeyConfig", "PoolConfig"} <= names
    assert undocumented_fields((DOCS / "configuration.md").read_text(), classes) == []


def test_missing_config_field_is_detected() -> None:
    """The config check reports a field whose row was removed from the document."""
    text = (DOCS / "configuration.md").read_text()
    broken = text.replace("| `stream_idle_timeout_ms` |", "| stream idle |", 1)
    assert undocumented_fields(broken, config_classes()) == ["ResourceConfig.stream_idle_timeout_ms"]


def test_builtin_provider_options_are_documented() -> None:
    """Every field of the built-in providers' ``options_type`` appears in its options table."""
    providers = sections((DOCS / "configuration.md").read_text(), 3)
    openai_doc = providers["`openai`, `groq`, `perplexity`, `gemini`"]
    mock_doc = providers["`mock`"]
    anthropic_doc = providers["`anthropic`"]
    bedrock_doc = providers["`bedrock`, `bedrock-invoke`"]
    for cls, body in ((OpenAIOptions, openai_doc), (MockOptions, mock_doc), (AnthropicOptions, anthropic_doc),
                      (BedrockOptions, bedrock_doc)):
        for field in attrs.fields(cls):
            assert f"| `{field.name}` |" in body, f"{cls.__name__}.{field.name}"


def test_configuration_md_complete_example_is_a_valid_config() -> None:
    """The complete example in configuration.md loads and validates with the real providers."""
    text = (DOCS / "configuration.md").read_text()
    example = code_block(sections(text, 2)["A complete example"], "yaml", "workspaces:")
    config = parse_config(example, environ={"OPENAI_API_KEY": "sk-doc"}, providers=Plugins.load().providers())
    resource = config.workspaces["acme"].environments["prod"].resources["chat"]
    assert [ref.connection for ref in resource.fallback] == ["groq", "local-mock"]


# -- (c) the README snippets run --------------------------------------------------------------


async def test_readme_sdk_snippet_answers_from_quickstart_server(tmp_path: Path) -> None:
    """The README's 6-line OpenAI-SDK snippet prints an answer from ``vmx serve`` on the quick start."""
    snippet = code_block(README.read_text(), "python", "/v1/completion/acme/prod")
    assert len(snippet.strip().splitlines()) == 6
    assert "127.0.0.1:8080" in snippet

    server = VmxProcess(yaml.safe_load(QUICKSTART.read_text()), tmp_path)
    server.config_path = QUICKSTART  # serve the file itself, exactly as `make run` does
    await server.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", snippet.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        await server.stop()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "Mock answer to: Hello!"
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    assert any(line.get("resource") == "chat" for line in lines)


async def test_readme_embedding_snippet_runs_in_process() -> None:
    """The README's embedding snippet answers in-process, whole and streamed, with no server."""
    snippet = code_block(README.read_text(), "python", "Gateway.from_file")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", snippet, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().count("Mock answer to: Hello!") == 2, out.decode() + err.decode()


# -- links ------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)}


def test_relative_links_in_docs_point_to_existing_files_and_headings() -> None:
    """Every relative Markdown link in README, CHANGELOG and docs/ names an existing file and heading."""
    pages = [README, ROOT / "CHANGELOG.md", *DOCS.glob("*.md"), ROOT / "examples" / "vmx-provider-echo" / "README.md"]
    broken = []
    checked = 0
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target) if target else page
            checked += 1
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert checked > 40
    assert broken == []


def test_link_check_detects_a_missing_heading() -> None:
    """The anchor check does not accept a heading that is not in the page."""
    assert "the-streaming-form" in anchors(DOCS / "embedding.md")
    assert "no-such-heading" not in anchors(DOCS / "embedding.md")
    assert slug("### `server` (ServerConfig)".lstrip("# ")) == "server-serverconfig"
