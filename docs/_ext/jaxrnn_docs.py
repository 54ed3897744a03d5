"""Sphinx extension for jaxrnn's site: the command line's help, links inside included files, complete docs.

* ``.. jaxrnn-cli-help:: train`` prints ``jaxrnn train --help`` from ``jaxrnn.cli.build_parser()`` at build time,
  so the page can never disagree with the flags.
* A file pulled in with MyST's ``{include}`` (a README) links to its neighbours relative to its own folder.
  ``:relative-images:`` fixes its images; this transform fixes its links the same way, whatever they point at.
* Every public name of the modules in ``jaxrnn_public_modules`` (``__all__``, or else every name a module defines
  without a leading underscore) must have a docstring and must be documented on some page. A miss is a warning,
  and ``sphinx-build -W`` makes it an error.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import os
import re
import types
import typing

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.pycode import ModuleAnalyzer
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import stringify_annotation

logger = logging.getLogger(__name__)


class CliHelp(SphinxDirective):
    """``jaxrnn SUBCOMMAND --help`` (or ``jaxrnn --help`` with no argument) as a literal block."""

    optional_arguments = 1
    option_spec = {"width": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        from jaxrnn.cli import build_parser

        argv = [*self.arguments, "--help"]
        out = io.StringIO()
        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = str(self.options.get("width", 100))  # argparse wraps to $COLUMNS
        try:
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                build_parser().parse_args(argv)
        finally:
            if columns is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = columns
        text = out.getvalue().rstrip()
        if not text:
            raise self.error(f"jaxrnn {' '.join(argv)} printed nothing")
        block = nodes.literal_block(text, text, language="text")
        self.set_source_info(block)
        return [block]


class IncludedLinks(SphinxTransform):
    """Resolve a Markdown link to a local file as it reads in its own file.

    In a file pulled in with ``{include}`` a link is written relative to that file, not to the page including it.
    A link to a Markdown file that is no page of the site (``benchmarks/investigations/README.md``) becomes a
    download; one to a file that a page includes becomes a link to that page.
    """

    default_priority = 5  # before the download collector and the reference resolvers see them

    def apply(self) -> None:
        doc_dir = os.path.dirname(os.path.abspath(self.document["source"]))
        srcdir = os.path.abspath(self.env.srcdir)
        included = _included_files(srcdir)
        for node in list(self.document.findall(_myst_link)):
            source = node.source or self.document["source"]
            target = node.get("reftarget", "")
            if not target or "://" in target:
                continue
            if node.get("refdomain") == "doc":
                if target in self.env.found_docs:
                    continue  # a page of the site, found by MyST
                full = next((target + s for s in self.env.config.source_suffix if os.path.isfile(target + s)), "")
                anchor = node.get("reftargetid") or ""
            else:
                path, _, anchor = target.partition("#")
                full = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(source)), path))
            if not full or not os.path.exists(full):
                continue  # left for the resolver, which reports it
            inside = os.path.commonpath([full, srcdir]) == srcdir
            docname = self.env.path2doc(full) if inside else included.get(full)
            kwargs = {"reftype": "myst", "refdoc": self.env.docname, "refexplicit": node.get("refexplicit", True)}
            if docname:
                new: nodes.Element = addnodes.pending_xref(
                    refdomain="doc", reftarget=docname, reftargetid=anchor or None, **kwargs
                )
            elif os.path.isfile(full):
                new = addnodes.download_reference(refdomain=None, reftarget=os.path.relpath(full, doc_dir), **kwargs)
            else:
                continue
            new.source, new.line = node.source, node.line
            new["classes"] = node["classes"]
            new.extend(node.children)
            node.replace_self(new)


def _myst_link(node: nodes.Node) -> bool:
    return isinstance(node, (addnodes.pending_xref, addnodes.download_reference)) and node.get("reftype") == "myst"


_INCLUDE = re.compile(r"^```\{include\}\s+(\S+)", re.M)


def _included_files(srcdir: str) -> dict[str, str]:
    """Each file a Markdown page includes whole, and the page (``README.md`` -> ``results/benchmarks``)."""
    found: dict[str, str] = {}
    for folder, _, files in os.walk(srcdir):
        if "_build" in os.path.relpath(folder, srcdir).split(os.sep):
            continue
        for name in files:
            if name.endswith(".md"):
                page = os.path.join(folder, name)
                with open(page, encoding="utf-8") as f:
                    text = f.read()
                for match in _INCLUDE.finditer(text):
                    if ":start-after:" in text or ":end-before:" in text:
                        continue  # a part of a file is not the file
                    full = os.path.normpath(os.path.join(folder, match.group(1)))
                    found[full] = os.path.relpath(page, srcdir)[: -len(".md")].replace(os.sep, "/")
    return found


def private_type_names(app, what, name, obj, options, signature, return_annotation):
    """Show a private ``TypeVar`` in a signature as its bound (a private name has no page to link to)."""

    def bound(match: re.Match) -> str:
        module, _, attr = match.group(0).rpartition(".")
        var = getattr(importlib.import_module(module), attr, None)
        if isinstance(var, typing.TypeVar) and var.__bound__ is not None:
            return stringify_annotation(var.__bound__, "fully-qualified")
        return match.group(0)

    pattern = re.compile(r"jaxrnn(?:\.\w+)*\._\w+")
    return (
        pattern.sub(bound, signature) if signature else signature,
        pattern.sub(bound, return_annotation) if return_annotation else return_annotation,
    )


# -- every public name documented ----------------------------------------------------------------------------------


def public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, or else the names the module's own source binds at top level without a leading underscore."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    tree = ast.parse(inspect.getsource(module))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def _defining_module(module: types.ModuleType, name: str) -> str:
    """The module whose source assigns ``name`` (``from X import name`` followed back one step)."""
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.ImportFrom) and node.module and any(a.name == name for a in node.names):
            return node.module
    return module.__name__


def _has_own_docstring(module: types.ModuleType, name: str) -> bool:
    obj = getattr(module, name)
    if isinstance(obj, types.ModuleType) or inspect.isroutine(obj):
        return bool((obj.__doc__ or "").strip())
    if inspect.isclass(obj):
        doc = (obj.__dict__.get("__doc__") or "").strip()
        # namedtuple and dataclass write "Name(field, ...)" when the class has no docstring of its own
        return bool(doc) and not re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc, re.S)
    analyzer = ModuleAnalyzer.for_module(_defining_module(module, name))
    return any(key[1] == name and "".join(lines).strip() for key, lines in analyzer.find_attr_docs().items())


def check_public_names(app, env) -> None:
    documented = set(env.domaindata["py"]["objects"])
    for modname in app.config.jaxrnn_public_modules:
        module = importlib.import_module(modname)
        if not (module.__doc__ or "").strip():
            logger.warning("%s: the module has no docstring", modname, type="jaxrnn", subtype="docstring")
        for name in public_names(module):
            full = f"{modname}.{name}"
            if not hasattr(module, name):
                logger.warning("%s: listed as public but not defined", full, type="jaxrnn", subtype="docstring")
                continue
            if not _has_own_docstring(module, name):
                logger.warning("%s: a public name without a docstring", full, type="jaxrnn", subtype="docstring")
            where = f"{_defining_module(module, name)}.{name}"  # a constant is documented where it is defined
            if full not in documented and where not in documented:
                logger.warning(
                    "%s: a public name on no page of the API reference", full, type="jaxrnn", subtype="documented"
                )


def setup(app):
    app.add_config_value("jaxrnn_public_modules", [], "env")
    app.add_directive("jaxrnn-cli-help", CliHelp)
    app.add_transform(IncludedLinks)
    app.connect("autodoc-process-signature", private_type_names)
    app.connect("env-check-consistency", check_public_names)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
