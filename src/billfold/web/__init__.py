"""The billing panel at `/` and the operator's console: server-rendered pages (Jinja2 templates
in `templates/`, htmx and the stylesheet in `static/`, shipped in the wheel) on the same
services as the API, under the same tenancy rules. `routers` are wired by `billfold.app`."""
