"""Every code block of the project's Markdown runs as written, or says right above it why not.

Files: README.md, docs/*.md and plugins/*/*/README.md (a new file matching these is covered).
Each fenced block is classified by its info string:

- ```sh / ```bash: commands. The block runs as one bash script (errexit, pipefail) in a fresh
  folder laid out like the repository root: sweeps/ (a copy), scripts/ and python/ (links),
  build/bin/modlab = MODLAB_EXE (also on PATH as `modlab`), build/plugins, and results/ holding
  the results folders the docs read (RESULTS below). It must exit 0 and print something; a
  block right below `<!-- test: exits with status N -->` must exit N instead.
- ```toml: a sweep file, checked with `modlab expand`, which validates every run's keys, types
  and values against the real plugins. Two first-line comments give a block a role:
  `# fragment of <sweep file>`: the block holds some tables only; they replace the tables of that
  name (with their sub-tables) in that sweep file of the repository, whose [sweep] is dropped
  unless the block has one, and that sweep is checked.
  `# <name>.toml ...`: the block is the sweep file <name>.toml, which the commands and Python of
  the docs may use (it is written into every folder they run in); RESULTS may run it.
- ```python: the blocks of one file run in order in one namespace, like a notebook, in one such
  folder (tracebacks give the Markdown file and line).
- any other info string (text, cpp, cmake, none): output listings and code that is not run.

A sh, toml or python block that is not run says why in an HTML comment right above its fence:
`<!-- not run by tests: <reason> -->`. Every other one is run, and a failure names file:line.

The results folders are made once by the real sweeps; the masked_analyzer smoke sweep with
smaller sizes and step counts (the same stages, tables and names in seconds).

Run from python/ (CTest does, as python/test_docs):
    MODLAB_EXE=../build/bin/modlab MODLAB_PLUGIN_PATH=../build/plugins OMP_NUM_THREADS=1 \
        python3 -m unittest -v tests.test_docs
Without MODLAB_EXE only the checks that need no executable run (blocks parse, exemptions say why).
"""
import collections
import concurrent.futures
import contextlib
import glob
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))  # the package, as scripts/setup installs it

MARKDOWN = ["README.md", "docs/*.md", "plugins/*/*/README.md"]
KINDS = {"sh": "sh", "bash": "sh", "shell": "sh", "toml": "toml", "python": "python", "py": "python"}
EXEMPT = re.compile(r"<!--\s*not run by tests:\s*(.*?)\s*-->", re.S)
EXPECT_STATUS = re.compile(r"<!--\s*test: exits with status (\d+)\s*-->")
FRAGMENT = re.compile(r"#\s*fragment of\s+(\S+\.toml)")
NAMED = re.compile(r"#\s*([\w.-]+\.toml)\b")

# The results folders the docs read, made once: folder -> (sweep: a path in the repository or a
# named toml block, --set overrides).
MASKED_SMALL = ["dataset.train_size=512", "dataset.valid_size=128", "dataset.test_size=128",
                "train.epochs=1", "train.steps_per_epoch=4", "train.phases.mask.epochs=1",
                "train.phases.mask.steps_per_epoch=4", "model.samples=2",
                "model.inner.layer_sizes=[16, 16]"]
RESULTS = {
    "results/quickstart": ("sweeps/quickstart.toml", []),  # what scripts/quickstart writes
    "results/x": ("x.toml", []),                           # docs/python.md's example sweep
    "results/masked_smoke": ("sweeps/masked/smoke.toml", MASKED_SMALL),
}

Block = collections.namedtuple("Block", "path line kind code note")  # line: of the opening fence


def markdown_files():
    """Repository-relative paths of the Markdown files whose blocks are checked."""
    found = {os.path.relpath(p, REPO) for g in MARKDOWN for p in glob.glob(os.path.join(REPO, g))}
    return sorted(found)


def comment_above(lines, i):
    """The HTML comment ending on the last non-blank line above line index i, or ''."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0 or not lines[j].rstrip().endswith("-->"):
        return ""
    k = j
    while k > 0 and "<!--" not in lines[k]:
        k -= 1
    return " ".join(line.strip() for line in lines[k:j + 1])


def blocks(path):
    """Every fenced block of a Markdown file (path relative to the repository)."""
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        lines = f.read().splitlines()
    found, i = [], 0
    while i < len(lines):
        m = re.match(r"(\s*)```\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        code = "".join(line[len(m.group(1)):] + "\n" for line in lines[i + 1:end])
        found.append(Block(path, i + 1, KINDS.get(m.group(2).lower()), code, comment_above(lines, i)))
        i = end + 1
    return found


def all_blocks():
    return [b for path in markdown_files() for b in blocks(path)]


def exemption(block):
    """The reason a runnable block is not run, or None."""
    m = EXEMPT.search(block.note)
    return m.group(1) if m else None


def runnable(kind):
    return [b for b in all_blocks() if b.kind == kind and exemption(b) is None]


def first_line(block):
    return block.code.split("\n", 1)[0].strip()


def named_sweeps():
    """{name.toml: text} of the toml blocks that are a named sweep file."""
    named = {}
    for b in runnable("toml"):
        m = NAMED.match(first_line(b))
        if m and not FRAGMENT.match(first_line(b)):
            named[m.group(1)] = b.code
    return named


def toml_tables(text):
    """[(table name or None before the first header, lines)] of a TOML text, in order."""
    tables = [(None, [])]
    for line in text.splitlines():
        m = re.match(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$", line)
        if m:
            tables.append((re.sub(r"\s+", "", m.group(1)), []))
        tables[-1][1].append(line)
    return tables


def merge_fragment(base, fragment):
    """The sweep `base` with the tables of `fragment` in place of its own (see the docstring)."""
    replaced = {name for name, _ in toml_tables(fragment) if name} | {"sweep"}

    def kept(name):
        return name is None or not any(name == r or name.startswith(r + ".") for r in replaced)

    lines = [line for name, table in toml_tables(base) if kept(name) for line in table]
    return "\n".join(lines) + "\n" + fragment


def sweep_text(block):
    """The whole sweep file a toml block stands for."""
    m = FRAGMENT.match(first_line(block))
    if not m:
        return block.code
    with open(os.path.join(REPO, m.group(1)), encoding="utf-8") as f:
        return merge_fragment(f.read(), block.code)


def where(block):
    return f"{block.path}:{block.line}"


class DocBlocks(unittest.TestCase):
    exe = None

    @classmethod
    def setUpClass(cls):
        exe = os.environ.get("MODLAB_EXE")
        if not exe:
            return
        cls.exe = os.path.abspath(exe)
        paths = os.environ.get("MODLAB_PLUGIN_PATH", "").split(":")
        cls.plugin_path = ":".join(os.path.abspath(p) for p in paths if p)
        cls.tmp = tempfile.mkdtemp(prefix="modlab_docs_")
        cls.prepared = os.path.join(cls.tmp, "prepared")
        os.makedirs(cls.prepared)
        for name, text in named_sweeps().items():
            with open(os.path.join(cls.prepared, name), "w", encoding="utf-8") as f:
                f.write(text)
        for folder, (sweep, overrides) in RESULTS.items():
            cls.make_results(folder, sweep, overrides)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)
        if cls.exe:
            print("\nsh, toml and python blocks run / not run:", file=sys.stderr)
            counts = collections.Counter((b.path, exemption(b) is None) for b in all_blocks() if b.kind)
            for path in markdown_files():
                if counts[(path, True)] or counts[(path, False)]:
                    print(f"  {path}: {counts[(path, True)]} / {counts[(path, False)]}", file=sys.stderr)

    @classmethod
    def make_results(cls, folder, sweep, overrides):
        path = os.path.join(REPO, sweep)
        if not os.path.exists(path):
            path = os.path.join(cls.prepared, sweep)
        args = [cls.exe, "run", path, "--out", os.path.join(cls.prepared, folder), "--jobs", "2"]
        for o in overrides:
            args += ["--set", o]
        done = subprocess.run(args, capture_output=True, text=True, env=cls.environment(cls.prepared),
                              timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")

    @classmethod
    def environment(cls, folder):
        env = dict(os.environ, MODLAB_PLUGIN_PATH=cls.plugin_path, MPLBACKEND="Agg")
        env["PATH"] = os.path.join(folder, "build", "bin") + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.join(REPO, "python"),
                                                          env.get("PYTHONPATH")]))
        return env

    def workspace(self):
        """A fresh folder laid out like the repository root, with the prepared results."""
        ws = tempfile.mkdtemp(dir=self.tmp, prefix="ws_")
        shutil.copytree(self.prepared, ws, dirs_exist_ok=True)
        shutil.copytree(os.path.join(REPO, "sweeps"), os.path.join(ws, "sweeps"))
        for name in ("scripts", "python"):
            os.symlink(os.path.join(REPO, name), os.path.join(ws, name))
        os.makedirs(os.path.join(ws, "build", "bin"))
        os.symlink(self.exe, os.path.join(ws, "build", "bin", "modlab"))
        plugins = self.plugin_path.split(":")[0]
        if os.path.isdir(plugins):
            os.symlink(plugins, os.path.join(ws, "build", "plugins"))
        return ws

    def need_exe(self):
        if not self.exe:
            self.skipTest("MODLAB_EXE is unset: set it to the modlab executable (build/bin/modlab)")

    # --- checks that need no executable --------------------------------------------------

    def test_the_markdown_files_have_blocks(self):
        files = markdown_files()
        for expected in ("README.md", "docs/sweeps.md", "docs/python.md", "plugins/models/moe/README.md"):
            self.assertIn(expected, files)
        self.assertGreaterEqual(len(runnable("python")), 10, "the docs have lost their Python examples")

    def test_exemptions_say_why_and_sit_above_runnable_blocks(self):
        for b in all_blocks():
            reason = exemption(b)
            with self.subTest(block=where(b)):
                if reason is not None:
                    self.assertTrue(b.kind, f"{where(b)}: 'not run by tests' above a block that is never run")
                    self.assertGreater(len(reason), 10, f"{where(b)}: say why the block is not run")

    def test_python_blocks_compile(self):
        for b in runnable("python"):
            with self.subTest(block=where(b)):
                compile("\n" * b.line + b.code, b.path, "exec")

    def test_toml_blocks_parse(self):
        for b in runnable("toml"):
            with self.subTest(block=where(b)):
                m = FRAGMENT.match(first_line(b))
                if m:
                    self.assertTrue(os.path.exists(os.path.join(REPO, m.group(1))),
                                    f"{where(b)}: no sweep file {m.group(1)}")
                try:
                    tomllib.loads(sweep_text(b))
                    error = None
                except tomllib.TOMLDecodeError as e:
                    error = str(e)
                self.assertIsNone(error, f"{where(b)}: not TOML")

    # --- checks that run modlab ----------------------------------------------------------

    def expand(self, block, folder):
        """Writes the sweep of a toml block into folder, returns `modlab expand` on it."""
        path = os.path.join(folder, f"{block.path.replace('/', '_')}_{block.line}.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(sweep_text(block))
        return subprocess.run([self.exe, "expand", path], capture_output=True, text=True,
                              env=self.environment(folder), timeout=120)

    def test_toml_blocks_are_valid_sweeps(self):
        self.need_exe()
        folder = tempfile.mkdtemp(dir=self.tmp, prefix="toml_")
        toml = runnable("toml")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # each expand loads every plugin
            results = list(pool.map(lambda b: self.expand(b, folder), toml))
        for b, done in zip(toml, results):
            with self.subTest(block=where(b)):
                self.assertEqual(done.returncode, 0, f"{where(b)}: modlab expand:\n{done.stdout}{done.stderr}")

    def test_python_blocks_run(self):
        self.need_exe()
        by_file = collections.defaultdict(list)
        for b in runnable("python"):
            by_file[b.path].append(b)
        for path, file_blocks in by_file.items():
            ws = self.workspace()
            namespace = {"__name__": "__docs__"}
            with contextlib.chdir(ws), mock.patch.dict(os.environ, self.environment(ws)), \
                    contextlib.redirect_stdout(io.StringIO()):
                for b in file_blocks:
                    with self.subTest(block=where(b)):
                        exec(compile("\n" * b.line + b.code, b.path, "exec"), namespace)
            if "matplotlib.pyplot" in sys.modules:
                sys.modules["matplotlib.pyplot"].close("all")

    def test_sh_blocks_run(self):
        self.need_exe()
        for b in runnable("sh"):
            with self.subTest(block=where(b)):
                ws = self.workspace()
                m = EXPECT_STATUS.search(b.note)
                expected = int(m.group(1)) if m else 0
                prelude = ("set -o pipefail" if expected else
                           f"set -eo pipefail; trap 'echo \"{b.path}:$((LINENO + {b.line - 1})): "
                           "exit status $?\" >&2' ERR")
                done = subprocess.run(["bash", "-c", prelude + "\n" + b.code], cwd=ws, capture_output=True,
                                      text=True, env=self.environment(ws), timeout=300)
                self.assertEqual(done.returncode, expected, f"{where(b)}:\n{b.code}{done.stdout}{done.stderr}")
                self.assertTrue((done.stdout + done.stderr).strip(), f"{where(b)}: printed nothing\n{b.code}")


if __name__ == "__main__":
    unittest.main()
