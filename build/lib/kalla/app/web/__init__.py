"""The web UI: server-rendered pages over the same JSON API a script uses.

``pages.py`` holds the page routes, ``templates/`` the Jinja2 templates (with the SVG chart
macros), ``static/`` our own small ES modules and CSS, ``auth.py`` the browser session.
"""
