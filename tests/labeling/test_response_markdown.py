"""What a labeler sees of a response: its Markdown rendered, and any raw HTML in it as text."""

from __future__ import annotations

from tests.labeling.test_queue import take
from tests.support import login, make_project, make_user

RESPONSE = """Here is the table:

| name | value |
|:-----|------:|
| a    | 1     |

Use `<b>bold</b>` in HTML, or <b>this</b> raw tag, or *emphasis*.

```python
print("<div>")
```

- one
- two

[docs](https://example.org/docs) and [bad](javascript:alert(1))"""


def test_label_page_renders_markdown_and_shows_raw_html_as_text(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, items=[{
        "external_id": "md", "prompt": "Show a **table**",
        "responses": [{"text": RESPONSE}, {"text": "Plain <script>alert(1)</script> text"}],
    }], members={"lee@example.org": "labeler"})
    page = take(client, project.id, login(client, "lee@example.org"))

    assert "<strong>table</strong>" in page
    assert "<th>name</th>" in page and "<td>1</td>" in page
    assert "<code>&lt;b&gt;bold&lt;/b&gt;</code>" in page
    assert "&lt;b&gt;this&lt;/b&gt; raw tag" in page and "<b>this</b>" not in page
    assert "<em>emphasis</em>" in page
    assert '<code class="language-python">print("&lt;div&gt;")' in page
    assert "<li>one</li>" in page
    assert 'href="https://example.org/docs"' in page
    assert 'href="javascript' not in page
    assert "Plain &lt;script&gt;alert(1)&lt;/script&gt; text" in page
