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
    assert "('pretrained', " in printed and "('random-init', " in printed and "('raw-input', 'raw')" in printed
    assert "fine-tuned:" in printed and "held-out samples" in printed
    assert printed.count("refused:") == 3
    assert (tmp_path / "runs/api-demo/centre/summary.json").is_file()
    assert "stripes run: 2 steps" in printed


def test_the_api_example_uses_only_the_front_door():
    """The example imports `maskkit` and nothing below it, and every `maskkit.X` it names is public."""
    import ast

    import maskkit

    tree = ast.parse(re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0])
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    from_maskkit = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and (n.module or "").split(".")[0] == "maskkit"]
    assert "maskkit" in imported and from_maskkit == []
    assert [name for name in imported if name.startswith("maskkit.")] == []
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "maskkit"}
    assert {"train", "load", "evaluate", "finetune", "TrainConfig", "Masker", "Modality"} <= used
    assert used <= set(maskkit.__all__), sorted(used - set(maskkit.__all__))


def test_import_maskkit_is_light_and_exposes_the_front_door():
    import subprocess
    import sys

    import maskkit

    code = "import sys, maskkit; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    names = [maskkit.train, maskkit.load, maskkit.evaluate, maskkit.finetune, maskkit.export, maskkit.compare,
             maskkit.Masker, maskkit.Modality, maskkit.TrainConfig]
    assert all(callable(n) for n in names)
    import maskkit.train.config  # the subpackage and the function are one object

    assert callable(maskkit.train) and maskkit.train.config.TrainConfig is maskkit.TrainConfig
