"""The decorators that declare bauplan functions.

Every decorator is inert: it returns the very function it decorates, which
stays callable as before, and only records its arguments in the function's
`__bauplan__` attribute, a dict keyed by decorator kind::

    @bauplan.model(name="trips", materialization_strategy="REPLACE")
    @bauplan.python("3.11", pip={"polars": "1.37"})
    def trips(data=bauplan.Model("raw_trips")):
        ...

    trips.__bauplan__ == {
        "python": {"version": "3.11", "pip": {"polars": "1.37"}, "kwargs": {}},
        "model": {"name": "trips", "columns": None, "partitioned_by": None,
                  "materialization_strategy": "REPLACE", "cache_strategy": None,
                  "internet_access": None, "overwrite_filter": None, "kwargs": {}},
    }

Each entry holds every documented argument of its decorator (None when not
given) plus "kwargs", the dict of any other keyword arguments, accepted so
that projects written for another version of Bauplan's SDK still import.
Decorators stack in any order; applying the same kind twice keeps the
outermost one's arguments.  Every decorator may also be used bare, without
parentheses (`@bauplan.model`), which records its defaults.
"""

import typing

__all__ = [
    "ModelMaterializationStrategy", "ModelCacheStrategy", "ATTRIBUTE",
    "model", "expectation", "python", "resources", "extras", "pyspark", "synthetic_model",
    "metadata_of",
]

ModelMaterializationStrategy = typing.Literal["NONE", "REPLACE", "APPEND", "OVERWRITE_PARTITIONS"]
ModelCacheStrategy = typing.Literal["NONE", "DEFAULT"]

# The attribute the decorators record their arguments in.
ATTRIBUTE = "__bauplan__"


def _record(function, kind, values):
    """Add `{kind: values}` to the `__bauplan__` dict of `function`; return it."""
    if not callable(function):
        raise TypeError(f"@bauplan.{kind} decorates functions, not {type(function).__name__} objects")
    # A fresh dict each time: functools.wraps copies attributes by reference,
    # and a wrapper must not change what its wrapped function recorded.
    recorded = dict(getattr(function, ATTRIBUTE, None) or {})
    recorded[kind] = values
    try:
        setattr(function, ATTRIBUTE, recorded)
    except (AttributeError, TypeError) as exc:
        raise TypeError(f"@bauplan.{kind} cannot record its arguments on {function!r}") from exc
    return function


def _apply(kind, values, bare_target=None):
    """Record `values` on `bare_target` when used bare, else return the decorator."""
    if bare_target is not None:
        return _record(bare_target, kind, values)
    return lambda function: _record(function, kind, values)


def _bare(first, *others, kwargs=None):
    """Whether a decorator received only a function, i.e. was used without parentheses."""
    return callable(first) and all(other is None for other in others) and not kwargs


def model(name=None, columns=None, partitioned_by=None, materialization_strategy=None,
          cache_strategy=None, internet_access=None, overwrite_filter=None, **kwargs):
    """Declare a model: a function from input tables to one output table.

    Arguments (all recorded as given, none checked here):
        name: the output table's name; the function's name when None.
        columns: legacy list of the output columns (`['*']` for all); the
            typed style declares them in the return annotation instead,
            `-> Annotated[pyarrow.Table, MySchema]`.
        partitioned_by: a column name or a list/tuple of them.
        materialization_strategy: one of `ModelMaterializationStrategy`
            ('NONE', 'REPLACE', 'APPEND', 'OVERWRITE_PARTITIONS').
        cache_strategy: one of `ModelCacheStrategy` ('NONE', 'DEFAULT').
        internet_access: whether the function needs the network.
        overwrite_filter: the predicate of the rows an overwrite replaces.
        **kwargs: anything else, recorded under "kwargs".
    """
    bare = _bare(name, columns, partitioned_by, materialization_strategy, cache_strategy,
                 internet_access, overwrite_filter, kwargs=kwargs)
    values = {"name": None if bare else name, "columns": columns, "partitioned_by": partitioned_by,
              "materialization_strategy": materialization_strategy,
              "cache_strategy": cache_strategy, "internet_access": internet_access,
              "overwrite_filter": overwrite_filter, "kwargs": kwargs}
    return _apply("model", values, name if bare else None)


def expectation(*function, **kwargs):
    """Declare an expectation: a function from input tables to a bool.

    Takes no documented arguments; keyword arguments are recorded under
    "kwargs".  Usable as `@bauplan.expectation()` or `@bauplan.expectation`.
    """
    if function and not (len(function) == 1 and _bare(function[0], kwargs=kwargs)):
        raise TypeError("expectation() takes keyword arguments only")
    return _apply("expectation", {"kwargs": kwargs}, function[0] if function else None)


def python(version=None, pip=None, **kwargs):
    """Declare the Python environment a model or expectation runs in.

    Arguments:
        version: the interpreter version, e.g. '3.11'.
        pip: the packages to install, as {name: version}, e.g. {'polars': '1.37'}.
        **kwargs: anything else, recorded under "kwargs".
    """
    bare = _bare(version, pip, kwargs=kwargs)
    values = {"version": None if bare else version, "pip": pip, "kwargs": kwargs}
    return _apply("python", values, version if bare else None)


def resources(cpus=None, memory=None, memory_swap=None, timeout=None, **kwargs):
    """Declare the resources a model or expectation needs.

    Arguments:
        cpus: the number of CPUs, e.g. 2 or 0.5.
        memory: the memory, e.g. '4G' or a number.
        memory_swap: the swap memory, e.g. '1G' or a number.
        timeout: the longest the function may run, in seconds.
        **kwargs: anything else, recorded under "kwargs".
    """
    bare = _bare(cpus, memory, memory_swap, timeout, kwargs=kwargs)
    values = {"cpus": None if bare else cpus, "memory": memory, "memory_swap": memory_swap,
              "timeout": timeout, "kwargs": kwargs}
    return _apply("resources", values, cpus if bare else None)


def extras(*names):
    """Declare optional feature sets of the bauplan package the function needs.

    Recorded as `{"names": [...]}`; floe's package has no extras to install.
    """
    if len(names) == 1 and _bare(names[0]):
        return _record(names[0], "extras", {"names": []})
    return _apply("extras", {"names": list(names)})


def pyspark(version=None, conf=None, **kwargs):
    """Declare that the function wants a Spark session (recorded only).

    Arguments:
        version: the pyspark version.
        conf: the Spark configuration, as a dict.
        **kwargs: anything else, recorded under "kwargs".
    """
    bare = _bare(version, conf, kwargs=kwargs)
    values = {"version": None if bare else version, "conf": conf, "kwargs": kwargs}
    return _apply("pyspark", values, version if bare else None)


def synthetic_model(name=None, columns=None, **kwargs):
    """Declare a synthetic model (recorded only).

    Arguments:
        name: the model's name.
        columns: the model's columns.
        **kwargs: anything else, recorded under "kwargs".
    """
    bare = _bare(name, columns, kwargs=kwargs)
    values = {"name": None if bare else name, "columns": columns, "kwargs": kwargs}
    return _apply("synthetic_model", values, name if bare else None)


def metadata_of(function) -> dict:
    """What the bauplan decorators recorded on `function`, as a new dict.

    `{}` for an undecorated function.  The outer dict and each decorator's
    dict are copies; the argument values themselves are not.
    """
    recorded = getattr(function, ATTRIBUTE, None) or {}
    return {kind: dict(values) for kind, values in recorded.items()}
