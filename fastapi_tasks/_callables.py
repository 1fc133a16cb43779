"""What can be scheduled: telling async from plain callables, naming them safely, and checking
at ``schedule()`` that the arguments fit the signature.

All three run on the ``schedule()`` hot path for ordinary functions, so each has a fast path that
reads the code object directly and falls back to :mod:`inspect` only for unusual callables.
"""

from __future__ import annotations

import functools
import inspect
from types import FunctionType, MethodType
from typing import Any

__all__ = ["callable_name", "check_arguments", "classify", "inspect_call", "is_async_callable"]

_CO_COROUTINE = inspect.CO_COROUTINE
_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
_CO_VARARGS = inspect.CO_VARARGS
_CO_VARKEYWORDS = inspect.CO_VARKEYWORDS


def is_async_callable(func: object) -> bool:
    """Whether calling ``func`` returns a coroutine.

    Sees through :func:`functools.partial` (nested too) and recognises objects whose class
    defines ``async def __call__``. Objects whose attributes raise when read (context-bound
    proxies) are judged by their class alone.
    """
    while isinstance(func, functools.partial):
        func = func.func
    call = getattr(type(func), "__call__", None)  # noqa: B004 - the class's own __call__
    try:
        if inspect.iscoroutinefunction(func):
            return True
    except Exception:  # noqa: BLE001 - reading the object failed: its class decides
        pass
    return inspect.iscoroutinefunction(call)


def _is_generator_function(func: object) -> bool:
    try:
        return inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func)
    except Exception:  # noqa: BLE001 - reading the object failed: not a plain generator
        return False


def callable_name(func: object) -> str:
    """A readable dotted name for ``func`` (never its arguments). Never raises: objects whose
    attributes raise when read (context-bound proxies do) get their type's name."""
    try:
        while isinstance(func, functools.partial):
            func = func.func
        qualname = getattr(func, "__qualname__", None)
        if not isinstance(qualname, str):
            qualname = type(func).__qualname__
        module = getattr(func, "__module__", None)
        if not isinstance(module, str) or not module:
            module = type(func).__module__
    except Exception:  # noqa: BLE001 - a name must never break the runtime
        return f"<{type(func).__qualname__} object>"
    return f"{module}.{qualname}" if module != "builtins" else qualname


def classify(func: object) -> bool:
    """Validate a task callable and tell whether it is async (``True``) or plain (``False``).

    Plain Python functions and methods take a fast path (one look at the code flags).

    :raises TypeError: for non-callables, awaitables passed by mistake, and generator functions.
    """
    target = func.__func__ if type(func) is MethodType else func
    if type(target) is FunctionType:
        flags = target.__code__.co_flags
        if flags & _CO_COROUTINE:
            return True
        if not flags & _GENERATOR_FLAGS and not inspect.iscoroutinefunction(target):
            return False
    if inspect.isawaitable(func):
        raise TypeError(
            "schedule() takes the function itself and its arguments, not an awaitable: "
            "write tasks.schedule(fn, arg) instead of tasks.schedule(fn(arg))"
        )
    if not callable(func):
        raise TypeError(f"schedule() needs a callable, got {type(func).__name__}")
    unwrapped: object = func
    while isinstance(unwrapped, functools.partial):
        unwrapped = unwrapped.func
    if _is_generator_function(unwrapped):
        raise TypeError(
            f"{callable_name(func)} is a generator function; a task must be a plain function "
            "or a coroutine function"
        )
    return is_async_callable(func)


def inspect_call(func: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """:func:`classify` ``func`` and :func:`check_arguments`; return whether it is async.

    An ``async def`` function called with positional arguments only is checked here in one
    look at its code object: that is the ``schedule()`` hot path.

    :raises TypeError: as :func:`classify` and :func:`check_arguments` do.
    """
    if type(func) is FunctionType and not kwargs:
        code = func.__code__
        if code.co_flags & _CO_COROUTINE and not code.co_kwonlyargcount:
            given = len(args)
            argcount = code.co_argcount
            if given == argcount or (argcount - len(func.__defaults__ or ()) <= given < argcount):
                return True
    is_async = classify(func)
    check_arguments(func, args, kwargs)
    return is_async


def check_arguments(func: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` now if ``func(*args, **kwargs)`` could not bind its parameters.

    Plain functions, bound methods, ``functools.partial`` objects and instances with a Python
    ``__call__`` are checked from their code objects (a few hundred nanoseconds); anything else
    goes through :func:`inspect.signature`. Callables without a signature are not checked.

    :raises TypeError: naming the function and what does not fit, as Python would.
    """
    offset = 0
    target = func
    kind = type(target)
    if kind is MethodType:
        target = target.__func__  # type: ignore[attr-defined]
        offset = 1
    elif kind is functools.partial:
        partial: functools.partial[Any] = target  # type: ignore[assignment]
        merged = {**partial.keywords, **kwargs} if partial.keywords else kwargs
        check_arguments(partial.func, partial.args + args, merged)
        return
    elif kind is not FunctionType and not isinstance(target, type):
        call = getattr(kind, "__call__", None)  # noqa: B004 - the class's own __call__
        if type(call) is FunctionType:
            target = call
            offset = 1
    if type(target) is FunctionType and _fits(target, len(args) + offset, kwargs):
        return
    _bind_slowly(func, args, kwargs)


def _fits(func: FunctionType, given: int, kwargs: dict[str, Any]) -> bool:
    """Whether the call surely binds; ``False`` means "check it the slow way"."""
    code = func.__code__
    argcount = code.co_argcount
    flags = code.co_flags
    if given > argcount and not flags & _CO_VARARGS:
        return False
    defaults = func.__defaults__
    required = argcount - (len(defaults) if defaults else 0)
    kwonly = code.co_kwonlyargcount
    if not kwargs:
        if given < required:
            return False
        if kwonly:
            kwdefaults = func.__kwdefaults__
            return kwdefaults is not None and len(kwdefaults) >= kwonly
        return True
    names = code.co_varnames
    posonly = code.co_posonlyargcount
    for key in kwargs:
        try:
            index = names.index(key, posonly, argcount + kwonly)
        except ValueError:
            if not flags & _CO_VARKEYWORDS:
                return False
            continue
        if index < given and index < argcount:
            return False  # given by position and by keyword
    for index in range(given, required):
        if names[index] not in kwargs or index < posonly:
            return False
    if kwonly:
        kwdefaults = func.__kwdefaults__ or {}
        for name in names[argcount : argcount + kwonly]:
            if name not in kwargs and name not in kwdefaults:
                return False
    return True


def _bind_slowly(func: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(func)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return  # no signature to check against (some builtins): the call itself will tell
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(
            f"the arguments given to schedule() do not fit {callable_name(func)}{signature}: {exc}"
        ) from None
