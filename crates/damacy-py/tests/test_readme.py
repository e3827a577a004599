"""The README's Python example runs exactly as shown."""

import contextlib
import io
import os
import re

from conftest import REPO


def readme_example():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python\n") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs_as_shown(tmp_path):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 11  # the "10-line example" (+ a blank)
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # it generates into ./bench-data
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    lines = out.getvalue().splitlines()
    # 6 boxes x 2 arrays in batches of 4, in push order.
    assert [line.split(")")[0] + ")" for line in lines] == [
        "(0, 1, 2, 3)",
        "(4, 5, 6, 7)",
        "(8, 9, 10, 11)",
    ]
    assert all("(4, 16, 16, 16)" in line for line in lines)
