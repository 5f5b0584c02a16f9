"""The Stripe API version the sandbox emulates (its objects, events and errors are shaped as of it).

The sandbox's own constant: it does not follow whatever `stripe` SDK happens to be installed. An
SDK pinned to another version still works (the `Stripe-Version` header is echoed), but the shapes
are those of this version.
"""

API_VERSION = "2026-10-28.endive"
