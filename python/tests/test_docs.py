"""The Python examples of README.md, and its commands that look at results, run as written on the
results of the quick-start sweep.

Run from python/ (CTest does, as python/test_docs):
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


def blocks(markdown_path, language):
    """(first line number, code) of every ```<language> block of a Markdown file."""
    with open(markdown_path, encoding="utf-8") as f:
        text = f.read()
    found = []
    for m in re.finditer(r"^```" + language + r"\n(.*?)^```", text, flags=re.S | re.M):
        found.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return found


def result_commands(markdown_path):
    """(line number, command) of the shell lines that look at results/quickstart."""
    commands = []
    for first, code in blocks(markdown_path, "sh"):
        for i, line in enumerate(code.splitlines()):
            if "results/quickstart" in line and line.split()[0] in ("build/bin/modlab", "h5dump"):
                commands.append((first + i, line))
    return commands


class ReadmeExamples(unittest.TestCase):
    def test_the_readme_python_blocks_run_on_the_quickstart_results(self):
        exe = os.environ.get("MODLAB_EXE")
        if not exe:
            self.skipTest("MODLAB_EXE is unset: set it to the modlab executable (build/bin/modlab)")
        readme = os.path.join(REPO, "README.md")
        python = blocks(readme, "python")
        commands = result_commands(readme)
        self.assertGreaterEqual(len(python), 2, "README.md has lost its Python examples")
        self.assertGreaterEqual(len(commands), 3, "README.md has lost its commands that show results")
        with tempfile.TemporaryDirectory() as tmp:
            # The quick start's command (scripts/quickstart), run where the examples expect it.
            done = subprocess.run([exe, "run", os.path.join(REPO, "sweeps", "quickstart.toml"),
                                   "--jobs", "2", "--out", "results/quickstart"],
                                  cwd=tmp, capture_output=True, text=True)
            self.assertEqual(done.returncode, 0, done.stderr)
            with contextlib.chdir(tmp):
                for line, code in python:
                    with self.subTest(block=f"README.md:{line}"):
                        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "readme"})
            for line, command in commands:
                with self.subTest(command=f"README.md:{line}"):
                    ran = subprocess.run(["bash", "-c", command.replace("build/bin/modlab", exe, 1)],
                                         cwd=tmp, capture_output=True, text=True)
                    self.assertEqual(ran.returncode, 0, f"{command}\n{ran.stdout}{ran.stderr}")
                    self.assertTrue(ran.stdout.strip(), command)


if __name__ == "__main__":
    unittest.main()
