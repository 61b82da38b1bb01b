"""The Python examples of README.md run, as written, on the results of the quick-start sweep.

Run from python/ (CTest does, as python/test_reader):
    MODLAB_EXE=../build/bin/modlab MODLAB_PLUGIN_PATH=../build/plugins python3 -m unittest -v tests.test_docs
"""
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))  # the package, as scripts/setup installs it


def python_blocks(markdown_path):
    """(first line number, code) of every ```python block of a Markdown file."""
    with open(markdown_path, encoding="utf-8") as f:
        text = f.read()
    blocks = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        blocks.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return blocks


class ReadmeExamples(unittest.TestCase):
    def test_the_readme_python_blocks_run_on_the_quickstart_results(self):
        exe = os.environ.get("MODLAB_EXE")
        if not exe:
            self.skipTest("MODLAB_EXE is unset: set it to the modlab executable (build/bin/modlab)")
        readme = os.path.join(REPO, "README.md")
        blocks = python_blocks(readme)
        self.assertGreaterEqual(len(blocks), 2, "README.md has lost its Python examples")
        with tempfile.TemporaryDirectory() as tmp:
            # The quick start's command (scripts/quickstart), run where the examples expect it.
            done = subprocess.run([exe, "run", os.path.join(REPO, "sweeps", "quickstart.toml"),
                                   "--jobs", "2", "--out", "results/quickstart"],
                                  cwd=tmp, capture_output=True, text=True)
            self.assertEqual(done.returncode, 0, done.stderr)
            with contextlib.chdir(tmp):
                for line, code in blocks:
                    with self.subTest(block=f"README.md:{line}"):
                        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "readme"})


if __name__ == "__main__":
    unittest.main()
