"""The inputs of a bauplan function: `Model` tables and `Parameter` values.

Both styles of declaring them are supported::

    # legacy: the default value declares the input
    def legacy(trips=bauplan.Model("trips", columns=["id"], filter="id > 0"),
               rate=bauplan.Parameter("rate")): ...

    # typed: the annotation declares it
    def typed(trips: Annotated[pyarrow.Table, bauplan.Model("trips", projection_schema=S)],
              rate: Annotated[float, bauplan.Parameter("rate")]) -> Annotated[pyarrow.Table, S]: ...

`Model` and `Parameter` objects only hold what they were given; the worker
that runs the function passes the actual tables and values as keyword
arguments.  `inputs_of` and `output_schema_of` read a function's
declarations back.
"""

import typing

from ._schema import TableSchema

__all__ = ["Model", "Parameter", "inputs_of", "output_schema_of"]


class Model:
    """A table a function reads: the output of another model, or a catalog table.

    Arguments (recorded as attributes of the same names, never checked here):
        name: the table, bare ('trips') or qualified ('ns.trips').
        columns: legacy list of the columns to read; None reads them all.
        filter: a SQL predicate selecting the rows to read, e.g. "fare > 0".
        ref: legacy branch, tag or commit to read the table at.
        connector, connector_config_key, connector_config_uri: legacy
            external-engine settings, recorded but not supported by floe.
        projection_schema: a TableSchema subclass naming the columns to read
            (typed style).  It may also be given as the second positional
            argument, as in Bauplan's typed SDK.
        **kwargs: anything else, recorded in `.kwargs`.
    """

    _FIELDS = ("name", "columns", "filter", "ref", "projection_schema", "connector",
               "connector_config_key", "connector_config_uri", "kwargs")

    def __init__(self, name, columns=None, filter=None, ref=None, connector=None,
                 connector_config_key=None, connector_config_uri=None, *,
                 projection_schema=None, **kwargs):
        # Bauplan's typed SDK takes (name, projection_schema, filter) by position.
        if projection_schema is None and isinstance(columns, type) and issubclass(columns, TableSchema):
            projection_schema, columns = columns, None
        self.name = name
        self.columns = columns
        self.filter = filter
        self.ref = ref
        self.projection_schema = projection_schema
        self.connector = connector
        self.connector_config_key = connector_config_key
        self.connector_config_uri = connector_config_uri
        self.kwargs = kwargs

    def __repr__(self):
        given = [f"{key}={getattr(self, key)!r}" for key in self._FIELDS[1:-1]
                 if getattr(self, key) is not None]
        given += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"Model({', '.join([repr(self.name)] + given)})"

    def __eq__(self, other):
        if not isinstance(other, Model):
            return NotImplemented
        return all(getattr(self, key) == getattr(other, key) for key in self._FIELDS)

    __hash__ = None  # mutable, compared by value


class Parameter:
    """A run parameter a function receives, e.g. `bauplan.Parameter("rate")`.

    Arguments:
        param_name: the parameter's name in the project file; `name=` is
            accepted as another spelling.
        **kwargs: anything else, recorded in `.kwargs`.
    """

    def __init__(self, param_name=None, **kwargs):
        if param_name is None:
            param_name = kwargs.pop("name", None)
        if param_name is None:
            raise TypeError("Parameter() needs the parameter's name, e.g. bauplan.Parameter('rate')")
        self.param_name = param_name
        self.kwargs = kwargs

    @property
    def name(self):
        """The parameter's name (the same as `param_name`)."""
        return self.param_name

    def __repr__(self):
        extra = "".join(f", {key}={value!r}" for key, value in self.kwargs.items())
        return f"Parameter({self.param_name!r}{extra})"

    def __eq__(self, other):
        if not isinstance(other, Parameter):
            return NotImplemented
        return (self.param_name, self.kwargs) == (other.param_name, other.kwargs)

    def __hash__(self):
        return hash(self.param_name)


def _annotations(function):
    """The function's annotations, resolved when possible.

    String annotations that cannot be resolved (e.g. naming a package that
    is not installed) are left as strings instead of failing.
    """
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:
        return dict(getattr(function, "__annotations__", None) or {})


def _annotated_extras(annotation):
    """The metadata of `Annotated[T, *extras]`; () for any other annotation."""
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[1:]
    return ()


def inputs_of(function) -> dict:
    """Map each argument of `function` declaring an input to its `Model` or `Parameter`.

    The annotation (`Annotated[T, Model(...)]`) wins over the default value
    (`=Model(...)`).  Arguments declaring neither are left out.
    """
    import inspect  # only needed here; keeps `import bauplan` light
    annotations = _annotations(function)
    inputs = {}
    for name, parameter in inspect.signature(function).parameters.items():
        candidates = list(_annotated_extras(annotations.get(name))) + [parameter.default]
        for candidate in candidates:
            if isinstance(candidate, (Model, Parameter)):
                inputs[name] = candidate
                break
    return inputs


def output_schema_of(function):
    """The TableSchema subclass of `-> Annotated[pyarrow.Table, Schema]`, or None."""
    for extra in _annotated_extras(_annotations(function).get("return")):
        if isinstance(extra, type) and issubclass(extra, TableSchema):
            return extra
    return None
