"""The analyst notebooks: committed without outputs, in sync with their builder, and each runs
top to bottom (nbclient, kernel ``python3`` = this interpreter) on a small generated lake."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_explore_history.ipynb", "02_tune_rule.ipynb", "03_live_vs_history.ipynb"]
#: Text each notebook must print: proof that its key cell ran to the end on real data.
EXPECTED = {
    "01_explore_history.ipynb": "data:",
    "02_tune_rule.ipynb": "best within budget",
    "03_live_vs_history.ipynb": "stream and backtest agree on every rule",
}


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, NOTEBOOKS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kernel_name() -> str:
    """``python3``, installed into this venv (``--sys-prefix``) if it does not resolve."""
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"],
                       check=True, capture_output=True)
    return "python3"


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _load("nbdata").ensure_sample(tmp_path_factory.mktemp("nbdata") / "storage")


def _execute(nb: nbformat.NotebookNode, kernel_name: str) -> nbformat.NotebookNode:
    NotebookClient(nb, timeout=120, kernel_name=kernel_name,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_notebooks_match_their_builder() -> None:
    builder = _load("build_notebooks")
    assert sorted(builder.NOTEBOOKS) == NAMES
    for name, cells in builder.NOTEBOOKS.items():
        built = json.loads(nbformat.writes(builder.notebook(cells)))
        assert json.loads((NOTEBOOKS / name).read_text()) == built, f"re-run the builder: {name}"


def test_kernel_is_this_interpreter(kernel_name: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys, batch, queries; print(sys.executable)")])
    out = _stdout(_execute(nb, kernel_name)).strip()
    assert Path(out).resolve() == Path(sys.executable).resolve()


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str, kernel_name: str, sample_root: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDLAKE_NOTEBOOK_DATA", str(sample_root))
    nb = _execute(nbformat.read(NOTEBOOKS / name, as_version=4), kernel_name)
    out = _stdout(nb)
    assert f"data: {sample_root}" in out
    assert EXPECTED[name] in out
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    rich = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type in ("execute_result", "display_data")]
    assert len(rich) >= 3  # tables and charts were shown
