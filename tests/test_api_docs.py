"""docs/api.md's example is executed as written, so the documented API cannot drift from the code."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_the_api_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/api.md should hold one complete example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], str(DOC), "exec"), {"__name__": "api_example"})
    printed = capsys.readouterr().out
    assert "features (8, 17, 64)" in printed
    assert "fine-tuned:" in printed and "held-out samples" in printed
    assert printed.count("refused:") == 3
    assert (tmp_path / "runs/api-demo/centre/summary.json").is_file()
    assert "stripes run: 2 steps" in printed
