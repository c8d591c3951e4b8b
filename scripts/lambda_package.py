"""Build the Lambda deployment artifact: runtime dependencies for the target platform, our code, trimmed.

What `sam build` would ship for `python3.12` on `arm64`, minus what never runs there. `make package` zips
it into dist/; `sam build` runs it through the template's `BuildMethod: makefile` (`--out $ARTIFACTS_DIR
--no-zip`):

    python -m scripts.lambda_package [--out dist/lambda] [--zip dist/tokenrelay-lambda.zip] [--no-zip]
                                     [--arch arm64] [--python-version 3.12] [--no-trim] [--no-bytecode]

Dependencies are the runtime ones pinned in uv.lock (`uv export`), installed as binary wheels for the target
(`uv pip install --python-platform ... --only-binary :all:`; uv writes no bytecode, and a 3.11 interpreter
must not write 3.11 bytecode into a 3.12 tree anyway). Trimming removes the distributions listed in TRIMMED
and files no import needs.

Then the modules a cold start imports are compiled by the target's interpreter (`python3.12`, when it is on
PATH) with unchecked-hash bytecode: Lambda's code directory is read-only, so without shipped bytecode every
cold start compiles them again (measured: about twice as slow to the first byte). Only those modules:
compiling everything would add 7 MB to the zip for code a cold start never reaches.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from scripts.uv import locked_runtime_requirements, uv_binary

ROOT = Path(__file__).resolve().parent.parent

# Our code: what handler.py reaches. Tests, benchmarks and the local server's entry point stay behind.
SOURCES = ("app", "providers", "handler.py")

# Distributions pulled in by Litestar (or uvicorn) that no code path on Lambda imports; each was checked by
# serving both stream flavours, the OpenAPI document and the page with the package made unimportable.
TRIMMED = {
    "faker": ("faker",),  # polyfactory's, for test data
    "polyfactory": ("polyfactory",),  # Litestar's test factories
    "rich": ("rich",),  # Litestar's CLI
    "rich-click": ("rich_click",),
    "click": ("click",),
    "pygments": ("pygments",),
    "markdown-it-py": ("markdown_it",),
    "mdurl": ("mdurl",),
    "httpx": ("httpx",),  # Litestar's test client; the openai SDK uses httpx2
    "httpcore": ("httpcore",),
    "litestar-htmx": ("litestar_htmx",),
    "uvicorn": ("uvicorn",),  # the local server; Lambda calls the handler
    "uvloop": ("uvloop",),  # the local server's event loop and HTTP parser (app/http/server.py)
    "httptools": ("httptools",),
}
# Files no import reads: type stubs, bytecode of another interpreter, console scripts.
TRIMMED_SUFFIXES = (".pyi", ".pyc")
TRIMMED_DIRS = ("__pycache__", "bin")

PLATFORMS = {"arm64": "aarch64-manylinux2014", "x86_64": "x86_64-manylinux2014"}

# Run by this interpreter from the project, once per provider: what a cold start imports, as paths relative
# to the directory they were imported from (module names do not depend on the platform).
_COLD_PATH_PROBE = """
import asyncio, os, sys
from pathlib import Path
from app.factory import create_app
for optional in ("handler", "app.lambda_.runtime"):
    try:
        __import__(optional)
    except ImportError:
        pass
app = create_app()
async def first_request():
    sent = []
    async def receive():
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
    async def send(message):
        pass
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/v1/stream", "raw_path": b"/v1/stream", "query_string": b"prompt=hi",
             "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 8000), "state": {}}
    await asyncio.wait_for(app(scope, receive, send), 30)
asyncio.run(first_request())
roots = sorted((Path(p).resolve() for p in sys.path if p and Path(p).is_dir()), key=lambda p: -len(str(p)))
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and path.endswith(".py"):
        resolved = Path(path).resolve()
        for root in roots:
            if resolved.is_relative_to(root):
                print(resolved.relative_to(root).as_posix())
                break
"""


def runtime_requirements() -> list[str]:
    """The runtime dependencies as uv.lock pins them, with their hashes: what the suite passed with."""
    return locked_runtime_requirements()


def install(target: Path, requirements: Sequence[str], *, arch: str, python_version: str) -> None:
    """Binary wheels for the target platform into `target`, as `sam build` would fetch them.

    uv evaluates the lock's markers for the target (python3.12 on Linux), not for the interpreter running
    this, and checks every wheel against its locked hash.
    """
    with tempfile.TemporaryDirectory() as scratch:
        listed = Path(scratch) / "requirements.txt"
        listed.write_text("\n".join(requirements) + "\n")
        command = [
            uv_binary(),
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--python",
            sys.executable,
            "--python-version",
            python_version,
            "--python-platform",
            PLATFORMS[arch],
            "--target",
            str(target),
            "--requirements",
            str(listed),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"installing the runtime dependencies failed:\n{done.stdout}{done.stderr}")


def copy_sources(target: Path, sources: Iterable[str] = SOURCES, root: Path = ROOT) -> None:
    for name in sources:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, target / name)


def _dist_info_owner(path: Path) -> str:
    """`Faker-40.1.0.dist-info` -> `faker` (names normalised as pip does)."""
    return path.name.split("-", 1)[0].lower().replace("_", "-").replace(".", "-")


def trim(target: Path) -> list[str]:
    """Remove what is never imported on Lambda; returns what was removed, relative to `target`."""
    removed: list[str] = []
    packages = {package for packages in TRIMMED.values() for package in packages}
    for entry in sorted(target.iterdir()):
        owner = _dist_info_owner(entry) if entry.name.endswith(".dist-info") else None
        if entry.name in packages or entry.name in TRIMMED_DIRS or owner in TRIMMED:
            _remove(entry)
            removed.append(entry.name)
    for path in sorted(target.rglob("*")):
        if not path.exists():
            continue
        if (path.is_dir() and path.name in TRIMMED_DIRS) or path.suffix in TRIMMED_SUFFIXES:
            _remove(path)
            removed.append(str(path.relative_to(target)))
    return removed


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def cold_path_modules(root: Path = ROOT) -> set[str]:
    """Source files (relative paths) a cold start imports, with each provider (mock, OpenAI, Bedrock)."""
    found: set[str] = set()
    for provider in ("mock", "openai", "bedrock"):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PROVIDER", "API_KEYS"))}
        env.update(PROVIDER=provider, LOG_LEVEL="ERROR", PYTHONPATH=str(root))
        if provider == "openai":
            # Nothing listens on port 9: the request fails fast, after the SDK's request path was imported.
            env.update(
                OPENAI_API_KEY="sk-probe", OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_MAX_RETRIES="0"
            )
        if provider == "bedrock":
            # The same for botocore; credentials that sign nothing real, so that the signing path is reached.
            env.update(
                BEDROCK_MODELS="probe",
                BEDROCK_REGION="us-east-1",
                BEDROCK_MAX_RETRIES="0",
                AWS_ENDPOINT_URL_BEDROCK_RUNTIME="http://127.0.0.1:9",
                AWS_ACCESS_KEY_ID="AKIDPROBE",
                AWS_SECRET_ACCESS_KEY="probe",  # noqa: S106 - a placeholder that signs nothing real
            )
        probe = [sys.executable, "-c", _COLD_PATH_PROBE]
        done = subprocess.run(
            probe, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            # Bytecode only speeds cold starts up: a probe that cannot run must not fail the build.
            print(
                f"cold-path probe ({provider}) failed, its modules get no bytecode:\n{done.stderr[-1500:]}",
                file=sys.stderr,
            )
            continue
        found.update(done.stdout.split())
    return found


def compile_bytecode(tree: Path, modules: Iterable[str], python: str) -> int:
    """Compile the given modules of `tree` with `python` (the target's version); returns how many."""
    present = sorted(name for name in modules if (tree / name).is_file())
    script = (
        "import py_compile, sys\n"
        "for name in sys.stdin.read().split():\n"
        "    py_compile.compile(name, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,"
        " doraise=True)\n"
    )
    subprocess.run([python, "-c", script], cwd=tree, input="\n".join(present), text=True, check=True)
    return len(present)


def target_python(python_version: str, explicit: str | None = None) -> str | None:
    """The target's interpreter, if this machine has one (`sam build` without a container needs it too)."""
    candidates = [explicit, os.environ.get("LAMBDA_PYTHON"), shutil.which(f"python{python_version}")]
    candidates += sorted(
        str(p) for p in Path.home().glob(f".pyenv/versions/{python_version}*/bin/python{python_version}")
    )
    for candidate in candidates:
        if not candidate:
            continue
        probe = [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        try:
            done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip() == python_version:
            return candidate
    return None


def zip_tree(tree: Path, archive: Path) -> int:
    """Zip `tree` (deflated, stable order); returns the archive's size in bytes."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as bundle:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(tree).as_posix())
    return archive.stat().st_size


def build(
    out: Path,
    *,
    arch: str = "arm64",
    python_version: str = "3.12",
    trimmed: bool = True,
    bytecode: bool = True,
    python: str | None = None,
    requirements: Sequence[str] | None = None,
) -> list[str]:
    """A fresh deployment tree in `out`; returns what trimming removed."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():  # emptied, not replaced: `sam build` hands over ARTIFACTS_DIR itself
        _remove(stale)
    needed = runtime_requirements() if requirements is None else requirements
    install(out, needed, arch=arch, python_version=python_version)
    copy_sources(out)
    removed = trim(out) if trimmed else []
    if bytecode:
        interpreter = target_python(python_version, python)
        if interpreter is None:
            print(
                f"no python{python_version} here: shipping no bytecode (slower cold starts)", file=sys.stderr
            )
        else:
            compile_bytecode(out, cold_path_modules(), interpreter)
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "lambda")
    parser.add_argument("--zip", type=Path, default=ROOT / "dist" / "tokenrelay-lambda.zip")
    parser.add_argument("--no-zip", action="store_true", help="leave the tree only (`sam build` zips it)")
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="arm64")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--no-trim", action="store_true")
    parser.add_argument("--no-bytecode", action="store_true")
    parser.add_argument("--python", help="the target's interpreter, to compile bytecode (default: found)")
    args = parser.parse_args(argv)
    build(
        args.out,
        arch=args.arch,
        python_version=args.python_version,
        trimmed=not args.no_trim,
        bytecode=not args.no_bytecode,
        python=args.python,
    )
    if not args.no_zip:
        size = zip_tree(args.out, args.zip)
        print(f"{args.zip}: {size / 1e6:.1f} MB ({args.arch}, python{args.python_version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
