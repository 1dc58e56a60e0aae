"""Plan Bauplan-compatible Python pipeline files without running them.

Contract (used by the floe server, which runs `python3 planner.py`):

* stdin: one JSON document `{"files": {"relative/path.py": "<source>", ...}}`.
  Paths that do not end in `.py` are ignored.
* stdout: exactly one JSON document
  `{"nodes": [...], "schemas": {...}, "errors": [...]}`.
  Nodes are the functions decorated with bauplan's `model()` or
  `expectation()`, sorted by file path and then by line.  Schemas are the
  classes deriving (directly or through other project classes) from
  `bauplan.TableSchema`.  Errors are `{"file", "line", "message"}` objects
  with 1-based lines; every error found is reported, not only the first.
* exit code: 0 whenever a plan was printed, even if it holds errors (errors
  are data).  Non-zero only for unreadable stdin or a bug in this script.

Safety: user code is never imported, executed or evaluated.  Files are only
parsed with the standard `ast` module, and values are read with
`ast.literal_eval`, which accepts nothing but literals.  Standard library only.
"""

import ast
import json
import math
import sys

DECORATORS = ("model", "expectation", "python", "resources")
# Names that `from bauplan import *` makes available without a prefix.
STAR_NAMES = set(DECORATORS) | {"Model", "Parameter", "TableSchema"}
# Arguments that a call may receive by position, in order.
POSITIONAL = {"model": ["name"], "expectation": [], "python": ["version", "pip"],
              "resources": [], "Model": ["name", "columns", "filter"],
              "Parameter": ["param_name"]}


class Imports:
    """What the names of one file refer to, as far as bauplan is concerned."""

    def __init__(self, tree):
        self.modules = set()  # local names bound to the bauplan module
        self.names = {}       # local name -> attribute of bauplan it stands for
        self.star = False     # `from bauplan import *` was seen
        # Visit module-level imports (also those under `if`/`try`) in source
        # order, so that a later import of the same local name from another
        # package replaces an earlier bauplan one.  Imports inside functions
        # and classes bind local names only and are skipped.
        pending, imports = list(tree.body), []
        while pending:
            node = pending.pop()
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imports.append(node)
            elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                pending.extend(ast.iter_child_nodes(node))
        for node in sorted(imports, key=lambda n: (n.lineno, n.col_offset)):
            if isinstance(node, ast.Import):
                self._add_import(node)
            else:
                self._add_import_from(node)

    def _bind(self, local, attribute=None, module=False):
        self.modules.discard(local)
        self.names.pop(local, None)
        if module:
            self.modules.add(local)
        elif attribute is not None:
            self.names[local] = attribute

    def _add_import(self, node):
        for alias in node.names:
            top = alias.name.split(".")[0]
            if alias.asname is None:
                # `import bauplan.x` binds the name `bauplan` to the package.
                self._bind(top, module=(top == "bauplan"))
            else:
                self._bind(alias.asname, module=(alias.name == "bauplan"))

    def _add_import_from(self, node):
        from_bauplan = node.level == 0 and node.module == "bauplan"
        for alias in node.names:
            if alias.name == "*":
                self.star = self.star or from_bauplan
                continue
            local = alias.asname or alias.name
            self._bind(local, alias.name if from_bauplan else None)

    def resolve(self, expr):
        """Return the bauplan attribute `expr` names (e.g. "model"), or None."""
        if isinstance(expr, ast.Name):
            if expr.id in self.names:
                return self.names[expr.id]
            if self.star and expr.id in STAR_NAMES and expr.id not in self.modules:
                return expr.id
        elif isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            if expr.value.id in self.modules:
                return expr.attr
        return None


class FileContext:
    """The file being planned: its path, imports and the shared error list."""

    def __init__(self, path, imports, errors):
        self.path, self.imports, self.errors = path, imports, errors

    def error(self, line, message):
        self.errors.append({"file": self.path, "line": line or 1, "message": message})


# ---------------------------------------------------------------- helpers --

def to_json_value(value):
    """Convert a literal to JSON data; raise TypeError if it has no JSON form."""
    if value is None or isinstance(value, (bool, int, str)) or (
            isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {key: to_json_value(item) for key, item in value.items()}
    raise TypeError("no JSON form")


def call_arguments(call, owner, ctx):
    """Map the arguments of `call` to their parameter names (AST nodes)."""
    positional = POSITIONAL[owner]
    found = {}
    for index, node in enumerate(call.args):
        if isinstance(node, ast.Starred):
            ctx.error(node.lineno, f"{owner}() arguments cannot be unpacked with `*` "
                                   "(planning never runs code)")
        elif index >= len(positional):
            names = ", ".join(f"`{p}`" for p in positional) or "nothing"
            ctx.error(node.lineno, f"{owner}() takes only {names} by position; "
                                   "pass the other arguments by keyword")
        else:
            found[positional[index]] = node
    for keyword in call.keywords:
        if keyword.arg is None:
            ctx.error(keyword.value.lineno, f"{owner}() arguments cannot be unpacked "
                                            "with `**` (planning never runs code)")
        elif keyword.arg in found:
            ctx.error(keyword.value.lineno, f"the argument `{keyword.arg}` of {owner}() "
                                            "is given twice")
        else:
            found[keyword.arg] = keyword.value
    return found


def literal_arguments(nodes, owner, ctx):
    """Read every argument node as a literal; unreadable ones are reported and left out."""
    values = {}
    for arg, node in nodes.items():
        message = f"the argument `{arg}` of {owner}() must be a literal"
        try:
            values[arg] = to_json_value(ast.literal_eval(node))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            ctx.error(node.lineno, message + " (planning never runs code)")
        except TypeError:  # e.g. a set, bytes or a dict with non-string keys
            ctx.error(node.lineno, message + " of str, number, bool, None, list or "
                                             "dict with string keys")
    return values


def class_name(expr):
    """`Foo` or `module.Foo` -> "Foo"; anything else -> None."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


def annotated_parts(annotation):
    """Split `Annotated[T, meta...]` (any spelling) into [T, meta...], else None."""
    if (isinstance(annotation, ast.Subscript)
            and class_name(annotation.value) == "Annotated"
            and isinstance(annotation.slice, ast.Tuple)):
        return list(annotation.slice.elts)
    return None


# ------------------------------------------------------------ decorators --

def collect_decorators(fn, ctx):
    """Return {kind: decorator node} for the bauplan decorators of `fn`."""
    found = {}
    for decorator in fn.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        kind = ctx.imports.resolve(target)
        if kind not in DECORATORS:
            continue
        if kind in found:
            ctx.error(decorator.lineno, f"`{fn.name}` is decorated with {kind}() twice")
        elif kind in ("model", "expectation") and {"model", "expectation"} & found.keys():
            ctx.error(decorator.lineno,
                      f"`{fn.name}` is decorated with both model() and expectation()")
        else:
            found[kind] = decorator
    return found


def decorator_values(decorator, kind, ctx):
    """The literal arguments of a decorator; {} when it is used without a call."""
    if not isinstance(decorator, ast.Call):
        return {}
    return literal_arguments(call_arguments(decorator, kind, ctx), kind, ctx)


def plan_python(decorator, ctx):
    values = decorator_values(decorator, "python", ctx)
    version, pip = values.get("version"), values.get("pip") or {}
    if version is not None and not isinstance(version, str):
        ctx.error(decorator.lineno, 'the argument `version` of python() must be a string such as "3.11"')
        version = None
    if not (isinstance(pip, dict) and all(isinstance(v, str) for v in pip.values())):
        ctx.error(decorator.lineno, "the argument `pip` of python() must be a dict "
                                    "from package name to version string")
        pip = {}
    return {"version": version, "pip": pip}


# ---------------------------------------------------------------- inputs --

def input_call(arg, default, ctx):
    """Find the Model(...) or Parameter(...) call declaring an argument.

    The typed generation puts it in `Annotated[T, bauplan.Model(...)]`, the
    legacy one in the default value.  Returns (kind, call) or None.
    """
    candidates = (annotated_parts(arg.annotation) or [None])[1:] + [default]
    for node in candidates:
        if isinstance(node, ast.Call):
            kind = ctx.imports.resolve(node.func)
            if kind in ("Model", "Parameter"):
                return kind, node
    return None


def plan_model_input(arg, call, ctx):
    nodes = call_arguments(call, "Model", ctx)
    # The typed generation passes a schema class where the legacy one passes columns.
    if isinstance(nodes.get("columns"), (ast.Name, ast.Attribute)) and "projection_schema" not in nodes:
        nodes["projection_schema"] = nodes.pop("columns")
    schema_node = nodes.pop("projection_schema", None)
    values = literal_arguments(nodes, "Model", ctx)
    plan = {"arg": arg.arg, "model": values.get("name"), "columns": values.get("columns"),
            "filter": values.get("filter"), "projection_schema": None, "line": call.lineno}
    valid = True
    if "name" not in nodes or ("name" in values and not (isinstance(plan["model"], str)
                                                         and plan["model"])):
        ctx.error(call.lineno, 'Model() needs a table name as a non-empty string, '
                               'e.g. bauplan.Model("ns.table")')
        valid = False
    elif "name" not in values:
        valid = False  # the name was not a literal: already reported
    columns = plan["columns"]
    if columns is not None and not (isinstance(columns, list)
                                    and all(isinstance(c, str) for c in columns)):
        ctx.error(call.lineno, "the argument `columns` of Model() must be a list of strings")
        plan["columns"] = None
    if plan["filter"] is not None and not isinstance(plan["filter"], str):
        ctx.error(call.lineno, "the argument `filter` of Model() must be a string")
        plan["filter"] = None
    if schema_node is not None and not (isinstance(schema_node, ast.Constant)
                                        and schema_node.value is None):
        plan["projection_schema"] = class_name(schema_node)
        if plan["projection_schema"] is None:
            ctx.error(schema_node.lineno, "the argument `projection_schema` of Model() "
                                          "must be the name of a TableSchema class")
    return plan if valid else None


def plan_parameter(arg, call, ctx):
    nodes = call_arguments(call, "Parameter", ctx)
    if "name" in nodes and "param_name" not in nodes:
        nodes["param_name"] = nodes.pop("name")  # accept `name=` as a spelling
    values = literal_arguments(nodes, "Parameter", ctx)
    name = values.get("param_name")
    if isinstance(name, str) and name:
        return {"arg": arg.arg, "name": name, "line": call.lineno}
    if "param_name" not in nodes or "param_name" in values:
        ctx.error(call.lineno, 'Parameter() needs a parameter name as a non-empty string, '
                               'e.g. bauplan.Parameter("rate")')
    return None


def function_arguments(fn):
    """Pairs (argument, default or None) for every argument of `fn`."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    pairs += [(extra, None) for extra in (args.vararg, args.kwarg) if extra is not None]
    return pairs


def plan_arguments(fn, ctx):
    inputs, parameters = [], []
    for arg, default in function_arguments(fn):
        found = input_call(arg, default, ctx)
        if found is None:
            ctx.error(arg.lineno, f"argument `{arg.arg}` of `{fn.name}` is neither a "
                                  "bauplan.Model(...) nor a bauplan.Parameter(...) input")
        elif found[0] == "Model":
            plan = plan_model_input(arg, found[1], ctx)
            inputs += [plan] if plan else []
        else:
            plan = plan_parameter(arg, found[1], ctx)
            parameters += [plan] if plan else []
    return inputs, parameters


def output_schema(fn, ctx):
    """The schema class named by `-> Annotated[pyarrow.Table, Schema]`, or None."""
    parts = annotated_parts(fn.returns)
    if not parts or len(parts) < 2:
        return None
    name = class_name(parts[1])
    if name is None:
        ctx.error(parts[1].lineno, f"the return annotation of `{fn.name}` must name a "
                                   "TableSchema class, e.g. Annotated[pyarrow.Table, MySchema]")
    return name


# ----------------------------------------------------------------- nodes --

def plan_function(fn, ctx):
    """Plan one top-level function; None when it is not a bauplan node."""
    decorators = collect_decorators(fn, ctx)
    if not decorators:
        return None
    if "model" not in decorators and "expectation" not in decorators:
        used = " and ".join(f"{kind}()" for kind in decorators)
        ctx.error(fn.lineno, f"`{fn.name}` is decorated with {used} "
                             "but not model() or expectation()")
        return None
    kind = "model" if "model" in decorators else "expectation"
    settings = decorator_values(decorators[kind], kind, ctx)
    name = fn.name
    if kind == "model" and "name" in settings:
        if isinstance(settings["name"], str) and settings["name"]:
            name = settings["name"]
        else:
            ctx.error(decorators[kind].lineno, "the argument `name` of model() must be a non-empty string")
    inputs, parameters = plan_arguments(fn, ctx)
    resources = None
    if "resources" in decorators:
        resources = decorator_values(decorators["resources"], "resources", ctx)
    python = plan_python(decorators["python"], ctx) if "python" in decorators else None
    return {
        "name": name, "function": fn.name, "kind": kind, "file": ctx.path,
        # `fn.lineno` is the line of the `def` keyword, not of the first decorator.
        "line": fn.lineno,
        "inputs": inputs, "parameters": parameters,
        "model": settings if kind == "model" else {},
        "python": python, "resources": resources,
        "output_schema": output_schema(fn, ctx),
    }


# --------------------------------------------------------------- schemas --

def column_type(annotation):
    """Return (type name, nullable) for a column annotation."""
    inner = None
    if isinstance(annotation, ast.Subscript) and class_name(annotation.value) == "Optional":
        inner = annotation.slice
    elif isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        for this, other in ((annotation.left, annotation.right),
                            (annotation.right, annotation.left)):
            if isinstance(other, ast.Constant) and other.value is None:
                inner = this
    if inner is not None:
        return class_name(inner) or ast.unparse(inner), True
    return class_name(annotation) or ast.unparse(annotation), False


def schema_columns(cls):
    columns = []
    for statement in cls.body:  # docstrings and methods are not columns
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            type_name, nullable = column_type(statement.annotation)
            column = {"name": statement.target.id, "type": type_name, "line": statement.lineno}
            if nullable:
                column["nullable"] = True
            columns.append(column)
    return columns


def plan_schemas(parsed):
    """Find the TableSchema classes of the whole project (inheritance by name)."""
    candidates = {}  # class name -> (path, class node, project bases, is direct)
    for path, tree, imports in parsed:
        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef) or cls.name in candidates:
                continue  # the first definition of a class name wins
            direct = any(imports.resolve(base) == "TableSchema" for base in cls.bases)
            bases = [class_name(base) for base in cls.bases
                     if imports.resolve(base) != "TableSchema" and class_name(base)]
            candidates[cls.name] = (path, cls, bases, direct)
    schemas = {name for name, found in candidates.items() if found[3]}
    grew = True
    while grew:  # add classes deriving from a known schema until nothing changes
        grew = False
        for name, (_, _, bases, _) in candidates.items():
            if name not in schemas and schemas.intersection(bases):
                schemas.add(name)
                grew = True
    result = {}
    for name, (path, cls, bases, _) in candidates.items():
        if name in schemas:
            result[name] = {"file": path, "line": cls.lineno,
                            "bases": [b for b in bases if b in schemas],
                            "columns": schema_columns(cls)}
    return result


# ------------------------------------------------------------------ main --

def parse_file(path, source, errors):
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as exc:
        errors.append({"file": path, "line": exc.lineno or 1,
                       "message": f"syntax error: {exc.msg}"})
    except (ValueError, MemoryError, RecursionError) as exc:
        errors.append({"file": path, "line": 1, "message": f"cannot parse the file: {exc}"})
    return None


def plan_project(files):
    errors, nodes, parsed = [], [], []
    for path in sorted(p for p in files if p.endswith(".py")):
        tree = parse_file(path, files[path], errors)
        if tree is None:
            continue
        ctx = FileContext(path, Imports(tree), errors)
        parsed.append((path, tree, ctx.imports))
        for statement in tree.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                node = plan_function(statement, ctx)
                if node is not None:
                    nodes.append(node)
    errors.sort(key=lambda e: (e["file"], e["line"]))  # stable: keeps report order
    return {"nodes": nodes, "schemas": plan_schemas(parsed), "errors": errors}


def read_request(stream):
    request = json.load(stream)
    files = request.get("files") if isinstance(request, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ValueError('stdin must be {"files": {"path.py": "<source>", ...}}')
    return files


def main():
    try:
        files = read_request(sys.stdin)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        print(f"planner: unreadable request: {exc}", file=sys.stderr)
        return 2
    json.dump(plan_project(files), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
