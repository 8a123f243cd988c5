"""Finding a run's root task again: record where it lives, load it back for recovery."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from heddle._errors import RecoveryError
from heddle._sdk.origin import PROGRAM_MODULE, has_source_file
from heddle._sdk.task import Task


def describe(task: Task[Any, Any]) -> str:
    """JSON naming the module, file and attribute of a task, for ``heddle recover``."""
    fn = task.fn
    module = fn.__module__
    try:
        source = inspect.getfile(fn)
    except (TypeError, OSError):
        source = ""
    # Code with no file (a notebook, stdin, -c) is recorded without one: it can only be
    # found again in the __main__ of a session that defines it.
    file = str(Path(source).resolve()) if has_source_file(source) else None
    return json.dumps(
        {
            "module": module,
            "file": file,
            "qualname": fn.__qualname__,
            "task": task.name,
            "cwd": os.getcwd(),
        }
    )


def load_file(path: str | os.PathLike[str]) -> ModuleType:
    """Import a Python file as a module (named after the file) without running its __main__ block."""
    file = Path(path).resolve()
    if not file.is_file():
        raise FileNotFoundError(f"no such Python file: {file}")
    name = file.stem if file.stem.isidentifier() else PROGRAM_MODULE
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(file):
        return existing
    if existing is not None:
        name = f"{PROGRAM_MODULE}_" + hashlib.blake2b(str(file).encode(), digest_size=6).hexdigest()
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise RecoveryError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def find_task(module: ModuleType, name: str) -> Task[Any, Any]:
    """The task in ``module`` with this attribute name or task name."""
    obj = getattr(module, name, None)
    if isinstance(obj, Task):
        return obj
    tasks = {v.name: v for v in vars(module).values() if isinstance(v, Task)}
    if name in tasks:
        return tasks[name]
    attrs = sorted(k for k, v in vars(module).items() if isinstance(v, Task))
    raise LookupError(
        f"no task {name!r} in {getattr(module, '__file__', module.__name__)}; "
        f"tasks there: {', '.join(attrs) or 'none'}"
    )


def load(program_json: str) -> Task[Any, Any]:
    """Load the root task a run was started with."""
    program = json.loads(program_json)
    module_name, file, qualname = program["module"], program.get("file"), program["qualname"]
    module: ModuleType | None = None
    main = sys.modules.get("__main__")
    if (
        module_name == "__main__"
        and main is not None
        and getattr(main, "__file__", None)
        and file
        and str(Path(main.__file__ or "").resolve()) == file
    ):
        module = main
    if module is None and module_name != "__main__":
        cwd = program.get("cwd")
        if cwd and cwd not in sys.path:
            sys.path.insert(0, cwd)
        existing = sys.modules.get(module_name)
        if existing is not None:
            module = existing
        elif file and Path(file).stem == module_name.rpartition(".")[2] and "." not in module_name:
            module = load_file(file)
        else:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                module = None
    if module is None and module_name == "__main__" and not _names_a_file(file):
        module = _main_defining(qualname, program["task"])
        if module is None:
            raise RecoveryError(
                f"task {program['task']!r} was started from code with no file (a notebook, "
                "stdin or python -c), so only that code can recover it: run it again and "
                "call heddle.recover(RUN) in the same session"
            )
    if module is None:
        if not file or not Path(file).is_file():
            raise RecoveryError(f"cannot find the code of task {program['task']!r}: {file} is gone")
        module = load_file(file)
    try:
        return _task_in(module, qualname, program["task"])
    except LookupError as exc:
        raise RecoveryError(str(exc)) from None


def _names_a_file(file: str | None) -> bool:
    # Runs recorded before code with no file was recorded as such hold "<cwd>/<stdin>".
    return bool(file) and not Path(file or "").name.startswith("<")


def _main_defining(qualname: str, name: str) -> ModuleType | None:
    """This session's __main__ if it defines the task (a notebook, stdin, python -c)."""
    main = sys.modules.get("__main__")
    if main is None:
        return None
    try:
        _task_in(main, qualname, name)
    except LookupError:
        return None
    return main


def find_by_ref(module_name: str, file: str | None, qualname: str, name: str) -> Task[Any, Any]:
    """Import a task's module in this process (a worker) and return the task."""
    module: ModuleType | None = sys.modules.get(module_name)
    if module is None and module_name != "__main__":
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
    if module is None or (
        module_name == "__main__" and not hasattr(module, qualname.split(".")[0])
    ):
        if not file or not Path(file).is_file():
            raise RecoveryError(
                f"cannot find the code of task {name!r}: module {module_name!r}, file {file}"
            )
        module = load_file(file)
    return _task_in(module, qualname, name)


def _task_in(module: ModuleType, qualname: str, name: str) -> Task[Any, Any]:
    """The task at ``qualname`` in the module, else the one registered as ``name``."""
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, Task):
        return obj
    return find_task(module, name)
