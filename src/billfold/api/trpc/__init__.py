"""The tRPC dialect (document 000): billfold's procedures in tRPC's HTTP wire format.

`wire` reads and writes the format, `procedures` holds procedures by dotted path, `endpoint`
serves them under `/trpc` so the official `@trpc/client` (`httpLink`, `httpBatchLink`) calls
billfold unchanged. A dialect's procedures live in a module of their own (`billing`) and are
included here under their namespace.
"""

from billfold.api.trpc import billing
from billfold.api.trpc.endpoint import build_router
from billfold.api.trpc.procedures import ProcedureContext, ProcedureRouter

PREFIX = "/trpc"

app_procedures = ProcedureRouter()
app_procedures.include(billing.procedures, prefix="billing")

router = build_router(app_procedures, prefix=PREFIX)

__all__ = ["PREFIX", "ProcedureContext", "ProcedureRouter", "app_procedures", "router"]
