"""Sphinx configuration of the workbook's book (`make book`, which runs `python -m tools.book`).

The sources are assembled by tools.book into build/book-src (an index page and readable copies of the executed
notebooks, plus the markdown pages that book.toml names); this folder holds only the configuration, templates and
styles. Nothing is executed (MyST-NB reads the stored outputs), and nothing is fetched: the theme's assets ship with
sphinx-book-theme, and MathJax 2.7.9 is copied from the `jupyter-server-mathjax` package into _static/mathjax.
"""
import shutil
from pathlib import Path

import jupyter_server_mathjax

project = "Advanced Machine Learning — the workbook"
html_title = "Advanced Machine Learning"

extensions = ["myst_nb"]
myst_enable_extensions = ["dollarmath", "amsmath"]   # $…$ and $$…$$ in the notebooks' markdown become maths
myst_dmath_double_inline = True  # $$…$$ inside a paragraph too, as Jupyter shows it (a display equation)
myst_heading_anchors = 3
nb_execution_mode = "off"        # the book shows the outputs `make figures` stored; it never runs a cell
nb_ipywidgets_js = {}            # no widget JavaScript from a CDN (tools.book turns progress widgets into text)
nb_merge_streams = True
nb_render_markdown_format = "myst"  # markdown outputs (show_source, answers) get the same maths as the text
exclude_patterns = ["**.ipynb_checkpoints"]
templates_path = ["_templates"]

html_theme = "sphinx_book_theme"
html_theme_options = {
    "use_download_button": True,    # each page's source (the executed notebook, .ipynb) one click away
    "use_fullscreen_button": False,
    "secondary_sidebar_items": [],  # the sections are in the left sidebar: the article gets the width
    "footer_content_items": [],     # no author/copyright line
}
# The left sidebar: every chapter with its questions (_templates/book-sidebar-nav.html); search: the header's field.
html_sidebars = {"**": ["navbar-logo.html", "book-sidebar-nav.html"]}
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_last_updated_fmt = None

# MathJax from a local copy: the combined TeX/MathML configuration, web fonts STIX-Web (the ones the package ships).
MATHJAX = Path(jupyter_server_mathjax.__file__).parent / "static"
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
myst_update_mathjax = False      # MyST would add a MathJax 4 configuration
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True},
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None,
                 "linebreaks": {"automatic": True}},
    "showMathMenu": False,
    "messageStyle": "none",
}


def copy_mathjax(app, exception):
    if exception is None and app.builder.format == "html":
        shutil.copytree(MATHJAX, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app):
    app.connect("build-finished", copy_mathjax)
