#!/usr/bin/env python3
"""The sizes issue #14 measures: the largest source files, the longest functions, and the
`expect(` calls in the model. A function runs from its `fn` line to the closing brace at the
same indentation (rustfmt's layout), so the count is lines, comments included.

    python3 bench/code-sizes.py [N]     (N rows of each table; 12 by default)
"""
import pathlib
import re
import sys

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 12
root = pathlib.Path(__file__).resolve().parent.parent
sources = sorted(p for p in (root / "crates").rglob("src/**/*.rs"))
fn_start = re.compile(r"^(\s*)(pub(\([^)]*\))? )?(const )?(unsafe )?fn (\w+)")

files, functions = [], []
for path in sources:
    lines = path.read_text().splitlines()
    name = str(path.relative_to(root))
    files.append((len(lines), name))
    for i, line in enumerate(lines):
        m = fn_start.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        for j in range(i, len(lines)):
            if lines[j] == indent + "}" or (j == i and line.rstrip().endswith("}")):
                functions.append((j - i + 1, f"{name}: {m.group(6)}"))
                break

print(f"files ({len(files)}, {sum(n for n, _ in files)} lines), largest:")
for n, name in sorted(files, reverse=True)[:rows]:
    print(f"  {n:6} {name}")
print(f"functions ({len(functions)}), longest:")
for n, name in sorted(functions, reverse=True)[:rows]:
    print(f"  {n:6} {name}")
over = sum(1 for n, _ in functions if n > 70)
print(f"functions over 70 lines: {over}")
model = [p for p in sources if "crates/model/" in str(p)]
expects = sum(p.read_text().count(".expect(") for p in model)
print(f"`.expect(` calls in crates/model/src: {expects}")
