"""The Markdown reader behind the docs test: fences, their languages and directives, shell commands."""

from __future__ import annotations

from pathlib import Path

from tests.repo.docblocks import blocks, commands, looks_like_a_command

PAGE = """# A page

<!-- docs-test: skip needs a GPU -->

```bash
inferox serve models/ --device cuda:0
```

- a list item with a block:

  ```toml
  name = "minilm"
  ```

<!-- snippet: rest -->
```console
$ pip install -c constraints.txt \\
    ./inferox-core   # a comment
20 passed
$ inferox backends
```

```
untagged
```
"""


def test_fences_languages_directives_and_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    found = blocks(page)
    assert [(b.line, b.language) for b in found] == [(5, "bash"), (11, "toml"), (16, "console"), (23, "")]
    assert found[0].skip_reason == "needs a GPU" and found[0].code == "inferox serve models/ --device cuda:0\n"
    assert found[1].code == 'name = "minilm"\n' and found[1].skip_reason is None  # the list item's indentation is gone
    assert found[2].directives == () and found[2].skip_reason is None  # other comments are not directives
    cmds = commands(found[2])
    assert [(c.line, c.words) for c in cmds] == [(17, ("pip", "install", "-c", "constraints.txt", "./inferox-core")), (20, ("inferox", "backends"))]


def test_what_looks_like_a_command() -> None:
    assert looks_like_a_command("$ pytest -q\n") and looks_like_a_command("pip install x\n") and looks_like_a_command(">>> 1 + 1\n")
    assert not looks_like_a_command("models/\n  mlp/1/…\n") and not looks_like_a_command("factory(*, backend) -> Model\n")
