"""Sphinx configuration of jaxrnn's documentation site: API reference, executed tutorials, results pages."""

import os
import sys

sys.path.insert(0, os.path.abspath("_ext"))
sys.path.insert(0, os.path.abspath(".."))  # this checkout's jaxrnn, whatever is installed

import jaxrnn

project = "jaxrnn"
author = "the jaxrnn authors"
copyright = "the jaxrnn authors"
release = jaxrnn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "myst_nb",
    "jaxrnn_docs",  # docs/_ext: the CLI's --help, README includes' links, docstring completeness
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
templates_path = ["_templates"]

# Every cross-reference must resolve. jaxrnn's own names have no exemption; third-party names cannot be looked
# up offline (no intersphinx), so only they are ignored, by package.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(jax|jaxlib|numpy|np|optax|flax|nn|nnx|chex|orbax|torch|argparse|collections|typing|types|"
        r"dataclasses|enum|os|pathlib|builtins|array_api|ml_dtypes|jnp)(\..*)?",
    ),
    (r"py:class", r"Mesh"),  # jax.sharding.Mesh, named as the annotation imports it
]

# -- API reference -------------------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
add_module_names = False

# -- Notebooks: executed at every build, never cached, a raising cell fails the build ------------------------------
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 180  # seconds per cell; each tutorial takes well under two minutes in all
nb_execution_in_temp = True  # files a tutorial writes go to a temporary folder, not the source tree
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type"]

# -- HTML ----------------------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"jaxrnn {release}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}

# -- Completeness (docs/_ext/jaxrnn_docs.py): every public name of these modules has a docstring and a page ---------
jaxrnn_public_modules = [
    "jaxrnn",
    "jaxrnn.registry",
    "jaxrnn.gradflow",
    "jaxrnn.reference",
    "jaxrnn.precision",
    "jaxrnn.newton",
    "jaxrnn.lm",
    "jaxrnn.flax_modules",
    "jaxrnn.convert",
    "jaxrnn.parallel",
    "jaxrnn.distributed",
    "jaxrnn.typing",
]
