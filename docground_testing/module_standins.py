"""Running a benchmark from an uninstalled copy of the checkout (the GPU machine): a link farm that makes
`docground.*` import from the checkout, and stand-in modules for packages that machine lacks.

Everything lives in one temporary folder per run, removed at exit, so nothing stays in /tmp for a later
run to pick up. A stand-in is written only for a package that is missing and goes last on sys.path:
an installed package always wins (tests/test_bench_stubs.py).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR_ENV = "DGBENCH_RUN_DIR"  # not DOCGROUND_*: cluster.cluster_env drops those from a worker's env
STUBS_ENV = "DGBENCH_STUBS"
# Stand-ins for what the GPU machine lacks; the benchmarks feed image pages only, so nothing really calls them.
STAND_INS = {"pymupdf": "def __getattr__(name):\n    return 0\n",
             "filetype": "def guess(data):\n    return None\n",
             # the Office and text providers' libraries, imported with docground.ingest.providers
             "msoffcrypto": "def __getattr__(name):\n    return None\n",
             "olefile": "def __getattr__(name):\n    return None\n",
             "nh3": "ALLOWED_ATTRIBUTES = {}\n\n\ndef __getattr__(name):\n    return None\n",
             "markdown_it": "def __getattr__(name):\n    return None\n",
             "cmarkgfm": "import sys\nimport types\n\ncmark = types.ModuleType(__name__ + '.cmark')\n"
                         "cmark.__getattr__ = lambda name: None\nsys.modules[cmark.__name__] = cmark\n\n\n"
                         "def __getattr__(name):\n    return None\n"}
_OWNED: dict[str, int] = {}  # run folder -> the pid that made it (and alone removes it)


def run_dir() -> Path:
    """This run's temporary folder (the docground link farm, the stand-in modules), made by mkdtemp once per
    run: child processes reuse it (DGBENCH_RUN_DIR), and the process that made it removes it at exit. Nothing
    stays in /tmp for a later benchmark on the same machine to pick up."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and Path(inherited).is_dir():
        return Path(inherited)
    folder = tempfile.mkdtemp(prefix="docground-bench-")
    _OWNED[folder] = os.getpid()
    os.environ[RUN_DIR_ENV] = folder
    atexit.register(cleanup_run_dir, folder)
    return Path(folder)


def cleanup_run_dir(folder: str | None = None) -> None:
    """Remove the run folder(s) this process made, and every path into them from sys.path and the
    environment; a no-op for a folder it inherited or in a forked child."""
    for owned in [folder] if folder else list(_OWNED):
        if _OWNED.get(owned) != os.getpid():
            continue
        shutil.rmtree(owned, ignore_errors=True)
        del _OWNED[owned]

        def outside(path: str, owned: str = owned) -> bool:
            return path != owned and not path.startswith(owned + os.sep)

        sys.path[:] = [p for p in sys.path if outside(p)]
        for name in (RUN_DIR_ENV, STUBS_ENV):
            if not outside(os.environ.get(name, "")):
                del os.environ[name]
        if "PYTHONPATH" in os.environ:
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in os.environ["PYTHONPATH"].split(os.pathsep)
                                                       if outside(p))


def write_stand_ins(folder: Path, stand_ins: dict[str, str] | None = None) -> list[str]:
    """Write into `folder` a stand-in module for each package of `stand_ins` (default STAND_INS) that is not
    installed, never for one that is (importlib.util.find_spec decides), and append `folder` to sys.path,
    after every installed package. Returns the names written."""
    written = []
    for name, body in (STAND_INS if stand_ins is None else stand_ins).items():
        if importlib.util.find_spec(name) is not None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.py").write_text(f"# placeholder written by docground_testing/module_standins.py: no {name} "
                                           f"here\n{body}")
        written.append(name)
    if written and str(folder) not in sys.path:
        sys.path.append(str(folder))
        importlib.invalidate_caches()
    return written


def use_stand_ins_from_env() -> None:
    """In a child started as a new interpreter (a Celery worker): append the stand-in folder its parent
    made (DGBENCH_STUBS) to sys.path, last, as the parent did."""
    folder = os.environ.get(STUBS_ENV)
    if folder and Path(folder).is_dir() and folder not in sys.path:
        sys.path.append(folder)
        importlib.invalidate_caches()


def make_importable() -> None:
    """Let `docground.*` import from this checkout without installing it, in this process and its children.

    The GPU machine has no pymupdf or filetype; the benchmark feeds image pages only, so placeholder modules
    stand in for them there (never where the real ones are installed). Both the stand-ins and the link to
    this checkout live in this run's temporary folder (run_dir), removed at exit. The link (made only where
    no docground is installed) goes first on sys.path and PYTHONPATH; the stand-ins go last on sys.path and
    reach children through multiprocessing (which copies sys.path) or DGBENCH_STUBS (use_stand_ins_from_env),
    never through PYTHONPATH, which would put them before a child's installed packages.
    """
    run = run_dir()
    stubs = Path(tempfile.mkdtemp(prefix="stubs-", dir=run))
    if write_stand_ins(stubs):
        os.environ[STUBS_ENV] = str(stubs)
    try:
        import docground.ingest  # noqa: F401  (installed, e.g. `pip install -e .`)
    except ImportError:
        farm = run / "pkg"
        pkg = farm / "docground"
        pkg.mkdir(parents=True, exist_ok=True)
        for entry in (list((ROOT / "docground").iterdir())
                      + [ROOT / n for n in ("ingest", "retrieval", "workers", "api")]):
            link = pkg / entry.name
            if not link.exists():
                link.symlink_to(entry)
        if str(farm) not in sys.path:
            sys.path.insert(0, str(farm))
        paths = [str(farm)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        # Run with -m from the root, the probe imported the checkout's bare docground/ (no ingest under it):
        # forget it, so that the next import finds the link.
        for name in [m for m in sys.modules if m.split(".")[0] == "docground"]:
            del sys.modules[name]
